// Package salesforce keeps Salesforce objects in the warehouse, under the
// salesforce schema: each object's table follows its describe metadata
// (typed columns, new fields added as columns), backfilled through the REST
// query API or Bulk API 2.0, then kept fresh by passes over SystemModstamp
// with deletions followed. It implements saas.Connector.
package salesforce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herdhq/herd/saas"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config.
const (
	DefaultLoginURL   = "https://login.salesforce.com"
	DefaultAPIVersion = "59.0"
)

// DefaultObjects are synced when Config.Objects is empty.
var DefaultObjects = []string{"Account", "Contact", "Lead", "Opportunity", "OpportunityLineItem", "Campaign", "CampaignMember", "Task", "Event", "User"}

// apiVersion is what a REST API version looks like: 59.0.
var apiVersion = regexp.MustCompile(`^[1-9][0-9]{1,2}\.0$`)

// lockKey is the advisory lock held during a pass, so that two herd
// processes on one warehouse do not both spend the org's API requests.
const lockKey int64 = 0x68657264_0230

// Config configures a Syncer. Credentials are required.
type Config struct {
	Credentials Credentials
	// LoginURL is where tokens come from: https://login.salesforce.com,
	// https://test.salesforce.com for a sandbox, or the org's My Domain.
	// Plain http is refused except on a loopback host.
	LoginURL string
	// JWTAudience is the JWT bearer flow's aud: https://login.salesforce.com,
	// https://test.salesforce.com or an Experience Cloud site's URL, never a
	// My Domain. Default: test.salesforce.com when LoginURL is a sandbox's,
	// else login.salesforce.com.
	JWTAudience string
	// InstanceURL is the org's API host; default the instance_url the token
	// endpoint answers with, which must then be a https host under
	// salesforce.com or force.com, the login URL's host, or in AllowedHosts.
	InstanceURL string
	// AllowedHosts are further hosts (host or host:port) an instance_url
	// may name, for an org served under another domain.
	AllowedHosts []string
	APIVersion   string   // default DefaultAPIVersion
	Objects      []string // API names; default DefaultObjects
	// Lookback is how far before synced_until each incremental pass starts
	// again, for records whose SystemModstamp lands late (long
	// transactions); default 5 minutes.
	Lookback time.Duration
	// BulkThreshold: an object with at least this many records is backfilled
	// with a Bulk API 2.0 query job, a smaller one with the REST query API.
	// Default 50000; negative: never bulk.
	BulkThreshold int64
	BatchSize     int           // records per REST query page, 200 to 2000 (Salesforce's range); default 2000
	BulkPageSize  int           // records per Bulk results page; default 10000
	BulkPoll      time.Duration // first wait between bulk job polls; default 2s
	// APIShare is the share of the org's DailyApiRequests that herd may
	// bring the org's use to; a pass stops before that. Default 0.5.
	APIShare float64
	// SessionTTL: tokens older than this are renewed before use. Salesforce
	// sessions end by the org's timeout (15 minutes to 24 hours, 2 hours by
	// default), and an expired one is renewed on its first 401 anyway.
	SessionTTL  time.Duration // default 1 hour
	CheckSample int           // records per object compared by Check; default 10000
	Limits      saas.Limits
	HTTPTimeout time.Duration // per request, retries included; default 2 minutes
	// HTTPTransport carries the requests under the rate limiter and retries;
	// default http.DefaultTransport.
	HTTPTransport http.RoundTripper
}

func (c *Config) defaults() {
	c.LoginURL = strings.TrimRight(c.LoginURL, "/")
	if c.LoginURL == "" {
		c.LoginURL = DefaultLoginURL
	}
	c.InstanceURL = strings.TrimRight(c.InstanceURL, "/")
	c.APIVersion = strings.TrimPrefix(c.APIVersion, "v")
	if c.APIVersion == "" {
		c.APIVersion = DefaultAPIVersion
	}
	if len(c.Objects) == 0 {
		c.Objects = DefaultObjects
	}
	if c.Lookback <= 0 {
		c.Lookback = 5 * time.Minute
	}
	if c.BulkThreshold == 0 {
		c.BulkThreshold = 50000
	}
	if c.BatchSize <= 0 || c.BatchSize > 2000 {
		c.BatchSize = 2000
	}
	if c.BulkPageSize <= 0 {
		c.BulkPageSize = 10000
	}
	if c.BulkPoll <= 0 {
		c.BulkPoll = 2 * time.Second
	}
	if c.APIShare == 0 {
		c.APIShare = 0.5
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = time.Hour
	}
	if c.CheckSample <= 0 {
		c.CheckSample = 10000
	}
	if c.HTTPTimeout <= 0 {
		c.HTTPTimeout = 2 * time.Minute
	}
}

