package instance_test

import (
	"os"
	"strings"
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
	if _, err := instance.Find(dir); err == nil || !strings.Contains(err.Error(), "is stale") {
		t.Errorf("a dead pid: %v, want stale", err)
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
