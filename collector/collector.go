// Package collector is herd's HTTP front door: it speaks the Segment and
// RudderStack tracking API over fasthttp, authenticates write keys, validates
// and enriches events, and answers 200 only once JetStream has stored them.
package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/herdhq/herd"
	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// Config configures a Collector. The zero value, after defaults, is usable.
type Config struct {
	Stream stream.Config
	// PublishTimeout bounds the wait for JetStream's acknowledgement; past it
	// the client gets 503 with Retry-After and retries.
	PublishTimeout time.Duration
	// MaxPending bounds asynchronous publishes awaiting acknowledgement.
	MaxPending int
	// TrustedProxies are the peers whose forwarding headers
	// (X-Forwarded-For, Forwarded, X-Real-IP, X-Forwarded-Proto,
	// X-Forwarded-Host) are believed.
	TrustedProxies []netip.Prefix
	// AnonymizeIP zeroes the host part of every client IP.
	AnonymizeIP bool
	// PublicURL is how clients reach this collector (for the settings
	// endpoint and the demo page); default: the request's own scheme and
	// Host (X-Forwarded-Proto and X-Forwarded-Host believed from
	// TrustedProxies only), answered with private caching.
	PublicURL string
	// Static files served as they are (the SDK, the demo page), by path.
	Static map[string]Static
	// Webhooks accepted from third parties.
	Webhooks []Webhook
	// Enricher adds user agent and geo columns; nil skips them.
	Enricher Enricher
	// DropBots discards events flagged as bots instead of storing them with
	// is_bot set. They are still answered 200 (a bot that sees errors
	// retries) and counted in herd_collector_events_total{result="dropped"}.
	DropBots bool
	// RateLimit is the default events per second per source (a source's own
	// rate_limit overrides it); 0 is unlimited.
	RateLimit float64
	// IPRateLimit bounds requests per second to the event endpoints per
	// client network (an IPv4 address or an IPv6 /64), checked before the
	// body is decompressed or decoded (fasthttp has read it by then); 0 is
	// off.
	IPRateLimit float64
	// BrowserByteRate bounds the bytes per second each browser source may
	// put on the stream (its key is public, so anyone may send with it):
	// past a burst of 8 seconds' worth (at least 4 MiB) its requests get 429
	// until the bucket refills. 0 is unlimited. Server sources, whose keys
	// are secret, are bounded by RateLimit alone.
	BrowserByteRate float64
	// ExemptLoopback spares loopback clients the IPRateLimit: behind a
	// local proxy that is not in TrustedProxies every client is 127.0.0.1.
	ExemptLoopback bool
	// RejectRate bounds the bytes of rejects (refused events and requests)
	// each source may record per second, with a burst of 32 seconds' worth
	// and at least 256 KiB; past it they are counted, not stored. Default
	// DefaultRejectRate (32 KiB/s: a burst of 1 MiB).
	RejectRate float64
	// Now is the clock (tests move it); default time.Now.
	Now func() time.Time
	// ReadTimeout and IdleTimeout protect against slow or idle clients.
	ReadTimeout, IdleTimeout time.Duration
	// MaxConns is how many connections are served at once; past it a
	// connection is answered 503 and closed. Default DefaultMaxConns.
	MaxConns int
	// MaxConnsPerClient is how many connections one client network (an
	// IPv4 address or an IPv6 /64, by socket peer) may hold open; trusted
	// proxies, and loopback with ExemptLoopback, are exempt. Default
	// DefaultMaxConnsPerClient; negative: no limit.
	MaxConnsPerClient int
	// DecodeBytes bounds the request bodies being decompressed, decoded and
	// built at once, in decompressed bytes, for the public and again for
	// requests authenticated in their headers as a server source; a request
	// that finds no room within DecodeWait is answered 503 with
	// Retry-After. Defaults DefaultDecodeBytesPerCPU × GOMAXPROCS and
	// DefaultDecodeWait.
	DecodeBytes int64
	DecodeWait  time.Duration
	// Memory, when set, is asked before each event request is decoded;
	// while it says the process is over its memory budget, requests are
	// answered 503 with Retry-After (memory.go).
	Memory MemoryGuard
	// InFlightBytes bounds the bytes of event request bodies admitted and
	// not yet answered (they wait for JetStream holding their body); past
	// it requests are answered 503 with Retry-After. 0 is unbounded.
	InFlightBytes int64
	// BodyBytes bounds the request bodies being read and held at once:
	// a body is read only once its bytes (its Content-Length; a chunked
	// body 64 KiB at a time) are admitted, and one that finds no room
	// within DecodeWait is answered 503 with Retry-After (bodies.go).
	// Default DefaultBodyBytes.
	BodyBytes int64
	// StreamByteRate bounds the bytes per second all sources together may
	// put on the stream, encoded: the memory budget's share for embedded
	// NATS's block caches, which hold the last seconds of stream bytes.
	// Past it requests are answered 503 with Retry-After (memory.go).
	// 0 is unbounded.
	StreamByteRate float64
}

