package privacy_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/check"
	"github.com/herdhq/herd/internal/duckdbtest"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/privacy"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/writer"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/prometheus/client_golang/prometheus"
)

// send posts a batch to the collector with the source's write key.
func send(t *testing.T, p *herdtest.Pipeline, items ...string) {
	t.Helper()
	body := `{"batch":[` + strings.Join(items, ",") + `]}`
	req, _ := http.NewRequest("POST", p.URL+"/v1/batch", strings.NewReader(body))
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(p.WriteKey+":")))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /v1/batch: status %d", resp.StatusCode)
	}
}

var msgN int

func item(typ, userID, anonID string, extra string) string {
	msgN++
	var b strings.Builder
	fmt.Fprintf(&b, `{"type":%q,"messageId":"m%d"`, typ, msgN)
	if userID != "" {
		fmt.Fprintf(&b, `,"userId":%q`, userID)
	}
	if anonID != "" {
		fmt.Fprintf(&b, `,"anonymousId":%q`, anonID)
	}
	if typ == "track" {
		b.WriteString(`,"event":"Viewed"`)
	}
	if extra != "" {
		b.WriteString("," + extra)
	}
	b.WriteString("}")
	return b.String()
}

func count(t *testing.T, p *herdtest.Pipeline, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := p.DB.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lakeCount counts the lake's events that match (a dry run of Erase).
func lakeCount(t *testing.T, lake archive.Lake, match func(*herd.Event) bool) int64 {
	t.Helper()
	res, err := archive.Erase(context.Background(), lake, archive.EraseOptions{Match: match, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	return res.Removed
}

// duckdbCount counts the lake's rows whose user or anonymous id is in ids,
// reading a directory the way an analyst would. Skipped without node.
func duckdbCount(t *testing.T, dir string, ids []string) (int64, bool) {
	t.Helper()
	quoted := make([]string, len(ids))
	for i, id := range ids {
		quoted[i] = "'" + strings.ReplaceAll(id, "'", "''") + "'"
	}
	in := strings.Join(quoted, ",")
	rows := duckdbtest.Query(t, fmt.Sprintf(`SELECT count(*) AS n FROM read_parquet('%s/source=*/date=*/hour=*/*.parquet', hive_partitioning = true)
		WHERE user_id IN (%s) OR anonymous_id IN (%s)`, dir, in, in))
	if len(rows) != 1 {
		t.Fatalf("duckdb: %d rows", len(rows))
	}
	var n int64
	fmt.Sscan(fmt.Sprint(rows[0]["n"]), &n)
	return n, true
}

// copyLake copies every object of lake into a directory for DuckDB (its S3
// support is downloaded at run time, and tests stay offline).
func copyLake(t *testing.T, lake archive.Lake) string {
	t.Helper()
	dir := t.TempDir()
	objs, err := lake.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		data, err := lake.Get(context.Background(), o.Key)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.FromSlash(o.Key))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func s3Lake(t *testing.T) archive.Lake {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket("lake"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	lake, err := archive.Open("s3://lake/herd", archive.S3Config{Endpoint: srv.URL, AccessKey: "test", SecretKey: "test-secret", PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	return lake
}

// TestDeleteReachesEveryStore is acceptance 4 of issue 16: after a delete,
// neither Postgres (events, rejects, identity tables, sessions) nor the
// lake as DuckDB reads it holds the user's or their linked anonymous ids'
// events, other people's are untouched, and a replay of the day does not
// restore them.
func TestDeleteReachesEveryStore(t *testing.T) {
	for _, kind := range []string{"dir", "s3"} {
		t.Run(kind, func(t *testing.T) {
			testDelete(t, kind)
		})
	}
}

func testDelete(t *testing.T, kind string) {
	ctx := context.Background()
	p := herdtest.Start(t, herdtest.Options{})
	var lake archive.Lake
	dir := ""
	if kind == "dir" {
		dir = t.TempDir()
		lake = archive.NewDir(dir)
	} else {
		lake = s3Lake(t)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	ar := archive.New(archive.Config{Stream: p.Stream, FileMaxAge: 200 * time.Millisecond, Window: 100 * 365 * 24 * time.Hour}, lake, p.JS, herdtest.Logger(t), nil)
	go func() { done <- ar.Run(actx) }()
	t.Cleanup(func() { stop(); <-done })

	// alice browsed as anon-a1, then identified; she had used anon-a2
	// elsewhere and aliased it; bob shares nothing with her.
	send(t, p,
		item("page", "", "anon-a1", ""),
		item("track", "", "anon-a1", ""),
		item("identify", "alice", "anon-a1", `"traits":{"email":"alice@example.com"}`),
		item("group", "alice", "", `"groupId":"acme"`),
		item("track", "", "anon-a2", ""),
		item("alias", "alice", "", `"previousId":"anon-a2"`),
		item("track", "alice", "", ""),
		item("track", "alice", "", `"timestamp":"not a time"`), // a reject
		item("page", "", "anon-b", ""),
		item("identify", "bob", "anon-b", `"traits":{"email":"bob@example.com"}`),
		item("group", "bob", "", `"groupId":"acme"`),
		item("track", "bob", "", `"timestamp":"not a time"`), // a reject
	)
	aliceIDs := []string{"alice", "anon-a1", "anon-a2"}
	bobIDs := []string{"bob", "anon-b"}
	const aliceEvents, bobEvents = 7, 3
	isIn := func(ids []string) func(e *herd.Event) bool {
		return func(e *herd.Event) bool {
			for _, id := range ids {
				if e.UserID == id || e.AnonymousID == id {
					return true
				}
			}
			return false
		}
	}
	waitFor(t, "events in Postgres and the lake", func() (bool, string) {
		pg := count(t, p, `SELECT count(*) FROM herd.events`)
		rj := count(t, p, `SELECT count(*) FROM herd.rejects`)
		lk := lakeCount(t, lake, func(*herd.Event) bool { return true })
		return pg == aliceEvents+bobEvents && rj == 2 && lk == aliceEvents+bobEvents, fmt.Sprintf("postgres %d, rejects %d, lake %d", pg, rj, lk)
	})
	if n := count(t, p, `SELECT count(*) FROM herd.sessions WHERE visitor_id = ANY($1)`, aliceIDs); n == 0 {
		t.Fatal("alice has no session before the delete: the check below would prove nothing")
	}

	res, err := privacy.Delete(ctx, p.DB, privacy.Person{UserIDs: []string{"alice"}}, privacy.DeleteOptions{
		Lake: lake,
		Drain: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			return privacy.WaitConsumers(ctx, p.JS, p.Stream.Name, []string{"herd-writer", "herd-archiver"}, herdtest.Logger(t))
		},
		// The running archiver rewrites its lake (herd privacy delete
		// with --nats-url); beside it, a direct rewrite is refused.
		Remote: func(ctx context.Context, req archive.EraseRequest) (archive.EraseResult, string, error) {
			return archive.RequestErase(ctx, p.JS.Conn(), p.Stream, req, time.Minute)
		},
		Log: herdtest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lake != lake.String() {
		t.Errorf("lake rewritten: %q, want the archiver's %q", res.Lake, lake.String())
	}
	if strings.Join(res.Linked, ",") != "anon-a1,anon-a2" {
		t.Errorf("linked ids %v, want anon-a1 and anon-a2", res.Linked)
	}

	checkGone := func(when string) {
		t.Helper()
		for _, c := range []struct {
			what      string
			sql       string
			alice     int64
			bobWanted int64
		}{
			{"events", `SELECT count(*) FROM herd.events WHERE user_id = ANY($1) OR anonymous_id = ANY($1)`, 0, bobEvents},
			{"rejects", `SELECT count(*) FROM herd.rejects WHERE herd.raw_has_id(raw, $1)`, 0, 1},
			{"users", `SELECT count(*) FROM herd.users WHERE user_id = ANY($1)`, 0, 1},
			{"identities", `SELECT count(*) FROM herd.identities WHERE user_id = ANY($1) OR anonymous_id = ANY($1)`, 0, 1},
			{"group members", `SELECT count(*) FROM herd.group_members WHERE member_id = ANY($1)`, 0, 1},
			{"sessions", `SELECT count(*) FROM herd.sessions WHERE visitor_id = ANY($1) OR user_id = ANY($1)`, 0, 1},
		} {
			if n := count(t, p, c.sql, aliceIDs); n != c.alice {
				t.Errorf("%s: %s hold %d rows of alice, want %d", when, c.what, n, c.alice)
			}
			if n := count(t, p, c.sql, bobIDs); n != c.bobWanted {
				t.Errorf("%s: %s hold %d rows of bob, want %d", when, c.what, n, c.bobWanted)
			}
		}
		if n := lakeCount(t, lake, isIn(aliceIDs)); n != 0 {
			t.Errorf("%s: the lake holds %d events of alice", when, n)
		}
		if n := lakeCount(t, lake, isIn(bobIDs)); n != bobEvents {
			t.Errorf("%s: the lake holds %d events of bob, want %d", when, n, bobEvents)
		}
		d := dir
		if d == "" {
			d = copyLake(t, lake)
		}
		if n, ok := duckdbCount(t, d, aliceIDs); ok && n != 0 {
			t.Errorf("%s: DuckDB reads %d rows of alice from the lake", when, n)
		}
		if n, ok := duckdbCount(t, d, bobIDs); ok && n != bobEvents {
			t.Errorf("%s: DuckDB reads %d rows of bob from the lake, want %d", when, n, bobEvents)
		}
	}
	checkGone("after the delete")

	// herd check tells a deliberate removal from a loss: the erased events
	// keep their ledger entries but are not counted as accepted.
	cr, err := check.Check(ctx, p.DB, p.JS, check.ManifestCounter{Lake: lake}, check.Config{Stream: p.Stream})
	if err != nil {
		t.Fatal(err)
	}
	if cr.Differences != 0 || cr.Events != bobEvents || cr.Lake != bobEvents {
		t.Errorf("herd check after the delete: %d differences, %d rows, %d in the lake (want 0, %d, %d): %+v", cr.Differences, cr.Events, cr.Lake, bobEvents, bobEvents, cr.Hours)
	}

	// The request and what each store lost are recorded.
	var status string
	var counts map[string]int64
	if err := p.DB.QueryRow(ctx, `SELECT status, counts FROM herd.privacy_requests WHERE id = $1`, res.RequestID).Scan(&status, &counts); err != nil {
		t.Fatal(err)
	}
	if status != "done" || counts["events"] != aliceEvents || counts["lake_rows"] != aliceEvents || counts["rejects"] != 1 {
		t.Errorf("request recorded as %s with %v", status, counts)
	}
	if n := count(t, p, `SELECT sum(events + lake_rows + rejects) FROM herd.privacy_removed WHERE request_id = $1`, res.RequestID); n != 2*aliceEvents+1 {
		t.Errorf("herd.privacy_removed counts %d rows, want %d", n, 2*aliceEvents+1)
	}

	// A replay of the day (forgetting the ledger entries of missing rows,
	// the default) brings nothing back, and the ledger keeps alice's ids.
	today := time.Now().UTC()
	if _, err := archive.Replay(ctx, lake, p.DB, writer.NewStore(p.DB), archive.ReplayOptions{From: today.Add(-24 * time.Hour), To: today, ForgetMissing: true}); err != nil {
		t.Fatal(err)
	}
	checkGone("after a replay")
	if n := count(t, p, `SELECT count(*) FROM herd.message_ids m JOIN herd.privacy_erased e USING (source_id, message_id)`); n != aliceEvents {
		t.Errorf("the ledger keeps %d of alice's %d message ids", n, aliceEvents)
	}
}

// TestDeleteWaitsForTheStream: events of the person still on the stream
// when the delete is asked for (the writer is down) are stored first, then
// removed; they do not land afterwards.
func TestDeleteWaitsForTheStream(t *testing.T) {
	ctx := context.Background()
	p := herdtest.Start(t, herdtest.Options{})
	p.StopWriter()
	send(t, p, item("track", "carol", "", ""), item("track", "dave", "", ""))
	errc := make(chan error, 1)
	go func() {
		_, err := privacy.Delete(ctx, p.DB, privacy.Person{UserIDs: []string{"carol"}}, privacy.DeleteOptions{
			Drain: func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				return privacy.WaitConsumers(ctx, p.JS, p.Stream.Name, []string{"herd-writer"}, nil)
			},
		})
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond) // the delete is waiting
	p.StartWriter(t, nil)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Dave's event, sent with carol's, is stored: the writer has passed
	// carol's too.
	p.WaitRows(t, 1, 10*time.Second, `SELECT count(*) FROM herd.events WHERE user_id = 'dave'`)
	if n := count(t, p, `SELECT count(*) FROM herd.events WHERE user_id = 'carol'`); n != 0 {
		t.Errorf("carol's event in flight landed after the delete: %d rows", n)
	}
	if n := count(t, p, `SELECT count(*) FROM herd.events WHERE user_id = 'dave'`); n != 1 {
		t.Errorf("dave has %d events, want 1", n)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestSuppressDropsFutureEvents: a suppressed person's new events are
// answered 200 and counted, not stored; others' are stored; unsuppressing
// lets them in again.
func TestSuppressDropsFutureEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := herdtest.Start(t, herdtest.Options{})
	kv, err := stream.SuppressedKV(ctx, p.JS, p.Stream)
	if err != nil {
		t.Fatal(err)
	}
	go privacy.MirrorSuppressions(ctx, p.DB, kv, time.Second, herdtest.Logger(t)) //nolint:errcheck

	if _, n, err := privacy.Suppress(ctx, p.DB, privacy.Person{UserIDs: []string{"erin"}, AnonymousIDs: []string{"anon-e"}}); err != nil || n != 2 {
		t.Fatalf("suppress: %d new, %v", n, err)
	}
	// The table and the bucket hold hashes, never the ids.
	if n := count(t, p, `SELECT count(*) FROM herd.suppressions WHERE key LIKE '%erin%' OR key LIKE '%anon-e%'`); n != 0 {
		t.Error("herd.suppressions shows an id in clear")
	}
	dropped := map[string]string{"result": "dropped", "reason": "suppressed"}
	waitFor(t, "the collector to load the suppression", func() (bool, string) {
		send(t, p, item("track", "erin", "", ""))
		v := counterValue(t, p.Registry, "herd_collector_events_total", dropped)
		return v > 0, fmt.Sprint(v, " dropped")
	})
	dropsBefore := counterValue(t, p.Registry, "herd_collector_events_total", dropped)
	first := msgN + 1
	send(t, p, item("track", "erin", "", ""), item("page", "", "anon-e", ""), item("track", "frank", "anon-e2", ""))
	p.WaitRows(t, 1, 10*time.Second, `SELECT count(*) FROM herd.events WHERE user_id = 'frank'`)
	sent := []string{fmt.Sprint("m", first), fmt.Sprint("m", first+1)}
	if got := counterValue(t, p.Registry, "herd_collector_events_total", dropped) - dropsBefore; got != 2 {
		t.Errorf("%v suppressed events counted, want 2", got)
	}
	if n := count(t, p, `SELECT count(*) FROM herd.events WHERE message_id = ANY($1)`, sent); n != 0 {
		t.Errorf("%d events of a suppressed person were stored", n)
	}

	if _, n, err := privacy.Unsuppress(ctx, p.DB, privacy.Person{UserIDs: []string{"erin"}}); err != nil || n != 1 {
		t.Fatalf("unsuppress: %d removed, %v", n, err)
	}
	before := count(t, p, `SELECT count(*) FROM herd.events WHERE user_id = 'erin'`)
	waitFor(t, "erin's events to be stored again", func() (bool, string) {
		send(t, p, item("track", "erin", "", ""))
		n := count(t, p, `SELECT count(*) FROM herd.events WHERE user_id = 'erin'`) - before
		return n > 0, fmt.Sprint(n, " rows")
	})
	if n := count(t, p, `SELECT count(*) FROM herd.privacy_requests WHERE kind IN ('suppress', 'unsuppress') AND status = 'done'`); n != 2 {
		t.Errorf("%d suppression requests recorded, want 2", n)
	}
}
