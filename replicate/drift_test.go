package replicate

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"time"
)

// Acceptance 3: ALTER TABLE ... ADD COLUMN on the source while writes flow.
// The column appears on the warehouse before any row that carries it, so
// apply never fails; rows written afterwards carry their values; no row is
// lost. One ADD COLUMN runs in the same transaction as rows that use it.
func TestAddColumnWhileWriting(t *testing.T) {
	t.Parallel()
	p := newPair(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	exec(t, p.src, `CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL, qty int);
		INSERT INTO items (name, qty) SELECT 'item ' || g, g FROM generate_series(1, 1000) g`)
	if err := Add(ctx, p.wh, Config{SourceURL: p.srcURL, Tables: []string{"items"}}); err != nil {
		t.Fatalf("add: %v", err)
	}

	var hasNote atomic.Bool
	var written atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	writeErr := make(chan error, 2)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b := &pgx.Batch{}
				b.Queue("BEGIN")
				if hasNote.Load() {
					b.Queue("INSERT INTO items (name, qty, note) VALUES ($1, $2, $3)", fmt.Sprintf("w%d-%d", w, i), i, fmt.Sprintf("n%d-%d", w, i))
					b.Queue("UPDATE items SET note = 'updated ' || id WHERE id = (SELECT max(id) - 5 FROM items)")
				} else {
					b.Queue("INSERT INTO items (name, qty) VALUES ($1, $2)", fmt.Sprintf("w%d-%d", w, i), i)
					b.Queue("UPDATE items SET qty = qty + 1 WHERE id = (SELECT max(id) - 5 FROM items)")
				}
				b.Queue("COMMIT")
				err := p.src.SendBatch(ctx, b).Close()
				if err != nil {
					writeErr <- err
					return
				}
				written.Add(1)
			}
		}(w)
	}
	time.Sleep(500 * time.Millisecond)
	exec(t, p.src, "ALTER TABLE items ADD COLUMN note text DEFAULT 'none'")
	hasNote.Store(true)
	time.Sleep(500 * time.Millisecond)
	// DDL and rows that use it in one transaction.
	exec(t, p.src, `BEGIN;
		ALTER TABLE items ADD COLUMN price numeric(8,2);
		INSERT INTO items (name, qty, note, price) VALUES ('priced', 1, 'with price', 9.99);
		COMMIT`)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	select {
	case err := <-writeErr:
		t.Fatalf("writer: %v", err)
	default:
	}
	t.Logf("%d write transactions during the test", written.Load())

	requireEqual(t, p, "herd", 1)
	for _, col := range []string{"note", "price"} {
		if n := queryInt(t, p.wh, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.items'::regclass AND attname = $1 AND NOT attisdropped", col); n != 1 {
			t.Errorf("column %s missing on the warehouse", col)
		}
	}
	srcNotes := queryInt(t, p.src, "SELECT count(*) FROM items WHERE note LIKE 'n%' OR note LIKE 'updated%'")
	whNotes := queryInt(t, p.wh, "SELECT count(*) FROM items WHERE note LIKE 'n%' OR note LIKE 'updated%'")
	if srcNotes == 0 || whNotes != srcNotes {
		t.Errorf("rows with note values: source %d, warehouse %d", srcNotes, whNotes)
	}
	// Rows that existed before the ALTER read the default on both sides.
	if n := queryInt(t, p.wh, "SELECT count(*) FROM items WHERE id <= 1000 AND note = 'none'"); n < 900 {
		t.Errorf("%d of the first 1000 rows read note = 'none' on the warehouse; want (nearly) all", n)
	}
	if n := queryInt(t, p.wh, "SELECT count(*) FROM items WHERE price = 9.99"); n != 1 {
		t.Errorf("row written in the ALTER's own transaction: %d on the warehouse, want 1", n)
	}
	if n := queryInt(t, p.wh, "SELECT coalesce(sum(apply_error_count + sync_error_count), 0) FROM pg_stat_subscription_stats"); n != 0 {
		t.Errorf("%d apply/sync errors on the warehouse, want 0", n)
	}
	sts, err := Status(ctx, p.wh, "herd")
	if err != nil {
		t.Fatal(err)
	}
	applied := map[string]bool{}
	for _, d := range sts[0].Drift {
		if d.Kind == "add_column" && d.State == "applied" {
			applied[d.Detail] = true
		}
	}
	if !applied[`added column note text`] || !applied[`added column price numeric(8,2)`] {
		t.Errorf("drift log lacks the applied columns: %+v", sts[0].Drift)
	}
	if sts[0].Health != HealthOK || sts[0].ApplyErrors != 0 {
		t.Errorf("status %s (%s), %d apply errors; want ok and none", sts[0].Health, sts[0].Problem, sts[0].ApplyErrors)
	}
}

