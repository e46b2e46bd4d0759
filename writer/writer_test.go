package writer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/internal/natstest"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// pipe is a running writer between a test's stream and database.
type pipe struct {
	sc   stream.Config
	js   jetstream.JetStream
	db   *pgxpool.Pool
	reg  *prometheus.Registry
	w    *Writer
	logs *logBuffer // what the writer logged
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// logBuffer collects log output written from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startPipe migrates a fresh database and runs a writer on a fresh stream
// until the test ends.
func startPipe(t *testing.T) *pipe {
	t.Helper()
	srv := natstest.Run(t)
	p := &pipe{sc: natstest.StreamConfig(t), db: pgtest.Pool(t, pgtest.New(t)), reg: prometheus.NewRegistry(), logs: &logBuffer{}}
	p.js = natstest.JetStream(t, srv, p.sc)
	if _, err := schemas.Migrate(context.Background(), p.db); err != nil {
		t.Fatal(err)
	}
	p.w = New(Config{Stream: p.sc, Batch: BatchPolicy{MaxWait: 10 * time.Millisecond},
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}, p.db, p.js,
		slog.New(slog.NewMultiHandler(testLog(t).Handler(), slog.NewTextHandler(p.logs, nil))), p.reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("writer: %v", err)
		}
	})
	return p
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// event is a track event of source 1 at ts.
func event(id string, ts time.Time) herd.Event {
	return herd.Event{MessageID: id, SourceID: 1, Type: herd.TypeTrack, Event: "Clicked", UserID: "u1",
		Timestamp: ts, ReceivedAt: time.Now().UTC(), Properties: json.RawMessage(`{"n":1}`)}
}

