// Package stripe keeps a Stripe account in the warehouse, under the stripe
// schema: a full backfill on the first run, then incremental passes through
// the Events API and webhooks, every write guarded by the event's created time
// so that an older event never overwrites newer data. It implements
// saas.Connector.
package stripe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/saas"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	sg "github.com/stripe/stripe-go/v82"
)

// DefaultAPIBase is Stripe's API; tests point Config.APIBase at a fake.
const DefaultAPIBase = "https://api.stripe.com"

// EventsRetention is how long the Events API keeps events. A cursor older
// than this cannot be resumed: events may have been lost, so the next pass
// is a full resync.
const EventsRetention = 30 * 24 * time.Hour

// lockKey is the advisory lock held during a sync pass, so that two herd
// processes on one warehouse do not both spend the API's rate limit.
const lockKey int64 = 0x68657264_0200

// Config configures a Syncer. Only APIKey is required.
type Config struct {
	APIKey  string // sk_live_... or a restricted key with read access
	APIBase string // default DefaultAPIBase
	// Limits: Stripe allows 100 read requests/s in live mode and 25 in test
	// mode; the default of 20/s leaves room for the account's own traffic.
	Limits   saas.Limits
	PageSize int64 // objects per list request; default 100 (Stripe's maximum)
	// EventOverlap is how far before the cursor each incremental pass starts
	// listing events again, to catch events that appear in the list late;
	// default 5 minutes. Events already applied are skipped without an API call.
	EventOverlap time.Duration
	// Retention is the age of the cursor past which a full resync runs instead
	// of an incremental pass; default EventsRetention minus an hour of margin.
	Retention time.Duration
	// BalanceLookback: balance transactions have no events, so each pass
	// lists those created since the newest stored one minus this; default 1 hour.
	BalanceLookback time.Duration
	HTTPTimeout     time.Duration // per request, retries included; default 80s
	// HTTPTransport carries the requests under the rate limiter and retries;
	// default http.DefaultTransport.
	HTTPTransport http.RoundTripper
}

func (c *Config) defaults() {
	c.APIBase = strings.TrimRight(c.APIBase, "/") // stripe-go appends "/v1/..."
	if c.APIBase == "" {
		c.APIBase = DefaultAPIBase
	}
	if c.Limits.RetryHeader == "" {
		c.Limits.RetryHeader = "Stripe-Should-Retry"
	}
	if c.PageSize <= 0 || c.PageSize > 100 {
		c.PageSize = 100
	}
	if c.EventOverlap <= 0 {
		c.EventOverlap = 5 * time.Minute
	}
	if c.Retention <= 0 {
		c.Retention = EventsRetention - time.Hour
	}
	if c.BalanceLookback <= 0 {
		c.BalanceLookback = time.Hour
	}
	if c.HTTPTimeout <= 0 {
		c.HTTPTimeout = 80 * time.Second
	}
}

// Syncer is the Stripe connector.
type Syncer struct {
	cfg Config
	db  *pgxpool.Pool
	log *slog.Logger
	api *sg.Client
	m   *metrics
	now func() time.Time
}

var _ saas.Connector = (*Syncer)(nil)

