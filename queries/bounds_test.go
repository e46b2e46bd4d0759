package queries

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSnapshotBytesBounded: a snapshot keeps at most MaxBytes of values,
// whether it runs as herd or as its saver, and one value larger than that
// is not kept at all (Postgres does not even send it to herd).
func TestSnapshotBytesBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store, _ := setup(t, Config{MaxBytes: 1 << 20})
	bob := analyst(t, db, "bytes")
	const wide = "select repeat(chr(120), 300000) from generate_series(1, 10)"
	if err := store.Save(ctx, "herds", wide, 0); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveShared(ctx, "bobs", wide, 0, bob.Name); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveShared(ctx, "huge", "select repeat(chr(120), 5000000) as v", 0, bob.Name); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"herds", "bobs"} {
		r, err := store.Run(ctx, name)
		if err != nil || r.Error != "" {
			t.Fatalf("run %s: %v %s", name, err, r.Error)
		}
		if len(r.Rows) != 3 || !r.Truncated || r.RowCount != 10 {
			t.Fatalf("%s: %d rows, truncated %v, count %d; want 3 (1 MiB of 300 kB values), true, 10", name, len(r.Rows), r.Truncated, r.RowCount)
		}
	}
	r, err := store.Run(ctx, "huge")
	if err != nil || r.Error != "" {
		t.Fatalf("run huge: %v %s", err, r.Error)
	}
	if len(r.Rows) != 0 || !r.Truncated || r.RowCount != 1 {
		t.Fatalf("one 5 MB value: %d rows, truncated %v, count %d; want 0, true, 1", len(r.Rows), r.Truncated, r.RowCount)
	}
}

// TestRoleSnapshotBytesBounded: a role's stored snapshots are bounded in
// bytes; the newest run is kept.
func TestRoleSnapshotBytesBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const limit = 1 << 20
	db, store, _ := setup(t, Config{RoleBytes: limit})
	bob := analyst(t, db, "store")
	// About 320 kB of hex per run, which compresses poorly.
	sql := "select string_agg(md5(random()::text), '') from generate_series(1, 10000)"
	for _, name := range []string{"one", "two"} {
		if err := store.SaveShared(ctx, name, sql, 0, bob.Name); err != nil {
			t.Fatal(err)
		}
	}
	var last int64
	for i := 0; i < 6; i++ {
		for _, name := range []string{"one", "two"} {
			r, err := store.Run(ctx, name)
			if err != nil || r.Error != "" {
				t.Fatalf("run %s: %v %s", name, err, r.Error)
			}
			last = r.ID
		}
	}
	var n, size int64
	var newest bool
	if err := db.QueryRow(ctx, `SELECT count(*), coalesce(sum(pg_column_size(rows) + pg_column_size(columns) + pg_column_size(sql)), 0),
			bool_or(id = $2) FROM herd.query_runs WHERE run_as = $1`, bob.Name, last).Scan(&n, &size, &newest); err != nil {
		t.Fatal(err)
	}
	if size > limit || n >= 12 || !newest {
		t.Fatalf("%s keeps %d runs of %d bytes (newest kept: %v); want at most %d bytes and the newest", bob.Name, n, size, newest, limit)
	}
	var queries int
	if err := db.QueryRow(ctx, `SELECT count(DISTINCT query_name) FROM herd.query_runs WHERE run_as = $1`, bob.Name).Scan(&queries); err != nil {
		t.Fatal(err)
	}
	if queries != 2 {
		t.Fatalf("runs of %d queries kept, want both queries' latest", queries)
	}
}

// TestSharedSaveNeverReplacesAnotherRole: a role saving a name another
// role is inserting at that moment gets ErrTaken, not the other's query.
func TestSharedSaveNeverReplacesAnotherRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store, _ := setup(t, Config{})
	alice, bob := analyst(t, db, "race_a"), analyst(t, db, "race_b")
	// alice's save of "race", still uncommitted: bob's check finds no row.
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, `INSERT INTO herd.saved_queries (name, sql, saved_by, shared) VALUES ('race', 'select 1', $1, true)`, alice.Name); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- store.SaveShared(ctx, "race", "select 2", 0, bob.Name) }()
	// Let bob's save reach the insert, which waits for alice's.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := db.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO herd.saved_queries%' AND datname = current_database()").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob's save never waited for alice's")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrTaken) {
		t.Fatalf("bob's save of alice's name: %v, want ErrTaken", err)
	}
	var owner, sql string
	if err := db.QueryRow(ctx, "SELECT saved_by, sql FROM herd.saved_queries WHERE name = 'race'").Scan(&owner, &sql); err != nil {
		t.Fatal(err)
	}
	if owner != alice.Name || sql != "select 1" {
		t.Fatalf("race is %s's %q, want alice's select 1", owner, sql)
	}
}
