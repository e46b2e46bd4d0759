// Package front keeps a Front company (conversations with their messages
// and comments, contacts, accounts, teammates, teams, inboxes, tags) in the
// warehouse, under the front schema: a resumable backfill on the first run,
// then incremental passes driven by Front's events feed with a lookback,
// and webhooks applied by refetching the conversation they name. Every
// write is guarded by a version so that an older state never overwrites a
// newer one. It implements saas.Connector.
package front

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/saas"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultAPIBase is Front's Core API; tests and proxies point Config.APIBase
// elsewhere.
const DefaultAPIBase = "https://api2.frontapp.com"

// lockKey is the advisory lock held during a sync pass, so that two herd
// processes on one warehouse do not both spend the company's rate limit.
const lockKey int64 = 0x68657264_0220

// Config configures a Syncer. Only Token is required.
type Config struct {
	Token   string // a Front API token with read access
	APIBase string // default DefaultAPIBase
	// Limits: Front allows 50 requests a minute on its Starter plan, 100 on
	// Professional and 200 on Enterprise, per company; the default of 0.8/s
	// fits the smallest. 429s are retried after Retry-After.
	Limits   saas.Limits
	PageSize int // objects per list request; default 100 (Front's maximum)
	// Lookback is how far before the cursor each incremental pass reads the
	// events feed (and contacts' updated_after) again, to catch what appears
	// in the feed late; default 5 minutes. Events already applied are
	// skipped without an API call.
	Lookback time.Duration
	// Reconcile is how often accounts and contacts are listed whole to find
	// those Front deleted (or merged away) without an event; default 1 hour.
	Reconcile   time.Duration
	HTTPTimeout time.Duration // per request, retries included; default 2 minutes
	// HTTPTransport carries the requests under the rate limiter and retries;
	// default http.DefaultTransport.
	HTTPTransport http.RoundTripper
}

func (c *Config) defaults() {
	if c.APIBase == "" {
		c.APIBase = DefaultAPIBase
	}
	if c.Limits.RequestsPerSecond <= 0 {
		c.Limits.RequestsPerSecond = 0.8
	}
	if c.Limits.Burst <= 0 {
		c.Limits.Burst = 3
	}
	if c.Limits.MaxBackoff <= 0 {
		c.Limits.MaxBackoff = time.Minute
	}
	if c.PageSize <= 0 || c.PageSize > 100 {
		c.PageSize = 100
	}
	if c.Lookback <= 0 {
		c.Lookback = 5 * time.Minute
	}
	if c.Reconcile <= 0 {
		c.Reconcile = time.Hour
	}
	if c.HTTPTimeout <= 0 {
		c.HTTPTimeout = 2 * time.Minute
	}
}

// Syncer is the Front connector.
type Syncer struct {
	cfg   Config
	db    *pgxpool.Pool
	log   *slog.Logger
	plog  *slog.Logger // for saas.Progress, which names the source itself
	api   *client
	m     *metrics
	fresh *saas.Freshness
	now   func() time.Time
}

var _ saas.Connector = (*Syncer)(nil)

// New returns a Syncer writing into db, whose front schema must exist
// (schemas.Migrate). reg may be nil.
func New(cfg Config, db *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) (*Syncer, error) {
	cfg.defaults()
	if cfg.Token == "" {
		return nil, errors.New("no Front API token: set FRONT_API_TOKEN or --token-file (Settings > Developers > API tokens, read access)")
	}
	base, err := url.Parse(strings.TrimRight(cfg.APIBase, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("--front-api-base %q is not an http(s) URL", cfg.APIBase)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := newMetrics(reg)
	tr := saas.NewTransport(newRateLimitPause(cfg.HTTPTransport, cfg.Limits.MaxBackoff), cfg.Limits)
	tr.Observe = func(status int, retry bool) {
		m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
		if retry {
			m.retries.Inc()
		}
	}
	return &Syncer{
		cfg:  cfg,
		db:   db,
		log:  log.With("source", "front"),
		plog: log,
		api: &client{
			http:  &http.Client{Timeout: cfg.HTTPTimeout, Transport: tr, CheckRedirect: noRedirect},
			base:  base,
			token: cfg.Token,
		},
		m:     m,
		fresh: saas.NewFreshness(reg, "front"),
		now:   time.Now,
	}, nil
}

// noRedirect keeps the token from following a redirect to another host.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Name implements saas.Connector.
func (s *Syncer) Name() string { return "front" }

// Sync runs one pass: the backfill while none has finished (resuming an
// interrupted one where it stopped), otherwise an incremental pass. If
// another process is already running a pass on this warehouse, Sync
// returns nil at once.
func (s *Syncer) Sync(ctx context.Context) error {
	// The lock is held on a connection outside the pool (see
	// saas.TryPassLock), so that a long pass cannot starve the pool.
	lock, err := saas.TryPassLock(ctx, s.db, lockKey)
	if err != nil {
		return fmt.Errorf("front sync: %w", err)
	}
	if lock == nil {
		s.log.Info("another process is syncing Front into this warehouse; skipping this pass")
		return nil
	}
	defer lock.Release()

	err = s.pass(ctx)
	if err != nil && ctx.Err() == nil {
		_, _ = s.db.Exec(context.WithoutCancel(ctx), `INSERT INTO front.sync_state AS s (object, last_error, last_error_at)
			VALUES ('events', $1, now())
			ON CONFLICT (object) DO UPDATE SET last_error = $1, last_error_at = now(), updated_at = now()`, err.Error())
	}
	return err
}

func (s *Syncer) pass(ctx context.Context) error {
	st, err := s.state(ctx, "events")
	if err != nil {
		return err
	}
	switch {
	case st.Phase == "backfill" && st.BackfillStarted != nil:
		s.log.Info("resuming the interrupted Front backfill", "started", st.BackfillStarted)
		return s.full(ctx, &st)
	case st.BackfillFinished == nil:
		s.log.Info("first Front sync: backfilling every object")
		return s.full(ctx, nil)
	default:
		return s.incremental(ctx)
	}
}
