package queries

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRunScheduled: the schedule runs due queries in a loop of its own,
// and not while another process holds the schedule's lock.
func TestRunScheduled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, store, _ := setup(t, Config{})
	if err := store.Save(ctx, "minutely", "SELECT 1", time.Minute); err != nil {
		t.Fatal(err)
	}
	other, err := db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Release()
	if _, err := other.Exec(ctx, "SELECT pg_advisory_lock($1)", scheduleLockKey); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- store.RunScheduled(ctx, 20*time.Millisecond) }()
	runs := func() int {
		var n int
		if err := db.QueryRow(ctx, "SELECT count(*) FROM herd.query_runs").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	time.Sleep(300 * time.Millisecond)
	if n := runs(); n != 0 {
		t.Fatalf("%d runs while another process holds the schedule, want 0", n)
	}
	if _, err := other.Exec(ctx, "SELECT pg_advisory_unlock($1)", scheduleLockKey); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runs() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the due query never ran")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSkippedTickNamesHolder: a tick skipped because another session
// holds the schedule's lock is logged at WARN with that session's pid and
// role.
func TestSkippedTickNamesHolder(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, _, _ := setup(t, Config{})
	var buf syncBuffer
	store := New(db, slog.New(slog.NewTextHandler(&buf, nil)), Config{})
	other, err := db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Release()
	var pid int32
	if err := other.QueryRow(ctx, "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock($1)) l", scheduleLockKey).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	store.runScheduledOnce(ctx)
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, fmt.Sprintf("holder_pid=%d", pid)) || !strings.Contains(out, "holder_user=postgres") {
		t.Fatalf("log of a skipped tick: %q, want a WARN naming pid %d and user postgres", out, pid)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
