package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/privacy"
)

// TestDeleteRerunKeepsLinkedIDs: a delete that removed the Postgres rows
// and then failed at the lake (an archiver's lease refused the direct
// rewrite) is finished by running it again: the rerun still follows the
// anonymous ids linked to the user, though their rows are gone from
// Postgres, and the lake ends without any of the user's events.
func TestDeleteRerunKeepsLinkedIDs(t *testing.T) {
	ctx := context.Background()
	p := herdtest.Start(t, herdtest.Options{})
	dir := t.TempDir()
	lake := archive.NewDir(dir)
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	ar := archive.New(archive.Config{Stream: p.Stream, FileMaxAge: 200 * time.Millisecond, Window: 100 * 365 * 24 * time.Hour}, lake, p.JS, herdtest.Logger(t), nil)
	go func() { done <- ar.Run(actx) }()
	stopped := false
	stopArchiver := func() {
		if !stopped {
			stopped = true
			stop()
			<-done
		}
	}
	t.Cleanup(stopArchiver)

	send(t, p,
		item("page", "", "anon-a1", ""),
		item("identify", "alice", "anon-a1", `"traits":{"email":"alice@example.com"}`),
		item("track", "", "anon-a2", ""),
		item("alias", "alice", "", `"previousId":"anon-a2"`),
		item("track", "alice", "", ""),
		item("track", "bob", "anon-b", ""),
	)
	aliceIDs := []string{"alice", "anon-a1", "anon-a2"}
	const all, bobEvents = 6, 1
	isAlice := func(e *herd.Event) bool {
		return slices.Contains(aliceIDs, e.UserID) || slices.Contains(aliceIDs, e.AnonymousID)
	}
	waitFor(t, "events in Postgres and the lake", func() (bool, string) {
		pg := count(t, p, `SELECT count(*) FROM herd.events`)
		lk := lakeCount(t, lake, func(*herd.Event) bool { return true })
		return pg == all && lk == all, fmt.Sprintf("postgres %d, lake %d", pg, lk)
	})

	// The archiver runs and is not asked: the direct rewrite is refused
	// after the Postgres rows are gone.
	first, err := privacy.Delete(ctx, p.DB, privacy.Person{UserIDs: []string{"alice"}}, privacy.DeleteOptions{Lake: lake, Log: herdtest.Logger(t)})
	var running *archive.ErrArchiverRunning
	if !errors.As(err, &running) {
		t.Fatalf("first delete: %v, want the archiver's lease to refuse the lake", err)
	}
	if n := count(t, p, `SELECT count(*) FROM herd.events WHERE user_id = ANY($1) OR anonymous_id = ANY($1)`, aliceIDs); n != 0 {
		t.Fatalf("first delete left %d rows of alice in Postgres: the rerun below would prove nothing", n)
	}
	if n := lakeCount(t, lake, isAlice); n != all-bobEvents {
		t.Fatalf("the lake holds %d events of alice after the failed delete, want %d", n, all-bobEvents)
	}

	stopArchiver()
	second, err := privacy.Delete(ctx, p.DB, privacy.Person{UserIDs: []string{"alice"}}, privacy.DeleteOptions{Lake: lake, Log: herdtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(second.Linked) != fmt.Sprint(first.Linked) || len(second.Linked) != 2 {
		t.Errorf("the rerun linked %v, the first run %v; want anon-a1 and anon-a2 both times", second.Linked, first.Linked)
	}
	if n := lakeCount(t, lake, isAlice); n != 0 {
		t.Errorf("after the rerun the lake holds %d events of alice", n)
	}
	if n := lakeCount(t, lake, func(*herd.Event) bool { return true }); n != bobEvents {
		t.Errorf("after the rerun the lake holds %d events, want bob's %d", n, bobEvents)
	}
	if n, ok := duckdbCount(t, dir, aliceIDs); ok && n != 0 {
		t.Errorf("DuckDB reads %d rows of alice from the lake", n)
	}
	var status string
	if err := p.DB.QueryRow(ctx, `SELECT status FROM herd.privacy_requests WHERE id = $1`, first.RequestID).Scan(&status); err != nil || status != "failed" {
		t.Errorf("first request recorded as %q (%v), want failed", status, err)
	}
}

// TestLinkedIDsRecordedWithThePostgresDelete: the linked ids are on the
// request as soon as the rows that linked them are gone, before the lake is
// rewritten, so a rerun after the process died in between (killed, ssh
// session lost) still follows them.
func TestLinkedIDsRecordedWithThePostgresDelete(t *testing.T) {
	ctx := context.Background()
	p := herdtest.Start(t, herdtest.Options{})
	send(t, p,
		item("identify", "carol", "anon-c1", ""),
		item("track", "", "anon-c1", ""),
	)
	waitFor(t, "events in Postgres", func() (bool, string) {
		n := count(t, p, `SELECT count(*) FROM herd.events`)
		return n == 2, fmt.Sprintf("%d rows", n)
	})
	var seen []string
	died := errors.New("the process died here")
	_, err := privacy.Delete(ctx, p.DB, privacy.Person{UserIDs: []string{"carol"}}, privacy.DeleteOptions{
		Log: herdtest.Logger(t),
		Remote: func(ctx context.Context, _ archive.EraseRequest) (archive.EraseResult, string, error) {
			// What a rerun would find if the process ended now.
			if err := p.DB.QueryRow(ctx, `SELECT linked_ids FROM herd.privacy_requests WHERE status = 'running'`).Scan(&seen); err != nil {
				t.Errorf("read the running request: %v", err)
			}
			return archive.EraseResult{}, "", died
		},
	})
	if !errors.Is(err, died) {
		t.Fatalf("delete: %v", err)
	}
	if !slices.Equal(seen, []string{"anon-c1"}) {
		t.Errorf("while the lake was being rewritten the request held linked ids %v, want [anon-c1]", seen)
	}
}
