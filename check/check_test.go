package check_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/check"
	"github.com/herdhq/herd/internal/herdtest"
)

// send posts a batch to the collector with the server source's key.
func send(t *testing.T, p *herdtest.Pipeline, batch []map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"batch": batch})
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/v1/batch", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(p.Server.WriteKey+":")))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/batch: %s", resp.Status)
	}
}

// loaded is a pipeline (collector, writer, archiver into a lake on disk)
// after a load that every store has taken in.
type loaded struct {
	p     *herdtest.Pipeline
	lake  string
	hours []time.Time // the event hours loaded, oldest first
	n     int64
}

// load sends perHour events to each of the server source's last three
// whole hours through the collector and waits until the writer and the
// archiver have acknowledged all of them.
func load(t *testing.T, perHour int) *loaded {
	t.Helper()
	p := herdtest.Start(t, herdtest.Options{})
	l := &loaded{p: p, lake: t.TempDir()}
	cfg := archive.Config{Stream: p.Stream, FileMaxRows: perHour / 2, FileMaxAge: 500 * time.Millisecond}
	a := archive.New(cfg, archive.NewDir(l.lake), p.JS, p.Log, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("archiver: %v", err)
		}
	})

	now := time.Now().UTC().Truncate(time.Hour)
	for h := 3; h >= 1; h-- {
		hour := now.Add(-time.Duration(h) * time.Hour)
		l.hours = append(l.hours, hour)
		// Two requests an hour: two stream messages, two files.
		for half := range 2 {
			var batch []map[string]any
			for i := half * perHour / 2; i < (half+1)*perHour/2; i++ {
				batch = append(batch, map[string]any{
					"type": "track", "event": "Checked", "messageId": fmt.Sprintf("m-%d-%d", h, i), "userId": fmt.Sprintf("u%d", i%7),
					"timestamp": hour.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano),
				})
			}
			send(t, p, batch)
		}
	}
	l.n = int64(3 * perHour)
	if got := p.WaitRows(t, l.n, 30*time.Second, `SELECT count(*) FROM herd.events`); got != l.n {
		t.Fatalf("herd.events holds %d rows, want %d", got, l.n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := archive.Lag(context.Background(), p.JS, cfg)
		if err == nil && st.Lag == 0 && st.AckFloor == st.StreamLast {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archiver not caught up: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return l
}

func (l *loaded) check(t *testing.T, cfg check.Config) *check.Result {
	t.Helper()
	cfg.Stream = l.p.Stream
	r, err := check.Check(context.Background(), l.p.DB, l.p.JS, check.ManifestCounter{Lake: archive.NewDir(l.lake)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Acceptance 3: equal stores after a load through the real pipeline; after
// one row is removed from herd.events and one lake file deleted, in
// different hours, the check names both hours.
func TestCheckFindsWhatEachStoreLost(t *testing.T) {
	l := load(t, 40)
	ctx := context.Background()

	r := l.check(t, check.Config{})
	var out bytes.Buffer
	if err := r.Write(&out); err != nil {
		t.Fatal(err)
	}
	if r.Differences != 0 || r.Accepted != l.n || r.Events != l.n || r.Lake != l.n || !r.LakeCompared || len(r.Hours) != 3 {
		t.Fatalf("after the load: differences %d, accepted %d, postgres %d, lake %d (want %d each), hours %d\n%s",
			r.Differences, r.Accepted, r.Events, r.Lake, l.n, len(r.Hours), out.String())
	}
	if r.Floor != r.StreamLast {
		t.Errorf("floor %d, stream's last sequence %d: everything was acknowledged", r.Floor, r.StreamLast)
	}
	if err := check.Record(ctx, l.p.DB, r, nil); err != nil {
		t.Fatal(err)
	}

	// One row out of herd.events in the first hour.
	pgHour, lakeHour := l.hours[0], l.hours[2]
	tag, err := l.p.DB.Exec(ctx, `DELETE FROM herd.events WHERE ctid = (SELECT ctid FROM herd.events WHERE "timestamp" >= $1 AND "timestamp" < $1 + interval '1 hour' LIMIT 1)`, pgHour)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("delete one row: %v %v", tag, err)
	}
	// One file out of the lake in the last hour.
	files, err := filepath.Glob(filepath.Join(l.lake, fmt.Sprintf("source=%d", l.p.Server.ID),
		"date="+lakeHour.Format(time.DateOnly), fmt.Sprintf("hour=%d", lakeHour.Hour()), "*.parquet"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no lake file for %s: %v", lakeHour, err)
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}

	r = l.check(t, check.Config{Sources: []string{l.p.Server.Name}})
	out.Reset()
	if err := r.Write(&out); err != nil {
		t.Fatal(err)
	}
	if r.Differences != 2 {
		t.Fatalf("differences = %d, want 2\n%s", r.Differences, out.String())
	}
	for _, h := range r.Hours {
		switch {
		case h.Hour.Equal(pgHour):
			if !h.Differs() || h.Events != h.Accepted-1 || h.Lake != h.Accepted {
				t.Errorf("hour %s: %+v, want postgres one short", h.Hour, h)
			}
		case h.Hour.Equal(lakeHour):
			if !h.Differs() || h.Events != h.Accepted || h.Lake >= h.Accepted || h.Lake == 0 {
				t.Errorf("hour %s: %+v, want the lake short by one of its two files", h.Hour, h)
			}
		default:
			if h.Differs() {
				t.Errorf("hour %s differs: %+v", h.Hour, h)
			}
		}
	}
	for _, want := range []string{pgHour.Format("2006-01-02 15:00"), lakeHour.Format("2006-01-02 15:00"), "postgres misses 1", "lake misses", "2 of 3 hours differ"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// The run is stored, newest last, for herd status.
	if err := check.Record(ctx, l.p.DB, r, nil); err != nil {
		t.Fatal(err)
	}
	var diffs int
	var report []byte
	if err := l.p.DB.QueryRow(ctx, `SELECT differences, report FROM herd.check_runs ORDER BY id DESC LIMIT 1`).Scan(&diffs, &report); err != nil {
		t.Fatal(err)
	}
	if diffs != 2 || !strings.Contains(string(report), pgHour.Format(time.RFC3339)) || !strings.Contains(string(report), lakeHour.Format(time.RFC3339)) {
		t.Errorf("stored run: %d differences, report %s", diffs, report)
	}
}

// Events the writer or the archiver has not acknowledged yet are left for
// the next check, not reported as differences.
func TestCheckLeavesEventsInFlight(t *testing.T) {
	l := load(t, 10)
	ctx := context.Background()
	// An event in the writer's ledger and herd.events with a stream
	// sequence past both floors: as if the archiver had not reached it.
	hour := l.hours[1]
	if _, err := l.p.DB.Exec(ctx, `INSERT INTO herd.message_ids (source_id, message_id, day, hour, stream_seq) VALUES ($1, 'late', $2, $3, 1000000)`, l.p.Server.ID, hour.Format(time.DateOnly), hour); err != nil {
		t.Fatal(err)
	}
	if _, err := l.p.DB.Exec(ctx, `INSERT INTO herd.events (message_id, source_id, type, "timestamp", received_at, stream_seq) VALUES ('late', $1, 'track', $2, now(), 1000000)`, l.p.Server.ID, hour); err != nil {
		t.Fatal(err)
	}
	r := l.check(t, check.Config{})
	if r.Differences != 0 || r.Accepted != l.n {
		var out bytes.Buffer
		_ = r.Write(&out)
		t.Fatalf("an event past the floor was compared: %d differences, accepted %d\n%s", r.Differences, r.Accepted, out.String())
	}
	// Without the floor (no stream to ask) the lake is one short.
	r, err := check.Check(ctx, l.p.DB, nil, check.ManifestCounter{Lake: archive.NewDir(l.lake)}, check.Config{Stream: l.p.Stream})
	if err != nil {
		t.Fatal(err)
	}
	if r.Differences != 1 {
		var out bytes.Buffer
		_ = r.Write(&out)
		t.Fatalf("without a floor: %d differences, want 1\n%s", r.Differences, out.String())
	}
}

// Retries reach the lake once per request until their hour's partition is
// compacted (stream frames carry no Nats-Msg-Id): an open partition holding
// them twice or thrice is not a difference, and once compacted the hour is
// compared exactly and equal.
func TestCheckOpenAndCompactedLakeHours(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{})
	ctx := context.Background()
	dir := t.TempDir()
	lake := archive.NewDir(dir)
	// The archiver never compacts on its own: the hour stays open.
	cfg := archive.Config{Stream: p.Stream, FileMaxRows: 100, FileMaxAge: 300 * time.Millisecond, CloseAfter: -1}
	a := archive.New(cfg, lake, p.JS, p.Log, nil)
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("archiver: %v", err)
			}
		}
	}
	t.Cleanup(stop)

	hour := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	const n = 20
	var batch []map[string]any
	for i := range n {
		batch = append(batch, map[string]any{
			"type": "track", "event": "Retried", "messageId": fmt.Sprintf("r-%d", i), "userId": "u",
			"timestamp": hour.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano),
		})
	}
	for range 3 { // the client retries twice
		send(t, p, batch)
	}
	if got := p.WaitRows(t, n, 30*time.Second, `SELECT count(*) FROM herd.events`); got != n {
		t.Fatalf("herd.events holds %d rows, want %d", got, n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := archive.Lag(ctx, p.JS, cfg)
		if err == nil && st.Lag == 0 && st.AckFloor == st.StreamLast {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archiver not caught up: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	run := func() (*check.Result, string) {
		t.Helper()
		r, err := check.Check(ctx, p.DB, p.JS, check.ManifestCounter{Lake: lake}, check.Config{Stream: p.Stream})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := r.Write(&out); err != nil {
			t.Fatal(err)
		}
		return r, out.String()
	}

	r, out := run()
	if len(r.Hours) != 1 || r.Hours[0].Lake != 3*n || !r.Hours[0].LakeOpen || r.Hours[0].Accepted != n {
		t.Fatalf("open hour: %+v, want the lake holding every copy (%d), open, %d accepted\n%s", r.Hours, 3*n, n, out)
	}
	if r.Differences != 0 || r.LakeOpen != 1 || r.LakeOpenExtra != 2*n {
		t.Fatalf("open hour with retried copies: %d differences, %d open hours, %d extra; want 0, 1, %d\n%s", r.Differences, r.LakeOpen, r.LakeOpenExtra, 2*n, out)
	}
	if !strings.Contains(out, "1 source-hours of the lake are still open") || !strings.Contains(out, "stores agree") {
		t.Fatalf("output does not say the hour is open and the stores agree:\n%s", out)
	}

	// Closed: compacted into one file holding each event once.
	stop()
	if _, err := archive.Compact(ctx, lake, archive.CompactOptions{Before: time.Now()}); err != nil {
		t.Fatal(err)
	}
	r, out = run()
	if r.Differences != 0 || r.LakeOpen != 0 || len(r.Hours) != 1 || r.Hours[0].Lake != n || r.Hours[0].LakeOpen {
		t.Fatalf("compacted hour: %d differences, %d open, hours %+v; want it closed with %d rows\n%s", r.Differences, r.LakeOpen, r.Hours, n, out)
	}
	if strings.Contains(out, "still open") {
		t.Fatalf("a compacted hour reported open:\n%s", out)
	}
}
