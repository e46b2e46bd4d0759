// Package intercom keeps an Intercom workspace in the warehouse, under the
// intercom schema: a backfill that resumes page by page, then incremental
// passes over the search endpoints' updated_at with a lookback, a periodic
// sweep of ids for deletes that leave no trace, and webhooks applied by
// refetching the object they name. Every write is guarded by the object's
// updated_at. It implements saas.Connector.
package intercom

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/saas"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultAPIBase is Intercom's API (US region; EU and AU workspaces have
// their own hosts); tests point Config.APIBase at a fake.
const DefaultAPIBase = "https://api.intercom.io"

// DefaultVersion is the Intercom-Version herd speaks: pinned, so that an
// upgrade of the app's default version cannot change the shapes herd stores.
const DefaultVersion = "2.11"

// MaxPerPage is the largest page the list and search endpoints give.
const MaxPerPage = 150

// lockKey is the advisory lock held during a sync pass, so that two herd
// processes on one warehouse do not both spend the API's rate limit.
const lockKey int64 = 0x68657264_0210

// Config configures a Syncer. Only Token is required.
type Config struct {
	Token   string // access token of an Intercom app with read scopes
	APIBase string // default DefaultAPIBase
	Version string // Intercom-Version; default DefaultVersion
	// Limits: Intercom allows about 10,000 requests a minute per app,
	// measured in 10-second windows; the default of 20/s leaves room.
	Limits  saas.Limits
	PerPage int // objects per list or search page; default and maximum MaxPerPage
	// Lookback is how far before the last pass's start each incremental
	// pass searches again, for changes that reach the search index late;
	// default 10 minutes. Contacts' search compares dates by calendar day,
	// so for them the search starts at the beginning of that day.
	Lookback time.Duration
	// SweepEvery is how often contacts and conversations are listed whole
	// to find the ones deleted or merged away in Intercom, which no search
	// reveals. Zero (the default) chooses per object from its row count:
	// every pass, at most once a minute, as long as a listing costs under
	// a tenth of the request rate; for larger tables as often as that
	// tenth allows (see sweepInterval).
	SweepEvery time.Duration
	// Concurrency is how many conversations are fetched at once; default 4.
	Concurrency int
	HTTPTimeout time.Duration // per request, retries included; default 80s
	// HTTPTransport carries the requests under the rate limiter and retries;
	// default http.DefaultTransport.
	HTTPTransport http.RoundTripper
	// Now is the clock, for tests; default time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	c.APIBase = strings.TrimRight(c.APIBase, "/")
	if c.APIBase == "" {
		c.APIBase = DefaultAPIBase
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if c.PerPage <= 0 || c.PerPage > MaxPerPage {
		c.PerPage = MaxPerPage
	}
	if c.Lookback <= 0 {
		c.Lookback = 10 * time.Minute
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.HTTPTimeout <= 0 {
		c.HTTPTimeout = 80 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Syncer is the Intercom connector.
type Syncer struct {
	cfg   Config
	db    *pgxpool.Pool
	log   *slog.Logger
	plog  *slog.Logger // for saas.Progress, which names the source itself
	api   *client
	m     *metrics
	fresh *saas.Freshness
	// A company scroll refused because another is open is asked for again
	// every scrollRetry, for up to scrollPatience (Intercom expires an
	// unused scroll after a minute).
	scrollRetry, scrollPatience time.Duration
}

var _ saas.Connector = (*Syncer)(nil)

// New returns a Syncer writing into db, whose intercom schema must exist
// (schemas.Migrate). reg may be nil.
func New(cfg Config, db *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) (*Syncer, error) {
	cfg.defaults()
	if cfg.Token == "" {
		return nil, errors.New("no Intercom access token: set INTERCOM_ACCESS_TOKEN or --token-file (an app's access token with read scopes)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := newMetrics(reg)
	base := cfg.HTTPTransport
	if base == nil {
		base = http.DefaultTransport
	}
	tr := saas.NewTransport(rateLimitHint{base: base, now: cfg.Now}, cfg.Limits)
	tr.Observe = func(status int, retry bool) {
		m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
		if retry {
			m.retries.Inc()
		}
	}
	return &Syncer{
		cfg:  cfg,
		db:   db,
		log:  log.With("source", "intercom"),
		plog: log,
		api: &client{base: cfg.APIBase, token: cfg.Token, version: cfg.Version,
			http: &http.Client{Timeout: cfg.HTTPTimeout, Transport: tr}},
		m:           m,
		fresh:       saas.NewFreshness(reg, "intercom"),
		scrollRetry: 5 * time.Second, scrollPatience: 2 * time.Minute,
	}, nil
}

// Name implements saas.Connector.
func (s *Syncer) Name() string { return "intercom" }

// Sync runs one pass over every object: a backfill (resumed where it
// stopped) for those never backfilled, otherwise an incremental pass. If
// another process is already running a pass on this warehouse, Sync returns
// nil at once.
func (s *Syncer) Sync(ctx context.Context) error {
	// The lock is held on a connection outside the pool (see
	// saas.TryPassLock), so that a long pass cannot starve the pool.
	lock, err := saas.TryPassLock(ctx, s.db, lockKey)
	if err != nil {
		return fmt.Errorf("intercom sync: %w", err)
	}
	if lock == nil {
		s.log.Info("another process is syncing Intercom into this warehouse; skipping this pass")
		return nil
	}
	defer lock.Release()

	// One object failing (an app without the scope to read companies, say)
	// must not keep the others stale: each is tried, and the errors are
	// returned together.
	var errs []error
	for i := range objects {
		obj := &objects[i]
		if err := s.syncObject(ctx, obj); err != nil {
			if ctx.Err() != nil {
				return err
			}
			_ = s.setState(ctx, obj.Table, map[string]any{"last_error": err.Error(), "last_error_at": time.Now()})
			errs = append(errs, err)
		}
	}
	if err := s.reportLag(ctx); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	s.m.lastSuccess.Set(float64(time.Now().Unix()))
	return nil
}

// reportLag publishes the oldest synced_until as the connector's lag.
func (s *Syncer) reportLag(ctx context.Context) error {
	var oldest *time.Time
	if err := s.db.QueryRow(ctx, `SELECT min(synced_until) FROM intercom.sync_state`).Scan(&oldest); err != nil {
		return fmt.Errorf("read intercom.sync_state: %w", err)
	}
	if oldest != nil {
		s.fresh.SyncedUntil(*oldest)
	}
	return nil
}