// Syncer is the Salesforce connector.
type Syncer struct {
	cfg    Config
	db     *pgxpool.Pool
	log    *slog.Logger // with source=salesforce
	plog   *slog.Logger // for saas.Progress, which adds the source itself
	api    *client
	budget *budget
	m      *metrics
	fresh  *saas.Freshness
	now    func() time.Time

	skipMu  sync.Mutex
	skipped map[string]string // object → the skipped fields last logged
}

// warnSkipped says whether the skipped fields of object are news: each
// list is logged once per process.
func (s *Syncer) warnSkipped(object string, fields []string) bool {
	key := strings.Join(fields, "\x00")
	s.skipMu.Lock()
	defer s.skipMu.Unlock()
	if s.skipped == nil {
		s.skipped = map[string]string{}
	}
	if s.skipped[object] == key {
		return false
	}
	s.skipped[object] = key
	return true
}

var _ saas.Connector = (*Syncer)(nil)

// New returns a Syncer writing into db, whose salesforce schema must exist
// (schemas.Migrate). reg may be nil.
func New(cfg Config, db *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) (*Syncer, error) {
	cfg.defaults()
	if m := cfg.Credentials.Missing(); m != "" {
		return nil, fmt.Errorf("no Salesforce credentials: set %s", m)
	}
	for _, o := range cfg.Objects {
		if !apiName.MatchString(o) {
			return nil, fmt.Errorf("%q is not a Salesforce object API name (letters, digits and _, such as Account or Invoice__c)", o)
		}
	}
	if !apiVersion.MatchString(cfg.APIVersion) {
		return nil, fmt.Errorf("Salesforce API version %.40q: want a version such as %s", cfg.APIVersion, DefaultAPIVersion)
	}
	if !(cfg.APIShare > 0 && cfg.APIShare <= 1) { // NaN included
		return nil, fmt.Errorf("Salesforce API share %v: want a fraction of the org's daily requests above 0 and at most 1, such as 0.5", cfg.APIShare)
	}
	if _, err := checkURL("Salesforce login URL", cfg.LoginURL); err != nil {
		return nil, err
	}
	if cfg.InstanceURL != "" {
		if _, err := checkURL("Salesforce instance URL", cfg.InstanceURL); err != nil {
			return nil, err
		}
	}
	if cfg.JWTAudience == "" {
		cfg.JWTAudience = jwtAudience(cfg.LoginURL)
	} else if _, err := url.Parse(cfg.JWTAudience); err != nil || !strings.HasPrefix(cfg.JWTAudience, "https://") {
		return nil, fmt.Errorf("Salesforce JWT audience %.200q: want https://login.salesforce.com, https://test.salesforce.com or a community URL", cfg.JWTAudience)
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
	hc := &http.Client{Timeout: cfg.HTTPTimeout, Transport: tr}
	b := &budget{share: cfg.APIShare}
	s := &Syncer{cfg: cfg, db: db, log: log.With("source", "salesforce"), plog: log, budget: b, m: m, fresh: saas.NewFreshness(reg, "salesforce"), now: time.Now}
	tok := &tokens{creds: cfg.Credentials, loginURL: cfg.LoginURL, audience: cfg.JWTAudience, instance: cfg.InstanceURL,
		instanceOK: instanceChecker(cfg.LoginURL, cfg.InstanceURL, cfg.AllowedHosts), ttl: cfg.SessionTTL, http: hc,
		now: func() time.Time { return s.now() }, renewed: m.tokens.Inc}
	s.api = &client{http: hc, tokens: tok, version: cfg.APIVersion, budget: b}
	m.apiUsed = b
	return s, nil
}

// Name implements saas.Connector.
func (s *Syncer) Name() string { return "salesforce" }

// Webhook implements saas.Connector. Salesforce's outbound messages and
// change data capture are not accepted: passes every interval keep the
// tables minutes fresh.
func (s *Syncer) Webhook(context.Context, []byte) error {
	return saas.Permanent(errors.New("herd accepts no Salesforce webhooks; herd sync salesforce polls instead"))
}

// Sync runs one pass over every configured object. If another process is
// already running a pass on this warehouse, Sync returns nil at once.
func (s *Syncer) Sync(ctx context.Context) error {
	// The lock is held on a connection outside the pool (see
	// saas.TryPassLock), so that a long pass cannot starve the pool.
	lock, err := saas.TryPassLock(ctx, s.db, lockKey)
	if err != nil {
		return fmt.Errorf("salesforce sync: %w", err)
	}
	if lock == nil {
		s.log.Info("another process is syncing Salesforce into this warehouse; skipping this pass")
		return nil
	}
	defer lock.Release()
	return s.pass(ctx)
}

func (s *Syncer) pass(ctx context.Context) error {
	max, remaining, err := s.api.limits(ctx)
	if err != nil {
		return fmt.Errorf("salesforce: read the org's API limits: %w", err)
	}
	s.budget.set(max, remaining)
	var errs []error
	for _, obj := range s.cfg.Objects {
		err := s.syncObject(ctx, obj)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return err
		}
		s.recordError(ctx, obj, err)
		errs = append(errs, err)
		if errors.Is(err, ErrAPIShare) {
			s.log.Warn("stopping the Salesforce pass before it uses more than its share of the org's daily API requests", "object", obj, "err", err)
			break
		}
		s.log.Error("Salesforce object failed; going on with the others", "object", obj, "err", err)
	}
	if err := s.forgetRemoved(ctx); err != nil {
		errs = append(errs, err)
	}
	var oldest *time.Time
	if err := s.db.QueryRow(ctx, `SELECT CASE WHEN count(synced_until) = $2 THEN min(synced_until) END
		FROM salesforce.sync_state WHERE object = ANY($1)`, s.cfg.Objects, len(s.cfg.Objects)).Scan(&oldest); err != nil {
		errs = append(errs, fmt.Errorf("read salesforce.sync_state: %w", err))
	} else if oldest != nil {
		s.fresh.SyncedUntil(*oldest)
	}
	if len(errs) == 0 {
		s.m.lastSuccess.SetToCurrentTime()
	}
	return errors.Join(errs...)
}

