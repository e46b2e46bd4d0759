package deploy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/check"
	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/replicate"
	"github.com/herdhq/herd/saas/stripe"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/views"
	"github.com/herdhq/herd/warehouse"
	"github.com/herdhq/herd/writer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// recorder is a Registerer that remembers the name of every metric
// registered through it, observed or not, before passing it on.
type recorder struct {
	prometheus.Registerer
	mu    sync.Mutex
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return r.Registerer.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) described() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.names))
	for n := range r.names {
		out[n] = true
	}
	return out
}

// boomEnricher fails on one event name, as a bug would on some input.
type boomEnricher struct{}

func (boomEnricher) Enrich(ev *herd.Event) {
	if ev.Event == "boom" {
		panic("enricher bug")
	}
}

// rig is herd's event path running in the test (collector, writer,
// archiver into a lake directory, the stream's metrics, the scheduled herd
// check) with the metrics of every component, loaders' included, on one
// registry, as `herd up` has them.
type rig struct {
	p       *herdtest.Pipeline
	rec     *recorder
	lake    archive.Lake
	yield   atomic.Bool
	limited herd.Source // a source allowed 1 event a second

	stopArchiver func() error
	client       *http.Client
}

func startRig(t *testing.T) *rig {
	t.Helper()
	p := herdtest.Start(t, herdtest.Options{NoWriter: true, Collector: func(c *collector.Config) {
		c.Enricher = boomEnricher{}
		c.RejectRate = 1 // bytes a second: past the 256 KiB burst, rejects are only counted
	}})
	r := &rig{p: p, rec: &recorder{Registerer: p.Registry, names: map[string]bool{}}, lake: archive.NewDir(t.TempDir()), client: &http.Client{Timeout: 10 * time.Second}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	w := writer.New(writer.Config{Stream: p.Stream, Batch: writer.BatchPolicy{MaxWait: 10 * time.Millisecond},
		RetryMin: 50 * time.Millisecond, RetryMax: 300 * time.Millisecond}, p.DB, p.JS, p.Log, r.rec)
	r.run(t, "writer", ctx, w.Run)

	// Files stay open until the archiver stops: what it holds is what
	// herd_archive_buffered_events must show.
	ar := archive.New(archive.Config{Stream: p.Stream, FileMaxAge: time.Hour, LagInterval: 200 * time.Millisecond,
		CloseAfter: -1, GapEvery: time.Hour, Yield: func(context.Context) bool { return r.yield.Load() }},
		r.lake, p.JS, p.Log, r.rec)
	actx, acancel := context.WithCancel(ctx)
	adone := make(chan error, 1)
	go func() { adone <- ar.Run(actx) }()
	var once sync.Once
	var aerr error
	r.stopArchiver = func() error {
		once.Do(func() {
			acancel()
			select {
			case aerr = <-adone:
			case <-time.After(30 * time.Second):
				aerr = errors.New("did not stop within 30s")
			}
		})
		return aerr
	}
	t.Cleanup(func() {
		if err := r.stopArchiver(); err != nil {
			t.Errorf("archiver: %v", err)
		}
	})

	r.rec.MustRegister(stream.NewCollector(p.JS, p.Stream, p.Log))
	s := &check.Scheduler{DB: p.DB, JS: p.JS, Lake: check.ManifestCounter{Lake: r.lake}, Config: check.Config{Stream: p.Stream},
		Every: 300 * time.Millisecond, Metrics: check.NewMetrics(r.rec), Log: p.Log}
	r.run(t, "check", ctx, s.Run)

	// The loaders' metrics, registered as herd up registers them.
	r.rec.MustRegister(replicate.NewCollector(p.DB, p.Log))
	if _, err := replicate.NewWatcher(p.DB, replicate.WatchConfig{Registerer: r.rec, Log: p.Log}); err != nil {
		t.Fatal(err)
	}
	if _, err := stripe.New(stripe.Config{APIKey: "sk_test_metrics", APIBase: "http://127.0.0.1:9"}, p.DB, p.Log, r.rec); err != nil {
		t.Fatal(err)
	}
	views.NewMetrics(r.rec)

	limit := 1.0
	src, err := warehouse.CreateSource(ctx, p.DB, herd.Source{Name: "limited", Kind: herd.KindServer, RateLimit: &limit})
	if err != nil {
		t.Fatal(err)
	}
	r.limited = src
	// The collector learns of the source through the sources mirror.
	waitFor(t, 20*time.Second, "the collector knows the limited source", func() bool {
		st, _ := r.post(t, src.WriteKey, "/v1/track", map[string]any{"event": "hello", "userId": "u", "messageId": "limited-hello"})
		return st == 200
	})
	waitFor(t, 20*time.Second, "the writer is idle", func() bool {
		lag, _ := r.value(t, "herd_stream_consumer_lag_messages", "consumer", "herd-writer")
		return lag == 0 && r.rows(t, "SELECT count(*) FROM herd.events WHERE message_id = 'limited-hello'") == 1
	})
	return r
}

// run runs f until ctx ends or the test does.
func (r *rig) run(t *testing.T, name string, ctx context.Context, f func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err, ok := <-done:
			if ok && err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop", name)
		}
	})
}

