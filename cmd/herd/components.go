package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// streamFlags configure the JetStream stream every component agrees on.
type streamFlags struct {
	cfg        stream.Config
	maxBytes   int64
	replicas   int
	dupeWindow time.Duration
}

func (s *streamFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&s.cfg.Name, "stream", "HERD_EVENTS", "JetStream stream name")
	fs.StringVar(&s.cfg.Prefix, "subject-prefix", "herd", "prefix of the stream's subjects (<prefix>.events.<source id>)")
	fs.StringVar(&s.cfg.SourcesKV, "sources-bucket", "herd_sources", "NATS key-value bucket mirroring herd.sources")
	fs.Int64Var(&s.maxBytes, "stream-max-bytes", 10<<30, "stream size limit in bytes; the collector answers 503 once it is full")
	fs.IntVar(&s.replicas, "stream-replicas", 1, "stream replicas (3 on a 3-node JetStream cluster)")
	fs.DurationVar(&s.dupeWindow, "dupe-window", 2*time.Minute, "JetStream duplicate window for Nats-Msg-Id (webhooks; events are deduplicated by the writer's message-id ledger)")
}

func (s *streamFlags) config() stream.Config {
	c := s.cfg
	c.MaxBytes, c.Replicas, c.DupeWindow = s.maxBytes, s.replicas, s.dupeWindow
	c.Defaults()
	return c
}

// collectorFlags configure the HTTP collector.
type collectorFlags struct {
	listen         string
	bound          string // the address listened on, once listening (port 0 resolved)
	publicURL      string
	trustedProxies string
	anonymizeIP    bool
	publishTimeout time.Duration
	enrich         bool
	geoIPDB, asnDB string
	bots           string
	rateLimit      float64
	ipRateLimit    float64
	limitLoopback  bool
	rejectRate     float64
	byteRate       float64
	fs             *flag.FlagSet // to tell a --browser-byte-rate given from the default
}

// byteRateGiven says whether --browser-byte-rate was given (by flag or
// environment) rather than left at its default.
func (c *collectorFlags) byteRateGiven() bool {
	given := false
	if c.fs != nil {
		c.fs.Visit(func(f *flag.Flag) { given = given || f.Name == "browser-byte-rate" })
	}
	return given
}