// Static is a file served by the collector.
type Static struct {
	ContentType  string
	CacheControl string
	Body         []byte
	// Render, when set, makes the body per request (the demo page needs the
	// request's host).
	Render func(host, scheme string) []byte
	// WriteKey, when set, is the write key the file shows: it is served only
	// while that key belongs to a live browser source, and answered 404
	// otherwise, since a server source's key is a secret.
	WriteKey string

	gz, br []byte // compressed once at start
}

// Webhook is a third-party callback (Stripe...): verified, then made durable
// on the stream's webhook subject before the 200.
type Webhook struct {
	Path   string
	Name   string
	Verify func(body []byte, header func(name string) string, now time.Time) (msgID string, err error)
	// Handshake, when set, recognises a vendor's verified setup request (a
	// check of the endpoint before any event, such as Front's challenge):
	// ok means answer 200 with reply and store nothing.
	Handshake func(body []byte, header func(name string) string, now time.Time) (reply []byte, ok bool)
}

func (c *Config) defaults() {
	c.Stream.Defaults()
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 3 * time.Second
	}
	if c.MaxPending == 0 {
		c.MaxPending = 16384
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerClient == 0 {
		c.MaxConnsPerClient = DefaultMaxConnsPerClient
	}
	if c.DecodeBytes == 0 {
		c.DecodeBytes = int64(DefaultDecodeBytesPerCPU * runtime.GOMAXPROCS(0))
	}
	if c.DecodeWait == 0 {
		c.DecodeWait = DefaultDecodeWait
	}
	if c.BodyBytes <= 0 {
		c.BodyBytes = DefaultBodyBytes
	}
}

// Collector serves the tracking API.
type Collector struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	log      *slog.Logger
	m        *metrics
	enricher Enricher
	server   *fasthttp.Server
	sources  atomic.Pointer[sourceSet]
	webhooks map[string]Webhook
	static   map[string]Static
	limits   *limiters
	work     *workPool
	rejects  *rejectBudget
	packers  sync.Map // event subject → *packer
	inFlight inFlight // memory.go
	// streamBytes is the bucket of StreamByteRate (memory.go); nil: none.
	streamBytes *byteBucket
	bodies      *bodyGate // bodies.go
	ready       atomic.Bool
	// lastLimitWarn is when the per-client limit was last logged (unix ns).
	lastLimitWarn atomic.Int64
	// suppressed holds the bucket keys of suppressed ids (suppress.go).
	suppressed atomic.Pointer[map[string]struct{}]
}

// New builds a collector publishing through nc.
func New(cfg Config, nc *nats.Conn, log *slog.Logger, reg prometheus.Registerer) (*Collector, error) {
	cfg.defaults()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(cfg.MaxPending))
	if err != nil {
		return nil, err
	}
	c := &Collector{cfg: cfg, nc: nc, js: js, log: log, m: newMetrics(reg), enricher: cfg.Enricher, webhooks: map[string]Webhook{}}
	c.limits = newLimiters(cfg.RateLimit, cfg.IPRateLimit, cfg.BrowserByteRate)
	c.rejects = newRejectBudget(cfg.RejectRate)
	c.work = newWorkPool(cfg.DecodeBytes, cfg.DecodeWait)
	c.inFlight.register(cfg.InFlightBytes, reg)
	if cfg.StreamByteRate > 0 {
		c.streamBytes = newByteBucket(cfg.StreamByteRate, math.Max(cfg.StreamByteRate, minByteBurst))
	}
	c.bodies = newBodyGate(max(cfg.BodyBytes, maxBodyBytes), cfg.DecodeWait, reg)
	c.static = make(map[string]Static, len(cfg.Static))
	for path, st := range cfg.Static {
		if st.Render == nil {
			st.gz = fasthttp.AppendGzipBytesLevel(nil, st.Body, fasthttp.CompressBestCompression)
			st.br = brotliBest(st.Body)
		}
		c.static[path] = st
	}
	for _, w := range cfg.Webhooks {
		c.webhooks[w.Path] = w
	}
	c.sources.Store(&sourceSet{byWriteKey: map[string]*herd.Source{}, entries: map[string]string{}})
	c.server = &fasthttp.Server{
		Handler:                       c.serve,
		Name:                          "herd",
		MaxRequestBodySize:            maxBodyBytes,
		StreamRequestBody:             true,
		Concurrency:                   cfg.MaxConns,
		ReadTimeout:                   cfg.ReadTimeout,
		WriteTimeout:                  cfg.ReadTimeout,
		IdleTimeout:                   cfg.IdleTimeout,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		DisablePreParseMultipartForm:  true,
		ErrorHandler:                  c.transportError,
		DisableHeaderNamesNormalizing: false,
		CloseOnShutdown:               true,
		Logger:                        fasthttpLogger{log},
	}
	c.server.HeaderReceived = c.headerReceived
	return c, nil
}

