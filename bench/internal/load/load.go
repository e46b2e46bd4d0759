// Package load drives HTTP load at a collector: closed loop (a fixed number of
// connections sending back to back, for the most it accepts) and open loop (a
// fixed offered rate, latency counted from each request's scheduled send time
// so that a stalled server cannot hide its stall). It can also watch Postgres
// for a sample of the accepted events to time reply-to-row latency.
package load

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdhq/herd/bench/internal/gen"
	"github.com/jackc/pgx/v5"
	"github.com/valyala/fasthttp"
)

// Config is one load run.
type Config struct {
	URL      string // collector base URL, e.g. http://127.0.0.1:8080
	WriteKey string
	Open     bool          // open loop at Rate; else closed loop
	Rate     float64       // open loop: offered events per second
	Batch    int           // events per request: 1 posts /v1/track, more posts /v1/batch
	Conns    int           // connections (closed loop: concurrent senders)
	Duration time.Duration // how long to send
	// MaxEvents bounds the events sent whatever the duration.
	MaxEvents int64
	// IDPrefix starts every messageId, so runs and phases never collide.
	IDPrefix string
	Timeout  time.Duration // per request
	// TLS configures https URLs; nil is the system's roots.
	TLS *tls.Config

	// DatabaseURL, when set, is the warehouse polled for a sample of the
	// accepted events to time reply-to-row latency.
	DatabaseURL  string
	SampleEvery  int           // sample one event in this many; default 20
	PollInterval time.Duration // default 5ms
	RowTimeout   time.Duration // how long to wait for the last sampled rows; default 15s
}

func (c *Config) defaults() {
	if c.Batch <= 0 {
		c.Batch = 1
	}
	if c.Conns <= 0 {
		c.Conns = 64
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = 5_000_000
	}
	if c.IDPrefix == "" {
		c.IDPrefix = "load" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 20
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 5 * time.Millisecond
	}
	if c.RowTimeout <= 0 {
		c.RowTimeout = 15 * time.Second
	}
}

// Summary is a latency distribution in milliseconds.
type Summary struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
	// Buckets is the histogram: how many fell at or under each bound.
	Buckets []Bucket `json:"buckets,omitempty"`
}

// Bucket is one histogram bin.
type Bucket struct {
	LeMs  float64 `json:"le_ms"`
	Count int     `json:"count"`
}

// Result is what a run measured. Events counts events in requests answered 200.
type Result struct {
	Mode        string  `json:"mode"`
	Batch       int     `json:"batch"`
	Conns       int     `json:"conns"`
	OfferedRate float64 `json:"offered_events_per_s,omitempty"`
	Requests    int64   `json:"requests"`
	Events      int64   `json:"events_accepted"`
	Failed      int64   `json:"requests_failed"`
	// Dropped counts open-loop requests still queued at the cut-off (the
	// duration plus half of it): the collector fell that far behind. Each
	// counts in Latency with the wait it had reached, a lower bound.
	Dropped      int64            `json:"requests_dropped,omitempty"`
	Status       map[string]int64 `json:"status"`
	FirstError   string           `json:"first_error,omitempty"`
	ElapsedS     float64          `json:"elapsed_s"`
	EventsPerSec float64          `json:"events_per_s"`
	// Latency runs from the send (closed loop) or the scheduled send (open
	// loop) to the reply.
	Latency Summary `json:"latency"`
	// ReplyToRow runs from the 200 to the first poll that saw the row.
	ReplyToRow  *Summary `json:"reply_to_row,omitempty"`
	RowsMissing int      `json:"rows_missing,omitempty"`
}