// Destructive changes are reported with their fix. A type change that the
// warehouse column cannot hold stops apply: status reports the subscription
// stuck, and running the reported fix lets it go on without losing rows.
func TestDestructiveDriftReported(t *testing.T) {
	t.Parallel()
	p := newPair(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	exec(t, p.src, `CREATE TABLE t (id int PRIMARY KEY, a text, b int, c int);
		CREATE TABLE gone (id int PRIMARY KEY);
		INSERT INTO t SELECT g, 'a' || g, g, g FROM generate_series(1, 100) g`)
	if err := Add(ctx, p.wh, Config{SourceURL: p.srcURL, Tables: []string{"t", "gone"}}); err != nil {
		t.Fatalf("add: %v", err)
	}
	exec(t, p.src, "ALTER TABLE t DROP COLUMN b")
	exec(t, p.src, "ALTER TABLE t ALTER COLUMN c TYPE bigint")
	exec(t, p.src, "DROP TABLE gone")
	exec(t, p.src, "INSERT INTO t (id, a, c) VALUES (101, 'after', 5000000000)")

	var st SubscriptionStatus
	deadline := time.Now().Add(45 * time.Second)
	for {
		sts, err := Status(ctx, p.wh, "herd")
		if err != nil {
			t.Fatal(err)
		}
		st = sts[0]
		// The server counts the apply error in its statistics a little after
		// the worker stops: wait for both.
		if (st.Health == HealthStuck && st.ApplyErrors > 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if st.Health != HealthStuck || st.ApplyErrors == 0 {
		t.Fatalf("status %s (%s), %d apply errors; want stuck with errors", st.Health, st.Problem, st.ApplyErrors)
	}
	if !containsAll(st.LastError, "out of range for type integer", "public.t") {
		t.Errorf("last error = %q, want the overflow on public.t from the server log", st.LastError)
	}
	fixes := map[string]string{}
	for _, d := range st.Drift {
		fixes[d.Kind] = d.Fix
	}
	want := map[string]string{
		"drop_column": `ALTER TABLE public.t DROP COLUMN b;`,
		"type_change": `ALTER TABLE public.t ALTER COLUMN c TYPE bigint USING c::bigint;`,
		"drop_table":  `DROP TABLE public.gone;`,
	}
	for k, v := range want {
		if fixes[k] != v {
			t.Errorf("drift %s: fix %q, want %q (all: %+v)", k, fixes[k], v, st.Drift)
		}
	}
	exec(t, p.wh, fixes["type_change"])
	exec(t, p.wh, fixes["drop_column"])
	src, err := connectSource(ctx, p.srcURL)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(context.Background())
	if err := WaitApplied(ctx, p.wh, src, "herd", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, p.wh, "SELECT c FROM t WHERE id = 101"); n != 5000000000 {
		t.Errorf("row 101 has c = %d on the warehouse, want 5000000000", n)
	}
	if n := queryInt(t, p.wh, "SELECT count(*) FROM t"); n != 101 {
		t.Errorf("warehouse has %d rows of t, want 101", n)
	}
}
