// Package console serves herd console: a web app where people sign in with
// their Postgres login, run and share SQL as their own role, and operators
// (members of herd_admin) watch events arrive and the pipeline's health.
package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/herdhq/herd/console/web"
	"github.com/herdhq/herd/queries"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// AdminRole is the Postgres role whose members see the operator pages.
const AdminRole = "herd_admin"

// LocateFunc names the lake file holding the raw copy of an event, from its
// source, corrected timestamp and stream sequence (archive.Locate). It
// returns an error wrapping fs.ErrNotExist when no file holds it yet.
type LocateFunc func(ctx context.Context, sourceID int64, ts time.Time, seq uint64) (file, partition string, err error)

// Config configures the console. DB and DatabaseURL are required; the
// operator pages use NATS, JetStream and Locate when they are set.
type Config struct {
	DB          *pgxpool.Pool // herd's own pool: sign-in checks, snapshots, operator pages
	DatabaseURL string        // the warehouse; people's connections use it with their own user and password

	NATS   *nats.Conn          // live events (core subscriptions, no consumers)
	JS     jetstream.JetStream // stream depth, consumer lag, trace's stream time
	Stream stream.Config
	Locate LocateFunc // trace's lake file

	Log        *slog.Logger
	Registerer prometheus.Registerer // the console's metrics; nil: none

	// SecureCookies marks the session cookie Secure even on plain HTTP
	// requests (a TLS-terminating proxy that sets no X-Forwarded-Proto).
	SecureCookies bool
	// TrustedProxies may set X-Forwarded-Proto and X-Forwarded-For.
	TrustedProxies []netip.Prefix

	SessionTTL     time.Duration // absolute session lifetime (default 12h)
	IdleTTL        time.Duration // idle timeout (default 2h)
	MaxSessions    int           // open sessions, each holding a Postgres connection (default 50)
	MaxUserSession int           // sessions per user; the oldest is closed past it (default 5)
	MaxLive        int           // live-event streams per session (default 3)
	LiveRate       int           // live events per second per stream; the rest are counted as dropped (default 50)

	QueryTimeout    time.Duration // default and greatest statement timeout of /api/query (default 30s; greatest 5m)
	MaxRows         int           // rows returned by /api/query (default 10000)
	MaxResultBytes  int           // bytes of values returned by /api/query (default 32 MiB)
	SavedPerRole    int           // saved queries per role (default 200)
	RunsPerUser     int           // saved-query runs in flight per user (default 2); past it 429
	RunsTotal       int           // saved-query runs in flight in all (default 4); past it 503
	LoginBurst      int           // sign-in attempts per client IP, and failures per user name and client network, before waiting (default 5); failures per user name from all networks: 10 times as many, refilled 10 times as fast
	LoginRefill     time.Duration // one more attempt per this long (default 12s)
	HeartbeatPeriod time.Duration // live stream comment interval (default 15s)

	Now func() time.Time // the clock (tests move it)
	Web fs.FS            // the single-page app (default: the embedded build)
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.SessionTTL, 12*time.Hour)
	def(&c.IdleTTL, 2*time.Hour)
	def(&c.QueryTimeout, 30*time.Second)
	def(&c.LoginRefill, 12*time.Second)
	def(&c.HeartbeatPeriod, 15*time.Second)
	defInt(&c.MaxSessions, 50)
	defInt(&c.MaxUserSession, 5)
	defInt(&c.MaxLive, 3)
	defInt(&c.LiveRate, 50)
	defInt(&c.MaxRows, 10000)
	defInt(&c.MaxResultBytes, 32<<20)
	defInt(&c.SavedPerRole, 200)
	defInt(&c.RunsPerUser, 2)
	defInt(&c.RunsTotal, 4)
	defInt(&c.LoginBurst, 5)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Web == nil {
		sub, err := fs.Sub(web.FS, "dist")
		if err == nil {
			c.Web = sub
		}
	}
	c.Stream.Defaults()
	return c
}

// Server is the console's HTTP handler and the sessions it holds.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    *queries.Store
	sessions *sessions
	limiter  *limiter // per client address (every attempt) and per name and network (failures)
	names    *limiter // per name from everywhere (failures): looser
	runs     *runSlots
	live     *hub
	static   *static
	mux      *http.ServeMux
	m        *metrics

	closeOnce sync.Once
	done      chan struct{}

	othersMu   sync.Mutex
	othersRuns map[string]time.Time // query name: when someone other than its saver last ran it

	pipeMu     sync.Mutex
	pipeCached []byte
	pipeAt     time.Time
}

