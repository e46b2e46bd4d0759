package instance_test

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd/instance"
)

func TestFind(t *testing.T) {
	dir := t.TempDir()
	if _, err := instance.Find(dir); err == nil || !strings.Contains(err.Error(), "no herd up has run on") {
		t.Errorf("no file: %v", err)
	}
	in := instance.Info{PID: os.Getpid(), StartedAt: time.Now(), DatabaseURL: "postgres://h/db", NATSURL: "nats://127.0.0.1:4333"}
	if err := instance.Write(dir, in); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(instance.Path(dir))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("written: %v, mode %v", err, st.Mode().Perm())
	}
	// The file of a process that holds no lock is stale, though its pid
	// (ours) runs: a pid says nothing in a container or after reuse.
	if _, err := instance.Find(dir); err == nil || !strings.Contains(err.Error(), "is stale") {
		t.Errorf("a live pid without the lock: %v, want stale", err)
	}
	lock, err := instance.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	got, err := instance.Find(dir)
	if err != nil || got.NATSURL != in.NATSURL || got.DatabaseURL != in.DatabaseURL {
		t.Errorf("live file: %+v %v", got, err)
	}

	// Another pid's file is left alone by Remove; a file others may read
	// is refused; a dead pid's file is stale.
	if err := instance.Remove(dir, os.Getpid()+1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(instance.Path(dir)); err != nil {
		t.Errorf("Remove with another pid removed the file: %v", err)
	}
	if err := os.Chmod(instance.Path(dir), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := instance.Find(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a 0644 file: %v, want a refusal", err)
	}
	in.PID = 1 << 22 // above Linux's pid_max
	if err := instance.Write(dir, in); err != nil {
		t.Fatal(err)
	}
	if _, err := instance.Find(dir); err != nil {
		t.Errorf("a dead pid with the lock held: %v, want live", err)
	}
	lock.Close()
	if _, err := instance.Find(dir); err == nil || !strings.Contains(err.Error(), "is stale") {
		t.Errorf("a dead pid, no lock: %v, want stale", err)
	}
	in.PID = os.Getpid()
	if err := instance.Write(dir, in); err != nil {
		t.Fatal(err)
	}
	if err := instance.Remove(dir, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(instance.Path(dir)); !os.IsNotExist(err) {
		t.Errorf("Remove left the file: %v", err)
	}
}

// TestLockOneHerdUp starts many herd ups' locks on one data directory at
// once: exactly one gets it, the others are told one runs; once it is
// released, the next start gets it.
func TestLockOneHerdUp(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		held  []*os.File
		other []error
	)
	for range n {
		wg.Go(func() {
			f, err := instance.Lock(dir)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				other = append(other, err)
				return
			}
			held = append(held, f)
		})
	}
	wg.Wait()
	if len(held) != 1 || len(other) != n-1 {
		t.Fatalf("%d of %d starts took the lock (errors %v), want exactly 1", len(held), n, other)
	}
	for _, err := range other {
		if !errors.Is(err, instance.ErrRunning) || !strings.Contains(err.Error(), "herd up already runs on "+dir) {
			t.Errorf("refused start: %v, want %q", err, "herd up already runs on "+dir)
		}
	}
	if !instance.Held(dir) {
		t.Error("Held: false while a herd up holds the lock")
	}
	held[0].Close()
	if instance.Held(dir) {
		t.Error("Held: true after the lock was released")
	}
	f, err := instance.Lock(dir)
	if err != nil {
		t.Fatalf("a start after the first stopped: %v", err)
	}
	f.Close()
}

// TestFindForeignOwner: a live herd up's connection file another user owns
// is refused with advice to run as that user, not to delete it; a stale one
// keeps the advice of secrets.CheckFile.
func TestFindForeignOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file to another user")
	}
	dir := t.TempDir()
	if err := instance.Write(dir, instance.Info{PID: 1}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(instance.Path(dir), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	lock, err := instance.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	_, err = instance.Find(dir)
	if err == nil || !strings.Contains(err.Error(), "runs as uid 65534") || !strings.Contains(err.Error(), "run this command as that user") || strings.Contains(err.Error(), "delete it") {
		t.Errorf("live herd up of another user: %v, want advice to run as uid 65534", err)
	}
	lock.Close()
	if _, err := instance.Find(dir); err == nil || strings.Contains(err.Error(), "run this command as that user") {
		t.Errorf("stale file of another user: %v, want the refusal of a foreign file", err)
	}
}