// send publishes the events as one frame, as the collector does under load.
func (p *pipe) send(t *testing.T, evs ...herd.Event) {
	t.Helper()
	var frame []byte
	for i := range evs {
		frame = stream.AppendFrameEntry(frame, stream.EncodeEntry(nil, &evs[i]))
	}
	if _, err := p.js.Publish(context.Background(), p.sc.EventSubject(evs[0].SourceID), frame); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// count runs a query returning one integer.
func (p *pipe) count(t *testing.T, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := p.db.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func batchOf(prefix string, n int, ts time.Time) []herd.Event {
	evs := make([]herd.Event, n)
	for i := range evs {
		evs[i] = event(fmt.Sprintf("%s-%d", prefix, i), ts.Add(time.Duration(i)*time.Millisecond))
	}
	return evs
}

// A day partition dropped by hand while the writer runs (its cache still
// names it) costs no event: the writer recreates the partition and stores
// the day's events; none goes to herd.rejects.
func TestDroppedPartitionIsRecreatedNotRejected(t *testing.T) {
	p := startPipe(t)
	now := time.Now().UTC()
	p.send(t, event("first", now))
	waitFor(t, 10*time.Second, "the first event", func() bool { return p.count(t, `SELECT count(*) FROM herd.events`) == 1 })

	part := "herd.events_" + now.Format("20060102")
	if _, err := p.db.Exec(context.Background(), "DROP TABLE "+part); err != nil {
		t.Fatal(err)
	}
	evs := batchOf("after-drop", 20, now)
	p.send(t, evs[:10]...)
	p.send(t, evs[10:]...)
	waitFor(t, 10*time.Second, "the events after the drop", func() bool {
		return p.count(t, `SELECT count(*) FROM herd.events WHERE message_id LIKE 'after-drop-%'`) == 20
	})
	if n := p.count(t, `SELECT count(*) FROM herd.rejects`); n != 0 {
		t.Fatalf("%d events rejected after the partition was dropped; want 0", n)
	}
	if n := p.count(t, `SELECT count(*) FROM pg_class WHERE oid = to_regclass($1)`, part); n != 1 {
		t.Fatalf("partition %s not recreated", part)
	}
	// Recovered, but not silently: the operator sees it in the log and in
	// the failures metric.
	if n := value(p.w.m.failures.WithLabelValues(reasonPartition)); n < 1 {
		t.Errorf(`herd_writer_batch_failures_total{reason="partition"} = %v after a dropped partition; want >= 1`, n)
	}
	if !strings.Contains(p.logs.String(), "level=WARN") || !strings.Contains(p.logs.String(), "partition of herd.events was missing") {
		t.Errorf("no warning about the missing partition in the log:\n%s", p.logs.String())
	}
}

// A change an operator makes to herd.events that no event can satisfy
// stops the writer rather than turning events into rejects: it retries,
// counts the failure by reason and shows a failing batch; once the change
// is undone, every event lands, once.
func TestOperatorChangesAreRetriedNotRejected(t *testing.T) {
	cases := []struct {
		name, reason string
		break_, fix  string
		events       func([]herd.Event) // changes the events sent, when set
	}{
		{"not null column", reasonConstraint,
			`ALTER TABLE herd.events ADD COLUMN operator_note text NOT NULL`,
			`ALTER TABLE herd.events DROP COLUMN operator_note`, nil},
		{"unique index", reasonConstraint,
			`CREATE UNIQUE INDEX events_user_ts ON herd.events (user_id, "timestamp")`,
			`DROP INDEX herd.events_user_ts`, nil},
		{"check constraint", reasonConstraint,
			`ALTER TABLE herd.events ADD CONSTRAINT no_clicks CHECK (event <> 'Clicked')`,
			`ALTER TABLE herd.events DROP CONSTRAINT no_clicks`, nil},
		// 54000 as content would reject these events: the limit is the
		// operator's index's, not Postgres's for the value.
		{"index on a long column", reasonConstraint,
			`CREATE INDEX events_url ON herd.events (url)`,
			`DROP INDEX herd.events_url`,
			func(evs []herd.Event) {
				for i := range evs {
					// Random hex does not compress below btree's 2704-byte
					// limit; 6,000 characters stay far above it.
					evs[i].URL = "https://example.com/?q=" + randomHex(t, 3000)
				}
			}},
		// An expression index raises 22P02, the code of a bad value, for
		// properties herd's own columns take.
		{"expression index casting a property", reasonConstraint,
			`CREATE INDEX events_n ON herd.events (((properties->>'n')::int))`,
			`DROP INDEX herd.events_n`,
			func(evs []herd.Event) {
				for i := range evs {
					evs[i].Properties = []byte(`{"n":"abc"}`)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := startPipe(t)
			ctx := context.Background()
			if _, err := p.db.Exec(ctx, c.break_); err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC()
			evs := batchOf("ev", 10, now)
			for i := range evs {
				evs[i].Timestamp = now // same user, same time: the unique index refuses all but one
			}
			if c.events != nil {
				c.events(evs)
			}
			p.send(t, evs[:5]...)
			p.send(t, evs[5:]...)
			failures := p.w.m.failures.WithLabelValues(c.reason)
			waitFor(t, 10*time.Second, "failures counted as "+c.reason, func() bool { return value(failures) >= 3 })
			if g := value(p.w.m.failing); g < 1 {
				t.Fatalf("herd_writer_failing_batches = %v while writes fail; want >= 1", g)
			}
			if n := p.count(t, `SELECT count(*) FROM herd.rejects`); n != 0 {
				t.Fatalf("%d events rejected for an operator's change; want 0", n)
			}
			if n := p.count(t, `SELECT count(*) FROM herd.events`); n != 0 {
				t.Fatalf("%d events stored while the change is in place", n)
			}
			if _, err := p.db.Exec(ctx, c.fix); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "the events once the change is undone", func() bool {
				return p.count(t, `SELECT count(*) FROM herd.events`) >= 10
			})
			time.Sleep(200 * time.Millisecond) // a second copy would land by now
			if n := p.count(t, `SELECT count(*) FROM herd.events`); n != 10 {
				t.Fatalf("%d rows; want each of the 10 events once", n)
			}
			if n := p.count(t, `SELECT count(DISTINCT message_id) FROM herd.events`); n != 10 {
				t.Fatalf("%d distinct events; want 10", n)
			}
			if n := p.count(t, `SELECT count(*) FROM herd.rejects`); n != 0 {
				t.Fatalf("%d rejects; want 0", n)
			}
			waitFor(t, 5*time.Second, "no failing batch", func() bool { return value(p.w.m.failing) == 0 })
		})
	}
}

// A value Postgres cannot hold whatever the schema (here \u0000 in JSON)
// still rejects that event alone; the rest of its batch is stored.
func TestContentErrorRejectsOnlyTheEvent(t *testing.T) {
	p := startPipe(t)
	evs := batchOf("c", 8, time.Now().UTC())
	evs[3].Properties = json.RawMessage(`{"bad":"a\u0000b"}`)
	p.send(t, evs...)
	waitFor(t, 10*time.Second, "the batch", func() bool {
		return p.count(t, `SELECT count(*) FROM herd.events`)+p.count(t, `SELECT count(*) FROM herd.rejects`) == 8
	})
	if n := p.count(t, `SELECT count(*) FROM herd.events`); n != 7 {
		t.Fatalf("%d events stored; want 7", n)
	}
	if n := p.count(t, `SELECT count(*) FROM herd.rejects WHERE message_id = 'c-3' AND reason LIKE 'refused by Postgres%'`); n != 1 {
		t.Fatalf("the bad event is not the one rejected")
	}
}

// randomHex returns n random bytes, hex-encoded.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