// Run sends load as configured and returns what it measured.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (Result, error) {
	cfg.defaults()
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return Result{}, fmt.Errorf("collector URL %q: want http://host[:port][/prefix] or https://...", cfg.URL)
	}
	// A path in the URL is a prefix (a collector behind a proxy at /collect).
	path := strings.TrimSuffix(u.Path, "/") + "/v1/track"
	if cfg.Batch > 1 {
		path = strings.TrimSuffix(u.Path, "/") + "/v1/batch"
	}
	useTLS := u.Scheme == "https"
	addr := u.Host
	if u.Port() == "" {
		addr += map[bool]string{true: ":443", false: ":80"}[useTLS]
	}
	client := &fasthttp.HostClient{
		Addr:                          addr,
		IsTLS:                         useTLS,
		TLSConfig:                     cfg.TLS,
		MaxConns:                      cfg.Conns,
		ReadTimeout:                   cfg.Timeout,
		WriteTimeout:                  cfg.Timeout,
		MaxIdleConnDuration:           time.Minute,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		MaxConnWaitTimeout:            cfg.Timeout,
	}
	r := &runner{
		cfg:    cfg,
		client: client,
		uri:    u.Scheme + "://" + u.Host + path,
		auth:   "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.WriteKey+":")),
		status: map[int]int64{},
		log:    log,
	}
	if cfg.DatabaseURL != "" {
		w, err := newWatcher(ctx, cfg, log)
		if err != nil {
			return Result{}, err
		}
		r.watch = w
		defer w.close()
	}
	res := Result{Mode: "closed", Batch: cfg.Batch, Conns: cfg.Conns}
	start := time.Now()
	if cfg.Open {
		res.Mode, res.OfferedRate = "open", cfg.Rate
		err = r.open(ctx)
	} else {
		err = r.closed(ctx)
	}
	elapsed := time.Since(start)
	if err != nil {
		return res, err
	}
	res.Requests, res.Events, res.Failed, res.Dropped = r.requests.Load(), r.events.Load(), r.failed.Load(), r.dropped.Load()
	res.Status = map[string]int64{}
	for k, v := range r.status {
		res.Status[strconv.Itoa(k)] = v
	}
	res.FirstError = r.firstErr
	res.ElapsedS = elapsed.Seconds()
	res.EventsPerSec = float64(res.Events) / elapsed.Seconds()
	var all []time.Duration
	for _, l := range r.lat {
		all = append(all, l...)
	}
	res.Latency = summarize(all)
	if r.watch != nil {
		got, missing := r.watch.finish(ctx)
		s := summarize(got)
		res.ReplyToRow, res.RowsMissing = &s, missing
	}
	return res, nil
}

type runner struct {
	cfg      Config
	client   *fasthttp.HostClient
	uri      string
	auth     string
	watch    *watcher
	log      *slog.Logger
	requests atomic.Int64
	events   atomic.Int64
	failed   atomic.Int64
	dropped  atomic.Int64

	mu       sync.Mutex
	status   map[int]int64
	firstErr string
	lat      [][]time.Duration // one slice per sender, merged at the end
}

// sender is one connection's worth of state: its buffers are reused.
type sender struct {
	r    *runner
	req  *fasthttp.Request
	resp *fasthttp.Response
	body []byte
	lat  []time.Duration
}

func (r *runner) newSender() *sender {
	s := &sender{r: r, req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
	s.req.SetRequestURI(r.uri)
	s.req.Header.SetMethod(fasthttp.MethodPost)
	s.req.Header.SetContentType("application/json")
	s.req.Header.Set("Authorization", r.auth)
	return s
}

func (s *sender) done() {
	s.r.mu.Lock()
	s.r.lat = append(s.r.lat, s.lat)
	s.r.mu.Unlock()
	fasthttp.ReleaseRequest(s.req)
	fasthttp.ReleaseResponse(s.resp)
}

// send posts the request holding events first..first+Batch-1; latency counts
// from since.
func (s *sender) send(first int64, since time.Time) {
	r := s.r
	if r.cfg.Batch > 1 {
		s.body = gen.AppendBatch(s.body[:0], r.cfg.IDPrefix, first, r.cfg.Batch)
	} else {
		s.body = gen.AppendEvent(s.body[:0], r.cfg.IDPrefix, first)
	}
	s.req.SetBodyRaw(s.body)
	err := r.client.DoTimeout(s.req, s.resp, r.cfg.Timeout)
	now := time.Now()
	r.requests.Add(1)
	code := 0
	if err == nil {
		code = s.resp.StatusCode()
	}
	if code == fasthttp.StatusOK {
		s.lat = append(s.lat, now.Sub(since))
		r.events.Add(int64(r.cfg.Batch))
		if r.watch != nil {
			// Sample by event number so that batches and single events are
			// sampled alike.
			for i := first; i < first+int64(r.cfg.Batch); i++ {
				if i%int64(r.cfg.SampleEvery) == 0 {
					r.watch.add(gen.MessageID(r.cfg.IDPrefix, i), now)
				}
			}
		}
		return
	}
	r.failed.Add(1)
	r.mu.Lock()
	r.status[code]++
	if r.firstErr == "" {
		if err != nil {
			r.firstErr = err.Error()
		} else {
			r.firstErr = fmt.Sprintf("status %d: %.200s", code, s.resp.Body())
		}
	}
	r.mu.Unlock()
}

// closed runs Conns senders back to back until the duration or the event
// budget ends.
func (r *runner) closed(ctx context.Context) error {
	deadline := time.Now().Add(r.cfg.Duration)
	batch := int64(r.cfg.Batch)
	maxReq := r.cfg.MaxEvents / batch
	var next atomic.Int64
	var wg sync.WaitGroup
	for range r.cfg.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := r.newSender()
			defer s.done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if i >= maxReq {
					return
				}
				s.send(i*batch, time.Now())
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

type job struct {
	first int64
	due   time.Time
}

// open offers requests on a fixed schedule. A request waits in the queue when
// every connection is busy, and its latency includes that wait.
func (r *runner) open(ctx context.Context) error {
	if r.cfg.Rate <= 0 {
		return errors.New("open loop needs a rate above 0")
	}
	batch := int64(r.cfg.Batch)
	total := min(int64(r.cfg.Rate*r.cfg.Duration.Seconds())/batch, r.cfg.MaxEvents/batch)
	if total < 1 {
		total = 1
	}
	interval := time.Duration(float64(time.Second) * float64(batch) / r.cfg.Rate)
	jobs := make(chan job, total)
	var wg sync.WaitGroup
	start := time.Now()
	// Past the cut-off, queued requests are not sent: an overloaded collector
	// would otherwise stretch the phase by as long as it is behind.
	cutoff := start.Add(r.cfg.Duration + max(2*time.Second, r.cfg.Duration/2))
	for range r.cfg.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := r.newSender()
			defer s.done()
			for j := range jobs {
				if now := time.Now(); now.After(cutoff) {
					r.dropped.Add(1)
					s.lat = append(s.lat, now.Sub(j.due))
					continue
				}
				s.send(j.first, j.due)
			}
		}()
	}
	for i := int64(0); i < total && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		jobs <- job{first: i * batch, due: due}
	}
	close(jobs)
	wg.Wait()
	return ctx.Err()
}