// Start loads the sources bucket and follows its changes until ctx ends. It
// returns once the current sources are loaded.
func (c *Collector) Start(ctx context.Context) error {
	kv, err := stream.SourcesKV(ctx, c.js, c.cfg.Stream)
	if err != nil {
		return err
	}
	if err := follow(ctx, kv, c.applySource); err != nil {
		return err
	}
	if err := c.watchSuppressions(ctx); err != nil {
		return err
	}
	c.ready.Store(true)
	return nil
}

// follow applies every entry of kv, then every change, until ctx ends; it
// returns once the current entries are applied.
func follow(ctx context.Context, kv jetstream.KeyValue, apply func(jetstream.KeyValueEntry)) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", kv.Bucket(), err)
	}
	loaded := make(chan struct{})
	go func() {
		defer w.Stop() //nolint:errcheck
		once := false
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if !once {
						once = true
						close(loaded)
					}
					continue
				}
				apply(e)
			}
		}
	}()
	select {
	case <-loaded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(15 * time.Second):
		return fmt.Errorf("bucket %s did not load within 15s", kv.Bucket())
	}
}

// sourceSet is the collector's copy of the sources bucket, replaced whole on
// every change: the sources by write key, and which write key each bucket
// entry holds, so that deleting an entry removes its key whatever form the
// entry's name has (older versions named entries by an encoding of the key).
type sourceSet struct {
	byWriteKey map[string]*herd.Source
	entries    map[string]string // bucket key → write key
}

func (c *Collector) applySource(e jetstream.KeyValueEntry) {
	old := c.sources.Load()
	next := &sourceSet{
		byWriteKey: make(map[string]*herd.Source, len(old.byWriteKey)+1),
		entries:    make(map[string]string, len(old.entries)+1),
	}
	for k, v := range old.byWriteKey {
		next.byWriteKey[k] = v
	}
	for k, v := range old.entries {
		next.entries[k] = v
	}
	if prev, ok := next.entries[e.Key()]; ok {
		delete(next.entries, e.Key())
		if !next.holds(prev) {
			delete(next.byWriteKey, prev)
		}
	}
	if e.Operation() == jetstream.KeyValuePut {
		var s herd.Source
		if err := json.Unmarshal(e.Value(), &s); err != nil || s.WriteKey == "" {
			c.log.Warn("bad source in bucket: ignored", "entry", e.Key(), "source", s.ID, "err", err)
		} else {
			next.entries[e.Key()] = s.WriteKey
			next.byWriteKey[s.WriteKey] = &s
		}
	}
	c.sources.Store(next)
}

// holds reports whether an entry still holds writeKey.
func (s *sourceSet) holds(writeKey string) bool {
	for _, w := range s.entries {
		if w == writeKey {
			return true
		}
	}
	return false
}

// Ready reports whether sources are loaded and NATS is connected.
func (c *Collector) Ready() bool { return c.ready.Load() && c.nc.IsConnected() }

// Serve accepts connections on ln until Shutdown, at most
// MaxConnsPerClient of them from one client network.
func (c *Collector) Serve(ln net.Listener) error {
	if c.cfg.MaxConnsPerClient > 0 {
		ln = &connLimiter{Listener: ln, max: c.cfg.MaxConnsPerClient, open: map[netKey]int{},
			exempt: func(a netip.Addr) bool {
				return c.trusted(a) || (c.cfg.ExemptLoopback && a.IsLoopback())
			},
			refused: c.m.connsRefused.Inc,
		}
	}
	return c.server.Serve(ln)
}

// Shutdown stops accepting connections and waits for in-flight requests to
// be answered, or for ctx to end.
func (c *Collector) Shutdown(ctx context.Context) error {
	return c.server.ShutdownWithContext(ctx)
}

// lookupSource returns the active source for a write key.
func (c *Collector) lookupSource(key string) *herd.Source {
	s := c.sources.Load().byWriteKey[key]
	if s == nil || s.Revoked {
		return nil
	}
	return s
}

// fasthttpLogger sends fasthttp's own messages (connection errors) to slog
// at debug level: each refused request is already answered and counted.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
}

// brotliBest compresses a static file once, at brotli's best level, with
// an encoder of its own: fasthttp's pooled encoders at that level keep about
// 30 MiB of match tables alive for the life of the process (a third of an
// idle herd up), for files compressed once at start.
func brotliBest(b []byte) []byte {
	var buf bytes.Buffer
	w := brotli.NewWriterLevel(&buf, brotli.BestCompression)
	_, _ = w.Write(b) // writes to a bytes.Buffer do not fail
	_ = w.Close()
	return buf.Bytes()
}
