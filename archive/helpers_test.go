package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/internal/duckdbtest"
	"github.com/herdhq/herd/internal/natstest"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/writer"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is one test's stream and, when asked for, warehouse.
type env struct {
	srv *natstest.Server
	sc  stream.Config
	js  jetstream.JetStream
	db  *pgxpool.Pool
}

func newEnv(t *testing.T, withDB bool) *env {
	t.Helper()
	e := &env{srv: natstest.Run(t), sc: natstest.StreamConfig(t)}
	e.js = natstest.JetStream(t, e.srv, e.sc)
	if withDB {
		e.db = pgtest.Pool(t, pgtest.New(t))
		if _, err := schemas.Migrate(context.Background(), e.db); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// freshJS opens a JetStream context on a connection of its own, as a
// separate process would have; closing it is what a process death does to
// the server's view.
func (e *env) freshJS(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(e.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// genEvents makes n events over the sources, with event times spread over
// span from start, nanosecond times (Postgres and Parquet keep
// microseconds), and optional fields sometimes empty.
func genEvents(n int, sources []int64, start time.Time, span time.Duration, seed uint64) []herd.Event {
	r := rand.New(rand.NewPCG(seed, 7))
	names := []string{"Signed Up", "Order Completed", "Viewed Page", "Ünïcødé event"}
	evs := make([]herd.Event, n)
	for i := range evs {
		ts := start.Add(time.Duration(r.Int64N(int64(span))))
		ev := herd.Event{
			MessageID:  fmt.Sprintf("m-%d-%d", seed, i),
			SourceID:   sources[i%len(sources)],
			Type:       herd.TypeTrack,
			Event:      names[r.IntN(len(names))],
			UserID:     fmt.Sprintf("u%d", r.IntN(500)),
			Timestamp:  ts,
			ReceivedAt: ts.Add(time.Duration(r.IntN(1000)) * time.Millisecond),
			Context:    json.RawMessage(fmt.Sprintf(`{"library":{"name":"analytics.js","version":"5.%d"},"locale":"en-US"}`, r.IntN(9))),
			Properties: json.RawMessage(fmt.Sprintf(`{"revenue":%d.5,"tags":["a","b"],"nested":{"k":%q}}`, r.IntN(1000), fmt.Sprint(i))),
		}
		if i%3 == 0 {
			ev.Type, ev.Event, ev.Properties = herd.TypePage, "Home", nil
			ev.URL, ev.Path, ev.Title = "https://example.com/?utm_source=x", "/", "Home"
			ev.UTMSource = "x"
		}
		if i%5 == 0 {
			ev.AnonymousID = fmt.Sprintf("anon-%d", i)
			ot := ts.Add(-time.Second)
			ev.OriginalTimestamp, ev.SentAt = &ot, &ot
		}
		if i%7 == 0 {
			ev.Type, ev.Event, ev.Properties = herd.TypeIdentify, "", nil
			ev.Traits = json.RawMessage(`{"plan":"pro","email":"a@example.com"}`)
		}
		ev.IP = fmt.Sprintf("203.0.113.%d", r.IntN(250))
		ev.Browser, ev.OS, ev.IsBot = "Chrome", "Linux", i%11 == 0
		if i%4 == 0 {
			ev.ReferrerHost, ev.ReferrerClass, ev.ASN, ev.ASOrg = "www.google.com", "search", 64500+int64(i%3), "Example Net"
		}
		evs[i] = ev
	}
	return evs
}

// publish sends the events as the collector does, and waits for every
// PubAck.
func publish(t *testing.T, js jetstream.JetStream, sc stream.Config, evs []herd.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var futs []jetstream.PubAckFuture
	wait := func() {
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatalf("publish: %v", err)
			case <-ctx.Done():
				t.Fatal("publish: no PubAck in time")
			}
		}
		futs = futs[:0]
	}
	for i := range evs {
		if len(futs) == 1000 {
			wait() // the client stalls past a few thousand unacknowledged publishes
		}
		b, err := json.Marshal(&evs[i])
		if err != nil {
			t.Fatal(err)
		}
		f, err := js.PublishAsync(sc.EventSubject(evs[i].SourceID), b, jetstream.WithMsgID(stream.MsgID(evs[i].SourceID, evs[i].MessageID)))
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
	}
	wait()
}

// publishFrames sends the events as the collector does under load: per
// frames of up to per events, and waits for every PubAck.
func publishFrames(t *testing.T, js jetstream.JetStream, sc stream.Config, evs []herd.Event, per int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < len(evs); i += per {
		var frame []byte
		for j := i; j < min(i+per, len(evs)); j++ {
			if evs[j].SourceID != evs[i].SourceID {
				t.Fatalf("a frame holds one source's events: %d and %d", evs[i].SourceID, evs[j].SourceID)
			}
			frame = stream.AppendFrameEntry(frame, stream.EncodeEntry(nil, &evs[j]))
		}
		if _, err := js.Publish(ctx, sc.EventSubject(evs[i].SourceID), frame); err != nil {
			t.Fatalf("publish frame: %v", err)
		}
	}
}

// fixedDatesWindow is the partition window of the tests whose events carry
// fixed dates (late November 2026): wide enough that those dates keep
// their hour directories and day partitions as the wall clock moves on.
const fixedDatesWindow = 20 * 365 * 24 * time.Hour

// runWriter runs the Postgres writer until the test ends.
func runWriter(t *testing.T, e *env) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := writer.New(writer.Config{Stream: e.sc, PartitionWindow: int(fixedDatesWindow / (24 * time.Hour))}, e.db, e.js, testLog(t).With("component", "writer"), nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// running is an archiver in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func startArchiver(t *testing.T, a *Archiver) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-r.done; r.done <- nil })
	return r
}

// stop ends the archiver gracefully and returns Run's error.
func (r *running) stop() error {
	r.cancel()
	err := <-r.done
	r.done <- nil
	return err
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, last)
}

func countEvents(t *testing.T, db *pgxpool.Pool) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(), "SELECT count(*) FROM herd.events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// lakeRecords reads every Parquet file of the lake and checks each against
// its manifest entry.
func lakeRecords(t *testing.T, lake Lake) []record {
	t.Helper()
	ctx := context.Background()
	objs, err := lake.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var all []record
	for _, o := range objs {
		if o.Key == GapsName || o.Key == LeaseName {
			continue
		}
		p, name, ok := parseKey(o.Key)
		if !ok {
			t.Fatalf("unexpected object %s in the lake", o.Key)
		}
		if name == ManifestName {
			continue
		}
		first, last, ok := parseFileName(name)
		if !ok {
			t.Fatalf("unexpected file %s in the lake", o.Key)
		}
		data, err := lake.Get(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := decodeFile(data)
		if err != nil {
			t.Fatalf("%s: %v", o.Key, err)
		}
		m, err := readManifest(ctx, lake, p.prefix())
		if err != nil {
			t.Fatal(err)
		}
		var entry *FileEntry
		for i := range m.Files {
			if m.Files[i].Name == name {
				entry = &m.Files[i]
			}
		}
		if entry == nil {
			t.Fatalf("%s is not in its partition's manifest", o.Key)
		}
		if entry.SHA256 != checksum(data) || entry.Rows != int64(len(recs)) || entry.FirstSeq != first || entry.LastSeq != last {
			t.Fatalf("%s: manifest entry %+v does not describe the file (%d rows)", o.Key, entry, len(recs))
		}
		for i := range recs {
			if recs[i].SourceID != p.source || !p.holds(recs[i].Timestamp) {
				t.Fatalf("%s holds an event of another partition: %+v", o.Key, recs[i])
			}
		}
		all = append(all, recs...)
	}
	return all
}

// duckdb runs sql in DuckDB (through node) and returns the rows.
func duckdb(t *testing.T, sql string) []map[string]any {
	t.Helper()
	return duckdbtest.Query(t, sql)
}

// str renders a DuckDB JSON value (BIGINTs arrive as strings) for comparison.
func str(v any) string {
	switch v := v.(type) {
	case nil:
		return "<nil>"
	case float64:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprint(v)
	}
}

// dataObjects lists the lake without the running archiver's lease.
func dataObjects(lake Lake) []Object {
	objs, _ := lake.List(context.Background(), "")
	out := objs[:0]
	for _, o := range objs {
		if o.Key != LeaseName {
			out = append(out, o)
		}
	}
	return out
}