// summarize sorts d and reads its percentiles.
func summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x) / 1e6 }
	at := func(q float64) float64 {
		i := int(q*float64(len(d)) + 0.5)
		return ms(d[min(max(i-1, 0), len(d)-1)])
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	s := Summary{
		Count: len(d), Mean: ms(sum / time.Duration(len(d))),
		P50: at(0.50), P90: at(0.90), P99: at(0.99), P999: at(0.999), Max: ms(d[len(d)-1]),
	}
	// Bounds double from 0.25 ms; the last bucket holds the rest.
	i := 0
	for le := 0.25; ; le *= 2 {
		n := 0
		for i < len(d) && ms(d[i]) <= le {
			i++
			n++
		}
		if n > 0 {
			s.Buckets = append(s.Buckets, Bucket{LeMs: le, Count: n})
		}
		if i == len(d) {
			break
		}
	}
	return s
}

// watcher times reply-to-row latency: it polls the warehouse for sampled
// message ids that were answered 200 and records when each became visible.
// It reads herd.message_ids, which the writer fills in the same transaction as
// herd.events and which is indexed by (source_id, message_id).
type watcher struct {
	conn     *pgx.Conn
	sourceID int64
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	pending map[string]time.Time // message id -> reply time
	got     []time.Duration
	stop    chan struct{}
	done    chan struct{}
}

func newWatcher(ctx context.Context, cfg Config, log *slog.Logger) (*watcher, error) {
	conn, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("connect to the warehouse to watch rows: %w", err)
	}
	w := &watcher{conn: conn, interval: cfg.PollInterval, timeout: cfg.RowTimeout, log: log,
		pending: map[string]time.Time{}, stop: make(chan struct{}), done: make(chan struct{})}
	if err := conn.QueryRow(ctx, "SELECT id FROM herd.sources WHERE write_key = $1", cfg.WriteKey).Scan(&w.sourceID); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("find the source of write key %q in herd.sources: %w", cfg.WriteKey, err)
	}
	go w.loop(ctx)
	return w, nil
}

func (w *watcher) add(id string, reply time.Time) {
	w.mu.Lock()
	w.pending[id] = reply
	w.mu.Unlock()
}

func (w *watcher) loop(ctx context.Context) {
	defer close(w.done)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	ids := make([]string, 0, 1024)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.stop:
			return
		case <-t.C:
		}
		ids = ids[:0]
		w.mu.Lock()
		for id := range w.pending {
			ids = append(ids, id)
			if len(ids) == cap(ids) {
				break
			}
		}
		w.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		// The query's snapshot is taken when it starts: a row it sees was
		// visible by then, so its start is the (at most one interval late)
		// time the row became visible.
		seen := time.Now()
		rows, err := w.conn.Query(ctx, "SELECT message_id FROM herd.message_ids WHERE source_id = $1 AND message_id = ANY($2)", w.sourceID, ids)
		if err != nil {
			w.log.Warn("poll the warehouse for rows", "err", err)
			continue
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			w.log.Warn("poll the warehouse for rows", "err", err)
			continue
		}
		w.mu.Lock()
		for _, id := range found {
			if reply, ok := w.pending[id]; ok {
				w.got = append(w.got, max(seen.Sub(reply), 0))
				delete(w.pending, id)
			}
		}
		w.mu.Unlock()
	}
}

// finish waits for the sampled rows still pending (up to the timeout) and
// returns the latencies seen and how many rows never appeared.
func (w *watcher) finish(ctx context.Context) ([]time.Duration, int) {
	deadline := time.Now().Add(w.timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		w.mu.Lock()
		n := len(w.pending)
		w.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(w.interval)
	}
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.got, len(w.pending)
}

func (w *watcher) close() { w.conn.Close(context.Background()) }
