package queries

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRunDueFairAcrossRoles: a role with many due queries gets at most
// DuePerRole of them run in a tick, and another role's due query runs in
// that same tick.
func TestRunDueFairAcrossRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _, _ := setup(t, Config{})
	store := New(db, quietLog(), Config{DuePerRole: 2, ScheduledPerRole: 50})
	x, y := analyst(t, db, "qfx"), analyst(t, db, "qfy")
	for i := 0; i < 6; i++ {
		if err := store.SaveAs(ctx, fmt.Sprintf("x%d", i), "select 1", time.Minute, x.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.SaveAs(ctx, "y0", "select 2", time.Minute, y.Name); err != nil {
		t.Fatal(err)
	}
	if err := store.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	count := func(role string) int {
		var n int
		if err := db.QueryRow(ctx, "SELECT count(*) FROM herd.query_runs WHERE run_as = $1", role).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if nx, ny := count(x.Name), count(y.Name); nx != 2 || ny != 1 {
		t.Fatalf("one tick ran %d of %s's 6 due queries and %d of %s's 1, want 2 and 1", nx, x.Name, ny, y.Name)
	}
	if err := store.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if nx := count(x.Name); nx != 4 {
		t.Fatalf("after a second tick %d runs of %s's, want 4", nx, x.Name)
	}
}

// TestScheduledRunTimeout: a scheduled run has the shorter
// ScheduledTimeout; a run asked for by hand keeps Timeout.
func TestScheduledRunTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _, _ := setup(t, Config{})
	store := New(db, quietLog(), Config{ScheduledTimeout: 300 * time.Millisecond, Timeout: time.Minute})
	x := analyst(t, db, "qft")
	if err := store.SaveAs(ctx, "slow", "select pg_sleep(1.5)", time.Minute, x.Name); err != nil {
		t.Fatal(err)
	}
	if err := store.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	var msg *string
	if err := db.QueryRow(ctx, "SELECT error FROM herd.query_runs WHERE query_name = 'slow'").Scan(&msg); err != nil {
		t.Fatal(err)
	}
	if msg == nil || !strings.Contains(*msg, "statement timeout") {
		t.Fatalf("scheduled run of a 1.5 s query with a 300 ms timeout: error %v, want a statement timeout", msg)
	}
	r, err := store.Run(ctx, "slow")
	if err != nil || r.Error != "" {
		t.Fatalf("run by hand: %v %q, want success", err, r.Error)
	}
}

// TestScheduledPerRoleCap: a role keeps at most ScheduledPerRole
// scheduled queries; unscheduled ones and replacing one stay possible.
func TestScheduledPerRoleCap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _, _ := setup(t, Config{})
	store := New(db, quietLog(), Config{ScheduledPerRole: 3})
	x := analyst(t, db, "qfc")
	for i := 0; i < 3; i++ {
		if err := store.SaveShared(ctx, fmt.Sprintf("s%d", i), "select 1", time.Minute, x.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.SaveShared(ctx, "s3", "select 1", time.Minute, x.Name); !errors.Is(err, ErrScheduleFull) {
		t.Fatalf("fourth scheduled query: %v, want ErrScheduleFull", err)
	}
	if err := store.SaveShared(ctx, "s3", "select 1", 0, x.Name); err != nil {
		t.Fatalf("unscheduled: %v", err)
	}
	if err := store.SaveShared(ctx, "s0", "select 2", time.Hour, x.Name); err != nil {
		t.Fatalf("replacing a scheduled one: %v", err)
	}
}