// forgetRemoved deletes the sync_state rows of objects no longer
// configured, so that herd status stops showing them lagging; their
// tables stay. Configured again, an object is backfilled anew.
func (s *Syncer) forgetRemoved(ctx context.Context) error {
	rows, err := s.db.Query(ctx, `DELETE FROM salesforce.sync_state WHERE object <> ALL($1) RETURNING object`, s.cfg.Objects)
	if err != nil {
		return fmt.Errorf("forget objects no longer configured in salesforce.sync_state: %w", err)
	}
	removed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("forget objects no longer configured in salesforce.sync_state: %w", err)
	}
	if len(removed) > 0 {
		s.log.Info("Salesforce objects no longer configured: no longer synced or shown by herd status (their tables stay)", "objects", removed)
	}
	return nil
}

func (s *Syncer) recordError(ctx context.Context, object string, err error) {
	_ = s.setState(context.WithoutCancel(ctx), object, map[string]any{"last_error": err.Error(), "last_error_at": s.now()})
}

// syncObject brings one object up to date: its table from describe, then a
// backfill (first time, or to fill columns of new fields) or an incremental
// pass.
func (s *Syncer) syncObject(ctx context.Context, object string) error {
	d, err := s.api.describe(ctx, object)
	if err != nil {
		return fmt.Errorf("describe %s: %w", object, err)
	}
	if !d.Queryable {
		return fmt.Errorf("Salesforce says %s cannot be queried by this user: grant read access to it, or leave it out of --salesforce-objects", object)
	}
	d.Name = object // the name herd was configured with keys everything
	o, err := ensureTable(ctx, s.db, d, false)
	if err != nil {
		return err
	}
	if !o.HasModst {
		return fmt.Errorf("Salesforce %s has no SystemModstamp field, which herd follows changes by: leave it out of --salesforce-objects", object)
	}
	if len(o.Skipped) > 0 && s.warnSkipped(object, o.Skipped) {
		s.log.Warn("Salesforce fields not synced: their names are not API names herd puts in a query (herd sync salesforce check lists them)",
			"object", object, "fields", o.Skipped)
	}
	for _, msg := range o.Drift {
		s.log.Warn("Salesforce field type changed", "object", object, "resolve", msg)
	}
	if o.Created {
		s.log.Info("created table for Salesforce object", "object", object, "table", o.qualified(), "columns", len(o.Columns))
	}
	st, err := s.state(ctx, object)
	if err != nil {
		return err
	}
	until := s.now().UTC().Truncate(time.Second) // Salesforce keeps datetimes to the second
	refetch := len(o.Added) > 0 && st.Phase == "incremental"
	if refetch {
		names := make([]string, len(o.Added))
		for i, c := range o.Added {
			names[i] = c.Field
		}
		s.log.Info("new Salesforce fields: added their columns and re-reading the object to fill them", "object", object, "fields", names)
	}
	if st.Phase != "incremental" || refetch {
		err = s.backfill(ctx, o, st, until, refetch)
	} else {
		err = s.incremental(ctx, o, st, until)
	}
	if err != nil {
		return err
	}
	done := map[string]any{"last_success_at": s.now(), "last_error": nil, "last_error_at": nil}
	if len(o.Drift) > 0 {
		done["last_error"], done["last_error_at"] = strings.Join(o.Drift, "\n"), s.now()
	}
	return s.setState(ctx, object, done)
}