// New returns a console on cfg. Close it to close the sessions' connections.
func New(cfg Config) (*Server, error) {
	if cfg.DB == nil || cfg.DatabaseURL == "" {
		return nil, errors.New("console: the warehouse pool and URL are required")
	}
	cfg = cfg.withDefaults()
	st, err := newStatic(cfg.Web)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Log,
		store:   queries.New(cfg.DB, cfg.Log.With("component", "queries"), queries.Config{MaxRows: cfg.MaxRows}),
		limiter: newLimiter(cfg.LoginBurst, cfg.LoginRefill, cfg.Now),
		names:   newLimiter(10*cfg.LoginBurst, cfg.LoginRefill/10, cfg.Now),
		runs:    newRunSlots(cfg.RunsPerUser, cfg.RunsTotal),
		static:  st,
		done:    make(chan struct{}),
	}
	s.sessions = newSessions(cfg)
	s.live = newHub(cfg.NATS, cfg.Stream, cfg.DB, cfg.Log)
	s.m = newMetrics(cfg.Registerer, s)
	s.routes()
	go s.janitor()
	return s, nil
}

// Close ends every session and closes its connection.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.sessions.closeAll()
		s.live.close()
	})
}

// janitor closes expired sessions' connections.
func (s *Server) janitor() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.sessions.expire()
		}
	}
}

// Serve serves the console on ln until ctx ends, then shuts down: requests
// in flight get 10 seconds, sessions are closed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.Close()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	s.Close()
	if errors.Is(err, context.DeadlineExceeded) {
		_ = hs.Close()
	}
	return nil
}

// ServeHTTP sets the headers every response carries and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	m := http.NewServeMux()
	s.mux = m
	// Sessions.
	m.HandleFunc("POST /api/login", s.login)
	m.Handle("POST /api/logout", s.auth(false, s.logout))
	m.Handle("GET /api/session", s.auth(false, s.session))
	// SQL.
	m.Handle("POST /api/query", s.auth(false, s.query))
	m.Handle("POST /api/query/cancel", s.auth(false, s.cancel))
	m.Handle("GET /api/schema", s.auth(false, s.schema))
	// Saved queries.
	m.Handle("GET /api/queries", s.auth(false, s.listQueries))
	m.Handle("POST /api/queries", s.auth(false, s.saveQuery))
	m.Handle("POST /api/queries/{name}/run", s.auth(false, s.runQuery))
	m.HandleFunc("GET /q/{name}", s.savedQuery)
	// Operators.
	m.Handle("GET /api/live", s.auth(true, s.liveEvents))
	m.Handle("GET /api/trace/{id}", s.auth(true, s.trace))
	m.Handle("GET /api/pipeline", s.auth(true, s.pipeline))
	m.Handle("GET /api/rollups", s.auth(true, s.rollups))
	m.Handle("GET /api/usage", s.auth(true, s.usage))
	m.Handle("GET /api/loaders", s.auth(true, s.loaders))
	m.Handle("GET /api/sources", s.auth(true, s.listSources))
	m.Handle("POST /api/sources", s.auth(true, s.createSource))
	m.Handle("POST /api/sources/{name}/revoke", s.auth(true, s.revokeSource))
	m.Handle("POST /api/sources/{name}/limits", s.auth(true, s.sourceLimits))
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path+" (see the console's README for the API)")
	})
	// The single-page app.
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path)
			return
		}
		s.static.serve(w, r)
	})
}

// apiError is a failure with its HTTP status and message.
type apiError struct {
	status int
	msg    string
	extra  map[string]any
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// fail answers err: an apiError as it says, anything else as a 500 whose
// details go to the log only.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		if ae.extra == nil {
			writeError(w, ae.status, ae.msg)
			return
		}
		body := map[string]any{"error": ae.msg}
		for k, v := range ae.extra {
			body[k] = v
		}
		writeJSON(w, ae.status, body)
		return
	}
	if r.Context().Err() != nil {
		return
	}
	s.log.Error("console request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	writeError(w, http.StatusInternalServerError, "the console could not answer; the herd log has the details")
}

// readJSON decodes a JSON body of at most limit bytes into v.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, "send the body as application/json")
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes", limit)
		}
		if errors.Is(err, io.EOF) {
			return errorf(http.StatusBadRequest, "the body is empty: send a JSON object")
		}
		return errorf(http.StatusBadRequest, "bad JSON body: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "bad JSON body: one object only")
	}
	return nil
}

// clientIP is the peer's address, or the right-most address of
// X-Forwarded-For that is not a trusted proxy when the peer is one.
func (s *Server) clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if !s.trusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a
		}
		ip = a
	}
	return ip
}

func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// https reports whether the browser reached the console over TLS.
func (s *Server) https(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && s.trusted(ap.Addr().Unmap()) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// ownOrigin is the origin a page of this console sends.
func (s *Server) ownOrigin(r *http.Request) string {
	scheme := "http"
	if s.https(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// crossSite reports a request a page of another site made: an Origin other
// than the console's, or Sec-Fetch-Site cross-site.
func (s *Server) crossSite(r *http.Request) bool {
	if strings.EqualFold(r.Header.Get("Sec-Fetch-Site"), "cross-site") {
		return true
	}
	o := r.Header.Get("Origin")
	return o != "" && o != s.ownOrigin(r)
}