func (c *collectorFlags) bind(fs *flag.FlagSet) {
	c.fs = fs
	fs.StringVar(&c.listen, "listen", ":8080", "address of the tracking API, the SDK and (herd up) the demo page at / and /demo, which shows the default source's write key and is served only while that source is a live browser source")
	fs.StringVar(&c.publicURL, "public-url", "", "URL clients use to reach the collector, in the settings answer and the demo page (default: each request's Host, answered with private caching only)")
	fs.StringVar(&c.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs of proxies whose X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host are believed")
	fs.BoolVar(&c.anonymizeIP, "anonymize-ip", false, "zero the last octet (IPv4) or 80 bits (IPv6) of every client IP")
	fs.DurationVar(&c.publishTimeout, "publish-timeout", 3*time.Second, "longest wait for JetStream's acknowledgement before answering 503")
	fs.Float64Var(&c.rateLimit, "rate-limit", 0, "default events per second per source, answered 429 past it (a source's own limit wins); 0: unlimited")
	fs.Float64Var(&c.ipRateLimit, "ip-rate-limit", 100, "requests per second to the event endpoints per client (an IPv4 address or an IPv6 /64; behind a proxy, set --trusted-proxies), answered 429 before the body is decompressed, decoded or its key looked up; 0: off")
	fs.BoolVar(&c.limitLoopback, "ip-rate-limit-loopback", false, "apply --ip-rate-limit to loopback clients (127.0.0.0/8, ::1) too; off by default because behind a local proxy not listed in --trusted-proxies every client is 127.0.0.1")
	fs.Float64Var(&c.rejectRate, "reject-rate", collector.DefaultRejectRate, "bytes per second of refused events and requests each source may record in herd.rejects (burst: 32 s worth, at least 256 KiB); past it they are only counted (herd_collector_rejects_unrecorded_total) and summarised")
	fs.Float64Var(&c.byteRate, "browser-byte-rate", 8<<20, "bytes per second each browser source may put on the stream, encoded (its write key is public; bursts of 8 s worth, at least 4 MiB), answered 429 past it; server sources are bounded by --rate-limit alone; 0: unlimited. Unless given, at most half the stream byte rate --memory-limit sets")
	fs.BoolVar(&c.enrich, "enrich", true, "parse user agents, flag bots, look up geo and classify referrers (false: basic columns only)")
	fs.StringVar(&c.geoIPDB, "geoip-db", "", "MaxMind City or Country .mmdb file; reloaded when it changes (empty: geo columns stay NULL)")
	fs.StringVar(&c.asnDB, "asn-db", "", "MaxMind ASN .mmdb file (optional)")
	fs.StringVar(&c.bots, "bots", "flag", "flag: keep bot events with is_bot set; drop: discard them (still answered 200 and counted)")
}

func (c *collectorFlags) config(sc stream.Config) (collector.Config, error) {
	cfg := collector.Config{Stream: sc, PublicURL: c.publicURL, AnonymizeIP: c.anonymizeIP, PublishTimeout: c.publishTimeout,
		RateLimit: c.rateLimit, IPRateLimit: c.ipRateLimit, ExemptLoopback: !c.limitLoopback, RejectRate: c.rejectRate, BrowserByteRate: c.byteRate}
	for _, s := range strings.Split(c.trustedProxies, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, err2 := netip.ParseAddr(s)
			if err2 != nil {
				return cfg, usagef("--trusted-proxies: %q is not a CIDR or address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, p)
	}
	switch c.bots {
	case "flag":
	case "drop":
		cfg.DropBots = true
	default:
		return cfg, usagef("--bots: %q is not flag or drop", c.bots)
	}
	return cfg, nil
}

// admin is the operators' listener: metrics, health, pprof and pages that
// other packages mount.
type admin struct {
	reg     *prometheus.Registry
	mux     *http.ServeMux
	refused prometheus.Counter
	mu      sync.Mutex
	checks  map[string]func(context.Context) error
	mem     *memory // the process's memory budget (memory.go); nil: none
}

func newAdmin() *admin {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a := &admin{reg: reg, mux: http.NewServeMux(), checks: map[string]func(context.Context) error{}}
	a.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "herd_admin_unauthorized_requests_total",
		Help: "Requests to the admin listener refused for a missing or wrong bearer token.",
	})
	reg.MustRegister(a.refused)
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	a.mux.HandleFunc("GET /readyz", a.ready)
	// No /debug/pprof/cmdline: it would show every secret given as a flag.
	a.mux.HandleFunc("/debug/pprof/", pprof.Index)
	a.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	a.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	a.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return a
}

// check adds a readiness condition.
func (a *admin) check(name string, f func(context.Context) error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checks[name] = f
}

func (a *admin) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	a.mu.Lock()
	checks := make(map[string]func(context.Context) error, len(a.checks))
	for k, v := range a.checks {
		checks[k] = v
	}
	a.mu.Unlock()
	var failed []string
	for name, f := range checks {
		if err := f(ctx); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", name, err))
		}
	}
	if len(failed) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(failed, "\n"))
		return
	}
	fmt.Fprintln(w, "ready")
}

// group runs functions until the first returns or ctx ends, then cancels the
// rest and waits for them: every goroutine has an owner.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
	log    *slog.Logger
}

func newGroup(ctx context.Context, log *slog.Logger) *group {
	ctx, cancel := context.WithCancel(ctx)
	return &group{ctx: ctx, cancel: cancel, log: log}
}

func (g *group) Go(name string, f func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := f(g.ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			g.log.Error(name+" stopped", "err", err)
			g.once.Do(func() { g.err = fmt.Errorf("%s: %w", name, err) })
		}
		g.cancel()
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	return g.err
}

// serveHTTP serves h on ln until ctx ends, then shuts it down gracefully.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// adminListener is the opened admin listener, served once the components
// have registered their readiness checks (before that, /readyz would
// answer ready with none).
type adminListener struct {
	ln    net.Listener
	h     http.Handler
	token string // where its bearer token is ("the one in ..."); "" when open
	// tokenFile is the file holding the token, when one does.
	tokenFile string
}

// openAdmin opens the admin listener (see adminFlags.listenAdmin): a
// listener that may not run refuses before anything else starts. dataDir
// is where herd up keeps a generated token; "" makes a listener beyond
// loopback without a token an error. Close it when the command ends.
func openAdmin(e *env, a *admin, f *adminFlags, dataDir string) (*adminListener, error) {
	return f.listenAdmin(a, dataDir, e.log)
}

// serve runs the listener in g.
func (l *adminListener) serve(g *group) {
	g.Go("admin", func(ctx context.Context) error { return serveHTTP(ctx, l.ln, l.h) })
}

// Close closes the listener (a no-op once served and shut down).
func (l *adminListener) Close() { l.ln.Close() }

// serveCollector runs the collector on addr until ctx ends, then answers the
// requests in flight and returns.
func serveCollector(ctx context.Context, c *collector.Collector, ln net.Listener, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- c.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	log.Info("collector draining")
	return c.Shutdown(sctx)
}