// post sends body as JSON with the source's write key and returns the
// status and the reply.
func (r *rig) post(t *testing.T, key, path string, body any) (int, string) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, r.p.URL+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(key+":")))
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(reply)
}

// batch sends n track events named prefix-i in one /v1/batch request.
func (r *rig) batch(t *testing.T, prefix string, n int, extra map[string]any) int {
	t.Helper()
	evs := make([]map[string]any, n)
	for i := range evs {
		ev := map[string]any{"type": "track", "event": "Metric Load", "userId": fmt.Sprintf("user-%d", i%17), "messageId": fmt.Sprintf("%s-%d", prefix, i)}
		for k, v := range extra {
			ev[k] = v
		}
		evs[i] = ev
	}
	st, reply := r.post(t, r.p.WriteKey, "/v1/batch", map[string]any{"batch": evs})
	if st != 200 {
		t.Fatalf("batch %s: %d %s", prefix, st, reply)
	}
	return st
}

// smallLoad sends a little of everything, enough for every route and
// histogram to have been seen, and waits for the writer.
func (r *rig) smallLoad(t *testing.T) {
	t.Helper()
	r.batch(t, "small", 5, nil)
	for _, path := range []string{"/v1/track", "/v1/page", "/v1/identify"} {
		if st, reply := r.post(t, r.p.WriteKey, path, map[string]any{"event": "One", "name": "Home", "userId": "u", "messageId": "small" + strings.ReplaceAll(path, "/", "-")}); st != 200 {
			t.Fatalf("%s: %d %s", path, st, reply)
		}
	}
	waitFor(t, 20*time.Second, "the writer stores the small load", func() bool {
		lag, _ := r.value(t, "herd_stream_consumer_lag_messages", "consumer", "herd-writer")
		return lag == 0 && r.rows(t, "SELECT count(*) FROM herd.events") > 0
	})
}

func (r *rig) rows(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := r.p.DB.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (r *rig) gather(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	mfs, err := r.p.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return mfs
}

// value sums the samples of metric whose labels include want (name=value
// pairs): a counter's or gauge's value, a histogram's count. found is
// false when no sample matched.
func (r *rig) value(t *testing.T, metric string, want ...string) (v float64, found bool) {
	t.Helper()
	for _, mf := range r.gather(t) {
		if mf.GetName() != metric {
			continue
		}
	sample:
		for _, m := range mf.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(want); i += 2 {
				if have[want[i]] != want[i+1] {
					continue sample
				}
			}
			found = true
			switch {
			case m.Counter != nil:
				v += m.Counter.GetValue()
			case m.Gauge != nil:
				v += m.Gauge.GetValue()
			case m.Histogram != nil:
				v += float64(m.Histogram.GetSampleCount())
			case m.Untyped != nil:
				v += m.Untyped.GetValue()
			}
		}
	}
	return v, found
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !eventually(timeout, cond) {
		t.Fatalf("timed out after %s waiting until %s", timeout, what)
	}
}

// eventually reports whether cond became true within timeout.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