// New returns a Syncer writing into db, whose stripe schema must exist
// (schemas.Migrate). reg may be nil.
func New(cfg Config, db *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) (*Syncer, error) {
	cfg.defaults()
	if cfg.APIKey == "" {
		return nil, errors.New("no Stripe API key: set STRIPE_API_KEY or --api-key (a restricted key with read access is enough)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := newMetrics(reg)
	tr := saas.NewTransport(cfg.HTTPTransport, cfg.Limits)
	tr.Observe = func(status int, retry bool) {
		m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
		if retry {
			m.retries.Inc()
		}
	}
	backends := sg.NewBackendsWithConfig(&sg.BackendConfig{
		URL:        sg.String(cfg.APIBase),
		HTTPClient: &http.Client{Timeout: cfg.HTTPTimeout, Transport: tr},
		// Retries happen in the transport, where the rate limiter sees them.
		MaxNetworkRetries: sg.Int64(0),
		LeveledLogger:     leveled{log},
		EnableTelemetry:   sg.Bool(false),
	})
	return &Syncer{
		cfg: cfg,
		db:  db,
		log: log.With("source", "stripe"),
		api: sg.NewClient(cfg.APIKey, sg.WithBackends(backends)),
		m:   m,
		now: time.Now,
	}, nil
}

// Name implements saas.Connector.
func (s *Syncer) Name() string { return "stripe" }

// Sync runs one pass: a full backfill when none has finished or the cursor
// is past the Events API's retention, otherwise an incremental pass. If
// another process is already running a pass on this warehouse, Sync returns
// nil at once.
func (s *Syncer) Sync(ctx context.Context) error {
	// The lock is held on a connection outside the pool (see
	// saas.TryPassLock), so that a long pass cannot starve the pool.
	lock, err := saas.TryPassLock(ctx, s.db, lockKey)
	if err != nil {
		return fmt.Errorf("stripe sync: %w", err)
	}
	if lock == nil {
		s.log.Info("another process is syncing Stripe into this warehouse; skipping this pass")
		return nil
	}
	defer lock.Release()

	err = s.pass(ctx)
	if err != nil && ctx.Err() == nil {
		_, _ = s.db.Exec(context.WithoutCancel(ctx), `INSERT INTO stripe.sync_state AS s (object, last_error, last_error_at)
			VALUES ('events', $1, now())
			ON CONFLICT (object) DO UPDATE SET last_error = $1, last_error_at = now(), updated_at = now()`, err.Error())
	}
	return err
}

func (s *Syncer) pass(ctx context.Context) error {
	st, err := s.eventsState(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	switch {
	case st.Phase == "backfill" && st.BackfillStarted != nil && now.Sub(*st.BackfillStarted) < s.cfg.Retention:
		s.log.Info("resuming the interrupted Stripe backfill", "started", st.BackfillStarted)
		return s.full(ctx, &st)
	case st.BackfillFinished == nil:
		s.log.Info("first Stripe sync: backfilling every object")
		return s.full(ctx, nil)
	case st.SyncedUntil == nil || now.Sub(*st.SyncedUntil) > s.cfg.Retention:
		s.log.Warn("the Stripe events cursor is older than the Events API keeps events; events may have been lost, so running a full resync",
			"synced_until", st.SyncedUntil, "retention", s.cfg.Retention)
		return s.full(ctx, nil)
	default:
		return s.incremental(ctx)
	}
}

// event is the part of a Stripe event herd reads.
type event struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Account string `json:"account"` // set on events of connected accounts
	Type    string `json:"type"`
	Created int64  `json:"created"`
	Data    struct {
		Object json.RawMessage `json:"object"`
	} `json:"data"`
	raw     json.RawMessage
	objKind string
	objID   string
}

func parseEvent(raw []byte) (event, error) {
	var e event
	if err := json.Unmarshal(raw, &e); err != nil {
		return e, fmt.Errorf("parse Stripe event: %w", err)
	}
	if e.ID == "" || e.Object != "event" {
		return e, fmt.Errorf("parse Stripe event: not an event (id %q, object %q)", e.ID, e.Object)
	}
	e.raw = raw
	if len(e.Data.Object) > 0 {
		var o struct {
			ID     string `json:"id"`
			Object string `json:"object"`
		}
		if err := json.Unmarshal(e.Data.Object, &o); err == nil {
			e.objKind, e.objID = o.Object, o.ID
		}
	}
	return e, nil
}

// Webhook implements saas.Connector: it applies one verified event body.
func (s *Syncer) Webhook(ctx context.Context, body []byte) error {
	ev, err := parseEvent(body)
	if err != nil {
		return saas.Permanent(fmt.Errorf("stripe webhook: %w", err))
	}
	_, err = s.applyEvent(ctx, ev, "webhook")
	return err
}

// applyEvent refetches the event's object and writes it, unless the table
// already holds the state of a newer event. It returns what it did: applied,
// stale, ignored or duplicate.
func (s *Syncer) applyEvent(ctx context.Context, ev event, via string) (string, error) {
	outcome, err := s.applyEventOutcome(ctx, ev, via)
	if err != nil {
		return "", fmt.Errorf("apply Stripe event %s (%s on %s %s): %w", ev.ID, ev.Type, ev.objKind, ev.objID, err)
	}
	s.m.events.WithLabelValues(via, outcome).Inc()
	return outcome, nil
}

func (s *Syncer) applyEventOutcome(ctx context.Context, ev event, via string) (string, error) {
	obj := objectByKind(ev.objKind)
	created := time.Unix(ev.Created, 0)
	// A connected account's objects are not this account's: refetching them
	// without its Stripe-Account header would answer 404 and mark them deleted.
	if obj == nil || ev.objID == "" || ev.Account != "" {
		return "ignored", s.recordEvent(ctx, s.db, ev, via, "ignored")
	}
	table := pgx.Identifier{"stripe", obj.Table}.Sanitize()
	var seen bool
	var stored *time.Time
	err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stripe.events WHERE id = $1),
		(SELECT last_event_created FROM `+table+` WHERE id = $2)`, ev.ID, ev.objID).Scan(&seen, &stored)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", table, err)
	}
	if seen {
		return "duplicate", nil
	}
	if stored != nil && stored.After(created) {
		// Checked again under the write's guard; this only saves the API call.
		return "stale", s.recordEvent(ctx, s.db, ev, via, "stale")
	}
	data, err := obj.get(ctx, s.api, ev.objID)
	deleted := false
	switch {
	case errors.Is(err, errNotFound):
		deleted = true
	case err != nil:
		return "", fmt.Errorf("retrieve %s %s from Stripe: %w", obj.Kind, ev.objID, err)
	default:
		deleted = isDeleted(data)
	}
	outcome := "applied"
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var n int64
		var err error
		if deleted {
			// Keep the last state herd saw; the event carries it when herd
			// never saw the object alive.
			n, err = markDeleted(ctx, tx, obj, ev.objID, ev.Data.Object, &created)
		} else {
			n, err = upsert(ctx, tx, obj, ev.objID, data, &created)
		}
		if err != nil {
			return err
		}
		if n == 0 {
			outcome = "stale"
		}
		return s.recordEvent(ctx, tx, ev, via, outcome)
	})
	if err != nil {
		return "", err
	}
	if outcome == "applied" {
		s.m.rows.WithLabelValues(obj.Table).Inc()
	}
	return outcome, nil
}

func (s *Syncer) recordEvent(ctx context.Context, q querier, ev event, via, outcome string) error {
	var kind, id *string
	if ev.objKind != "" {
		kind = &ev.objKind
	}
	if ev.objID != "" {
		id = &ev.objID
	}
	_, err := q.Exec(ctx, `INSERT INTO stripe.events (id, type, created, object_type, object_id, via, outcome, data)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING`,
		ev.ID, ev.Type, time.Unix(ev.Created, 0), kind, id, via, outcome, []byte(ev.raw))
	if err != nil {
		return fmt.Errorf("record event %s in stripe.events: %w", ev.ID, err)
	}
	return nil
}

// isDeleted reports whether Stripe answered with a deletion stub
// ({"id": ..., "deleted": true}), as it does for a deleted customer.
func isDeleted(data []byte) bool {
	var d struct {
		Deleted bool `json:"deleted"`
	}
	return json.Unmarshal(data, &d) == nil && d.Deleted
}

type leveled struct{ log *slog.Logger }

// stripe-go reports failures it also returns as errors; herd logs those
// where it handles them, so the library's own lines are debug output.
func (l leveled) Debugf(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...), "lib", "stripe-go") }
func (l leveled) Infof(f string, v ...any)  { l.log.Debug(fmt.Sprintf(f, v...), "lib", "stripe-go") }
func (l leveled) Warnf(f string, v ...any)  { l.log.Debug(fmt.Sprintf(f, v...), "lib", "stripe-go") }
func (l leveled) Errorf(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...), "lib", "stripe-go") }
