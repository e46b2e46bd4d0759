package replicate

import (
	"strings"
	"testing"
	"time"
)

// Acceptance 4: a slot invalidated by max_slot_wal_keep_size is reported by
// Status (and the metrics) and recovered by resync --all, with the rows
// written meanwhile.
func TestSlotLostAndResync(t *testing.T) {
	t.Parallel()
	p := newPair(t, map[string]string{"max_slot_wal_keep_size": "1MB"})
	ctx := ctxT(t, 2*time.Minute)
	exec(t, p.src, `CREATE TABLE acct (id int PRIMARY KEY, balance bigint);
		INSERT INTO acct SELECT g, g FROM generate_series(1, 1000) g`)
	if err := Add(ctx, p.wh, Config{SourceURL: p.srcURL, Tables: []string{"acct"}}); err != nil {
		t.Fatalf("add: %v", err)
	}
	requireEqual(t, p, "herd", 1)

	// The warehouse goes away for a while (here: the subscription is
	// disabled) and the source writes more WAL than it keeps for slots.
	exec(t, p.wh, "ALTER SUBSCRIPTION herd DISABLE")
	deadline := time.Now().Add(20 * time.Second)
	for queryInt(t, p.src, "SELECT count(*) FROM pg_replication_slots WHERE active") > 0 {
		if time.Now().After(deadline) {
			t.Fatal("slot still active 20s after disabling the subscription")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; i < 4; i++ {
		exec(t, p.src, "UPDATE acct SET balance = balance + 1")
		exec(t, p.src, "SELECT pg_switch_wal()")
	}
	exec(t, p.src, "CHECKPOINT")
	var status string
	if err := p.src.QueryRow(ctx, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'herd'").Scan(&status); err != nil || status != "lost" {
		t.Fatalf("slot wal_status = %q (%v), want lost: the test did not invalidate the slot", status, err)
	}
	exec(t, p.wh, "ALTER SUBSCRIPTION herd ENABLE")

	sts, err := Status(ctx, p.wh, "")
	if err != nil {
		t.Fatal(err)
	}
	st := sts[0]
	if st.Health != HealthSlotLost || st.WALStatus != "lost" || !strings.Contains(st.Fix, "resync --all") {
		t.Fatalf("status = %s, wal_status %q, fix %q; want slot lost with the resync fix", st.Health, st.WALStatus, st.Fix)
	}
	if err := Resync(ctx, p.wh, ResyncConfig{Tables: []string{"acct"}}); err == nil {
		t.Error("resync of one table succeeded on a lost slot; only --all can recover")
	}

	var progress syncBuffer
	if err := Resync(ctx, p.wh, ResyncConfig{All: true, Progress: &progress}); err != nil {
		t.Fatalf("resync --all: %v\n%s", err, progress.String())
	}
	exec(t, p.src, "UPDATE acct SET balance = -balance WHERE id <= 10")
	requireEqual(t, p, "herd", 1)
	if n := queryInt(t, p.wh, "SELECT sum(balance) FROM acct WHERE id > 10"); n != queryInt(t, p.src, "SELECT sum(balance) FROM acct WHERE id > 10") {
		t.Errorf("balances differ after resync")
	}
	sts, err = Status(ctx, p.wh, "herd")
	if err != nil {
		t.Fatal(err)
	}
	if st := sts[0]; st.Health != HealthOK || st.WALStatus == "lost" || st.LagBytes < 0 {
		t.Errorf("after resync: status %s (%s), wal_status %q, lag %d bytes; want ok", st.Health, st.Problem, st.WALStatus, st.LagBytes)
	}
}
