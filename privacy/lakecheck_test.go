package privacy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/privacy"
)

// TestDeleteRefusesAWrongLake: a delete given a lake that cannot be herd's
// (a directory that does not exist, as ./data/lake is when the command
// runs from another directory, or one with no source= directory) refuses
// before it removes anything, and records the request as failed, instead
// of reporting a lake it never saw as rewritten.
func TestDeleteRefusesAWrongLake(t *testing.T) {
	ctx := context.Background()
	p := herdtest.Start(t, herdtest.Options{})
	send(t, p, item("track", "alice", "", ""), item("track", "bob", "", ""))
	p.WaitRows(t, 2, 10*time.Second, `SELECT count(*) FROM herd.events`)

	empty := t.TempDir()
	if err := os.MkdirAll(filepath.Join(empty, "not-a-source"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		dir     string
		emptyOK bool
		want    string
	}{
		{"missing directory", filepath.Join(t.TempDir(), "data", "lake"), false, "does not exist"},
		{"missing directory, empty accepted", filepath.Join(t.TempDir(), "data", "lake"), true, "does not exist"},
		{"no source= directory", empty, false, "no source= directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := privacy.Delete(ctx, p.DB, privacy.Person{UserIDs: []string{"alice"}}, privacy.DeleteOptions{Lake: archive.NewDir(c.dir), LakeEmptyOK: c.emptyOK})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--data-dir") {
				t.Fatalf("delete with lake %s: %v, want an error saying %q and to give --data-dir", c.dir, err, c.want)
			}
			if n := count(t, p, `SELECT count(*) FROM herd.events WHERE user_id = 'alice'`); n != 1 {
				t.Errorf("a refused delete removed alice's rows: %d left", n)
			}
			if n := count(t, p, `SELECT count(*) FROM herd.privacy_requests WHERE id = $1 AND status = 'failed'`, res.RequestID); n != 1 {
				t.Errorf("request %d is not recorded as failed", res.RequestID)
			}
		})
	}

	// herd's own lake before anything was archived: accepted when said so.
	res, err := privacy.Delete(ctx, p.DB, privacy.Person{UserIDs: []string{"alice"}}, privacy.DeleteOptions{Lake: archive.NewDir(empty), LakeEmptyOK: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts["events"] != 1 {
		t.Errorf("removed %v, want alice's one event", res.Counts)
	}
}
