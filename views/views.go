// Package views maintains one view per track event name (herd.track_signed_up)
// whose columns are the event's top-level properties, typed from recent data,
// so that analysts query properties as columns rather than JSON paths.
package views

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures Refresh. The zero value works.
type Config struct {
	// Window is how far back event names and their properties are read.
	// Default 7 days.
	Window time.Duration
	// MaxColumns bounds the property columns of one view (the most frequent
	// properties are kept). Default 200; Postgres allows 1664 in all.
	MaxColumns int
	// MaxViews bounds the event views there are: the event names with the
	// most events in the window get one. Event names are client input (a
	// public browser key may send any), so this bounds what clients can
	// make herd create. Default 200.
	MaxViews int
	// MinUsers is how many distinct users (user id, else anonymous id) an
	// event name needs in the window before it gets a view. Default 1 (every
	// name may get one); raise it on a public site so that one client's
	// made-up names do not get views.
	MinUsers int
	// Metrics, when set, is updated after each refresh.
	Metrics *Metrics
}

func (c *Config) defaults() {
	if c.Window <= 0 {
		c.Window = 7 * 24 * time.Hour
	}
	if c.MaxColumns <= 0 {
		c.MaxColumns = 200
	}
	if c.MaxViews <= 0 {
		c.MaxViews = 200
	}
	if c.MinUsers <= 0 {
		c.MinUsers = 1
	}
}

// Result says what one Refresh did.
type Result struct {
	Created, Replaced, Unchanged int
	// Dropped counts the views removed: their event name was seen in the
	// window but is no longer selected (below MinUsers, or not among the
	// MaxViews most frequent), or room was needed for selected names.
	Dropped int
	// Retained counts the views of names not seen in the window that were
	// kept as they are (their older data is still there): there was room.
	Retained int
	// BelowMinUsers and OverMaxViews count the event names of the window
	// that have no view, and why.
	BelowMinUsers, OverMaxViews int
	// Kept lists the views that should have been dropped but were kept
	// because something depends on them (an analyst's view, say). They
	// still count against MaxViews.
	Kept []string
	// Failed lists the events whose view could not be made or dropped,
	// with why (a view an analyst built on top blocks a rebuild, for
	// example). The other views are still refreshed.
	Failed map[string]error
}

// Metrics are the Prometheus metrics of Refresh. Create them once
// (NewMetrics registers them) and pass them in Config.
type Metrics struct {
	views   prometheus.Gauge
	without *prometheus.GaugeVec
	failed  prometheus.Gauge
}

// NewMetrics makes the metrics and registers them with reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		views: prometheus.NewGauge(prometheus.GaugeOpts{Name: "herd_views_event_views",
			Help: "Event views (herd.track_<name>) after the last refresh; at most --max-views plus those kept for their dependents."}),
		without: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "herd_views_event_names_without_view",
			Help: "Track event names of the window left without a view by the last refresh: below_min_users or over_max_views (many is a sign of made-up names)."},
			[]string{"reason"}),
		failed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "herd_views_failed_views",
			Help: "Event views the last refresh could not make, rebuild or drop (see the log, or run herd views refresh)."}),
	}
	if reg != nil {
		reg.MustRegister(m.views, m.without, m.failed)
	}
	return m
}

// Column is one property column of an event view.
type Column struct {
	Name     string `json:"name"`     // the column's identifier
	Property string `json:"property"` // the property key it reads
	Type     string `json:"type"`     // numeric, boolean, text or jsonb
}

// baseColumns are the event columns every view has, before the properties.
var baseColumns = []string{
	"message_id", "source_id", "anonymous_id", "user_id", "timestamp", "received_at", "session_id",
	"url", "path", "referrer_host", "referrer_class", "utm_source", "utm_medium", "utm_campaign",
	"ip", "country", "region", "city", "browser", "os", "device_type", "is_bot",
}

// maxIdent is Postgres's identifier limit (NAMEDATALEN - 1), in bytes:
// longer names are silently truncated by the server, so two long names
// would collide there. They are shortened here instead, with a hash.
const maxIdent = 63

// lockKey serialises refreshes (herd up's periodic one and a manual run).
const lockKey = 7_180_224_410

// chunkSize is how many views one transaction makes or drops. Each holds
// locks until commit, and the server's lock table is shared by every
// database and session (max_locks_per_transaction x max_connections
// entries): thousands in one transaction fail with "out of shared memory"
// and make other sessions' transactions fail too.
const chunkSize = 50

// Refresh creates or updates the views of the track event names of the
// window: the MaxViews names with the most events among those seen from at
// least MinUsers users. Views it created earlier are dropped when their name
// is seen in the window but not selected, unless something depends on them
// (then they are kept and listed in Result.Kept); views of names no longer
// seen are kept while there is room (their older data is still there).
// Views are made and dropped in transactions of at most chunkSize each.
// Event and property names are user input: they reach SQL only as quoted
// identifiers derived from them and as quoted literals.
func Refresh(ctx context.Context, db *pgxpool.Pool, cfg Config, log *slog.Logger) (Result, error) {
	cfg.defaults()
	res := Result{Failed: map[string]error{}}
	pc, err := db.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("views: connect: %w", err)
	}
	defer pc.Release()
	conn := pc.Conn()
	var scs string
	if err := conn.QueryRow(ctx, "SHOW standard_conforming_strings").Scan(&scs); err != nil {
		return res, fmt.Errorf("views: read standard_conforming_strings: %w", err)
	}
	if scs != "on" {
		// quoteLiteral relies on it: with it off, a backslash escapes.
		return res, errors.New("views: standard_conforming_strings is off; turn it on (the default since Postgres 9.1)")
	}
	// A session lock, held across the chunk transactions.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return res, fmt.Errorf("views: take lock: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", lockKey); err != nil {
			// Do not hand a connection holding the lock back to the pool.
			_ = conn.Close(context.Background())
		}
	}()
	reg, taken, err := registry(ctx, conn)
	if err != nil {
		return res, err
	}
	sel, err := selectNames(ctx, conn, cfg)
	if err != nil {
		return res, err
	}
	res.BelowMinUsers = sel.below
	res.OverMaxViews = sel.over

	// Which existing views stay: the selected names', then those of names
	// not seen in the window while there is room, newest first.
	selected := map[string]bool{}
	for _, name := range sel.top {
		selected[name] = true
	}
	var unseen, drop []string
	for ev := range reg {
		switch {
		case selected[ev]:
		case sel.seen[ev]:
			drop = append(drop, ev)
		default:
			unseen = append(unseen, ev)
		}
	}
	sort.Slice(unseen, func(i, j int) bool {
		a, b := reg[unseen[i]], reg[unseen[j]]
		if !a.refreshed.Equal(b.refreshed) {
			return a.refreshed.After(b.refreshed)
		}
		return unseen[i] < unseen[j]
	})
	if room := cfg.MaxViews - len(sel.top); len(unseen) > room {
		drop = append(drop, unseen[room:]...)
		unseen = unseen[:room]
	}
	res.Retained = len(unseen)
	sort.Strings(drop)
	err = inChunks(ctx, conn, drop, func(tx pgx.Tx, ev string) {
		kept, err := dropView(ctx, tx, ev, reg[ev].view)
		switch {
		case err != nil:
			res.Failed[ev] = err
			log.Warn("event view not dropped", "event", ev, "view", reg[ev].view, "err", err)
		case kept:
			res.Kept = append(res.Kept, reg[ev].view)
			log.Info("event view kept: something depends on it", "event", ev, "view", reg[ev].view)
		default:
			res.Dropped++
			delete(reg, ev)
		}
	})
	if err != nil {
		return res, err
	}

	// New views only while the total stays within MaxViews (views kept for
	// their dependents take room).
	allowed := cfg.MaxViews - len(reg)
	top := make([]string, 0, len(sel.top))
	for _, name := range sel.top {
		if _, ok := reg[name]; !ok {
			if allowed <= 0 {
				res.OverMaxViews++
				continue
			}
			allowed--
		}
		top = append(top, name)
	}
	events, err := scan(ctx, conn, cfg, top)
	if err != nil {
		return res, err
	}
	names := assignNames(events, reg, taken)
	err = inChunks(ctx, conn, events, func(tx pgx.Tx, ev *eventProps) {
		ev.view = names[ev.name]
		outcome, err := apply(ctx, tx, ev, reg[ev.name])
		switch {
		case err != nil:
			res.Failed[ev.name] = err
			log.Warn("event view not refreshed", "event", ev.name, "view", ev.view, "err", err)
		case outcome == created:
			res.Created++
		case outcome == replaced:
			res.Replaced++
		default:
			res.Unchanged++
		}
	})
	if err != nil {
		return res, err
	}
	if res.BelowMinUsers+res.OverMaxViews > 0 {
		lvl := slog.LevelInfo
		if res.OverMaxViews > 0 {
			lvl = slog.LevelWarn
		}
		log.Log(ctx, lvl, "event names without a view", "below_min_users", res.BelowMinUsers, "over_max_views", res.OverMaxViews,
			"min_users", cfg.MinUsers, "max_views", cfg.MaxViews,
			"hint", "names are client input: many is a sign of made-up names; raise --max-views or --min-users of herd views refresh if real events are left out")
	}
	if m := cfg.Metrics; m != nil {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM herd.event_views").Scan(&n); err == nil {
			m.views.Set(float64(n))
		}
		m.without.WithLabelValues("below_min_users").Set(float64(res.BelowMinUsers))
		m.without.WithLabelValues("over_max_views").Set(float64(res.OverMaxViews))
		m.failed.Set(float64(len(res.Failed)))
	}
	return res, nil
}

// inChunks runs f on items, chunkSize of them per transaction on conn. f
// records its own failures (it works in savepoints); an error here is one of
// the transaction itself.
func inChunks[T any](ctx context.Context, conn *pgx.Conn, items []T, f func(pgx.Tx, T)) error {
	for i := 0; i < len(items); i += chunkSize {
		chunk := items[i:min(i+chunkSize, len(items))]
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for _, it := range chunk {
				f(tx, it)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("views: commit %d views: %w", len(chunk), err)
		}
	}
	return nil
}

// dropView drops an event's view and its record, unless something depends
// on the view (then kept is true and nothing changes).
func dropView(ctx context.Context, tx pgx.Tx, event, view string) (kept bool, err error) {
	ident := pgx.Identifier{"herd", view}.Sanitize()
	err = savepoint(ctx, tx, func(sp pgx.Tx) error {
		if _, err := sp.Exec(ctx, "DROP VIEW IF EXISTS "+ident); err != nil {
			return err
		}
		_, err := sp.Exec(ctx, "DELETE FROM herd.event_views WHERE event = $1", event)
		return err
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "2BP01" { // dependent_objects_still_exist
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("drop view %s: %w", ident, err)
	}
	return false, nil
}

// selection is what selectNames found in the window.
type selection struct {
	top         []string        // the names that get a view, most events first
	seen        map[string]bool // names that have a view and are seen in the window
	below, over int             // names of the window left out, and why
}

// selectNames ranks the track event names of the window in Postgres, so
// that however many names clients sent, only MaxViews of them (and those
// that have a view already) come back.
func selectNames(ctx context.Context, conn *pgx.Conn, cfg Config) (selection, error) {
	sel := selection{seen: map[string]bool{}}
	rows, err := conn.Query(ctx, `
		WITH per AS (
			SELECT event, count(*) AS n, count(DISTINCT coalesce(user_id, anonymous_id)) AS users
			FROM herd.events
			WHERE type = 'track' AND event IS NOT NULL AND "timestamp" > now() - $1::interval
			GROUP BY event
		), ranked AS (
			SELECT event, (users >= $2 OR $2 <= 1) AS eligible,
				row_number() OVER (PARTITION BY (users >= $2 OR $2 <= 1) ORDER BY n DESC, users DESC, event) AS rank
			FROM per
		), stats AS (
			SELECT count(*) FILTER (WHERE NOT (users >= $2 OR $2 <= 1)) AS below,
				count(*) FILTER (WHERE users >= $2 OR $2 <= 1) AS eligible
			FROM per
		)
		SELECT s.below, s.eligible, r.event, r.eligible AND r.rank <= $3
		FROM stats s
		LEFT JOIN ranked r ON (r.eligible AND r.rank <= $3) OR r.event IN (SELECT event FROM herd.event_views)
		ORDER BY r.eligible DESC, r.rank`, cfg.Window, cfg.MinUsers, cfg.MaxViews)
	if err != nil {
		return sel, fmt.Errorf("views: rank track event names of the last %s: %w", cfg.Window, err)
	}
	var eligible int
	for rows.Next() {
		var (
			name *string
			top  *bool
		)
		if err := rows.Scan(&sel.below, &eligible, &name, &top); err != nil {
			return sel, fmt.Errorf("views: rank track event names: %w", err)
		}
		if name == nil {
			continue
		}
		if top != nil && *top {
			sel.top = append(sel.top, *name)
		}
		sel.seen[*name] = true
	}
	if err := rows.Err(); err != nil {
		return sel, fmt.Errorf("views: rank track event names: %w", err)
	}
	sel.over = eligible - len(sel.top)
	return sel, nil
}

type eventProps struct {
	name    string
	view    string
	columns []Column
}

type prop struct {
	key   string
	total int64
	types map[string]int64
}

// scan reads the types of the top-level properties of the named track
// events in the window.
func scan(ctx context.Context, conn *pgx.Conn, cfg Config, names []string) ([]*eventProps, error) {
	if len(names) == 0 {
		return nil, nil
	}
	rows, err := conn.Query(ctx, `
		SELECT e.event, p.key, jsonb_typeof(p.value), count(*)
		FROM herd.events e
		LEFT JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(e.properties) = 'object' THEN e.properties END) p ON true
		WHERE e.type = 'track' AND e.event = ANY($2) AND e."timestamp" > now() - $1::interval
		GROUP BY 1, 2, 3`, cfg.Window, names)
	if err != nil {
		return nil, fmt.Errorf("views: read track events of the last %s: %w", cfg.Window, err)
	}
	byEvent := map[string]map[string]*prop{}
	for rows.Next() {
		var (
			ev       string
			key, typ *string
			n        int64
		)
		if err := rows.Scan(&ev, &key, &typ, &n); err != nil {
			return nil, fmt.Errorf("views: read track events: %w", err)
		}
		ps := byEvent[ev]
		if ps == nil {
			ps = map[string]*prop{}
			byEvent[ev] = ps
		}
		if key == nil {
			continue
		}
		p := ps[*key]
		if p == nil {
			p = &prop{key: *key, types: map[string]int64{}}
			ps[*key] = p
		}
		p.total += n
		if typ != nil && *typ != "null" {
			p.types[*typ] += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("views: read track events: %w", err)
	}
	out := make([]*eventProps, 0, len(byEvent))
	for name, ps := range byEvent {
		out = append(out, &eventProps{name: name, columns: columnsFor(ps, cfg.MaxColumns)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// columnsFor picks and names the property columns: the most frequent keys,
// in key order so that a new property rarely reorders existing columns.
func columnsFor(ps map[string]*prop, max int) []Column {
	list := make([]*prop, 0, len(ps))
	for _, p := range ps {
		list = append(list, p)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].total != list[j].total {
			return list[i].total > list[j].total
		}
		return list[i].key < list[j].key
	})
	if len(list) > max {
		list = list[:max]
	}
	sort.Slice(list, func(i, j int) bool { return list[i].key < list[j].key })
	used := map[string]bool{}
	for _, c := range baseColumns {
		used[c] = true
	}
	used["properties"] = true
	cols := make([]Column, 0, len(list))
	for _, p := range list {
		name := slug(p.key)
		switch {
		case name == "":
			name = "prop_" + hash8(p.key)
		case used[name]:
			// "timestamp" or "url" in properties: keep the event's own column.
			name = "prop_" + name
		}
		name = unique(name, p.key, used)
		used[name] = true
		cols = append(cols, Column{Name: name, Property: p.key, Type: sqlType(p.types)})
	}
	return cols
}

// sqlType is the column type for a property: its JSON type when all non-null
// values agree, text when they do not (->> reads any of them).
func sqlType(types map[string]int64) string {
	if len(types) != 1 {
		return "text"
	}
	for t := range types {
		switch t {
		case "number":
			return "numeric"
		case "boolean":
			return "boolean"
		case "object", "array":
			return "jsonb"
		}
	}
	return "text"
}

// slug turns user input into a lower-case [a-z0-9_] name: readable in psql
// without quotes (they are still quoted in the SQL).
func slug(s string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if under && b.Len() > 0 {
				b.WriteByte('_')
			}
			under = false
			b.WriteRune(r)
			continue
		}
		under = true
	}
	return b.String()
}

func hash8(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}

// unique returns name, or when it is too long or already used, name
// shortened and suffixed with a hash of the original input, which keeps
// distinct inputs distinct.
func unique(name, input string, used map[string]bool) string {
	if len(name) <= maxIdent && !used[name] {
		return name
	}
	suffix := "_" + hash8(input)
	if len(name) > maxIdent-len(suffix) {
		name = name[:maxIdent-len(suffix)]
	}
	return name + suffix
}

// registry reads the views created earlier (event -> view) and every
// relation name in schema herd, which a new view must not take.
func registry(ctx context.Context, conn *pgx.Conn) (map[string]registered, map[string]bool, error) {
	reg := map[string]registered{}
	rows, _ := conn.Query(ctx, `SELECT event, view_name, columns, refreshed_at FROM herd.event_views`)
	for rows.Next() {
		var (
			ev string
			r  registered
		)
		if err := rows.Scan(&ev, &r.view, &r.columns, &r.refreshed); err != nil {
			return nil, nil, fmt.Errorf("views: read herd.event_views: %w", err)
		}
		reg[ev] = r
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("views: read herd.event_views: %w", err)
	}
	taken := map[string]bool{}
	rows, _ = conn.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'herd'`)
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, nil, fmt.Errorf("views: list relations of schema herd: %w", err)
		}
		taken[name] = true
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("views: list relations of schema herd: %w", err)
	}
	return reg, taken, nil
}

type registered struct {
	view      string
	columns   []byte // JSON of []Column
	refreshed time.Time
}

// assignNames gives each event its view name. A name once given is kept, so
// queries written against a view keep working as new events appear. New
// events get "track_" + slug, or that with a hash when it is too long or
// taken (by another event's view or by any other relation in herd).
func assignNames(events []*eventProps, reg map[string]registered, taken map[string]bool) map[string]string {
	names := map[string]string{}
	used := map[string]bool{}
	for n := range taken {
		used[n] = true
	}
	// Every recorded name is reserved, also one whose view is gone: the
	// record's view_name is unique.
	for _, r := range reg {
		used[r.view] = true
	}
	for _, ev := range events {
		if r, ok := reg[ev.name]; ok {
			names[ev.name] = r.view
		}
	}
	// Events are in name order: the same set of names always gets the same
	// assignment.
	for _, ev := range events {
		if _, ok := names[ev.name]; ok {
			continue
		}
		base := "track_" + slug(ev.name)
		if base == "track_" {
			// Nothing readable (emoji, punctuation): the hash is the name.
			base += hash8(ev.name)
		}
		name := unique(base, ev.name, used)
		names[ev.name] = name
		used[name] = true
	}
	return names
}

type outcome int

const (
	unchanged outcome = iota
	created
	replaced
)

// apply creates or replaces one view in a savepoint, so that one failure
// does not undo the others.
func apply(ctx context.Context, tx pgx.Tx, ev *eventProps, prev registered) (outcome, error) {
	cols, err := json.Marshal(ev.columns)
	if err != nil {
		return 0, err
	}
	view := pgx.Identifier{"herd", ev.view}.Sanitize()
	if prev.view == ev.view && jsonEqual(prev.columns, cols) {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", view).Scan(&exists); err != nil {
			return 0, fmt.Errorf("look up %s: %w", view, err)
		}
		if exists {
			// A view made before views carried column comments gets them.
			var missing bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = $1::regclass
				AND a.attnum > 0 AND NOT a.attisdropped AND col_description(a.attrelid, a.attnum) IS NULL)`, view).Scan(&missing); err != nil {
				return 0, fmt.Errorf("look up the comments of %s: %w", view, err)
			}
			if !missing {
				return unchanged, nil
			}
			if err := savepoint(ctx, tx, func(sp pgx.Tx) error { return comment(ctx, sp, view, ev) }); err != nil {
				return 0, fmt.Errorf("comment view %s: %w", view, err)
			}
			return unchanged, nil
		}
	}
	def := viewSQL(ev)
	out := created
	if prev.view != "" {
		out = replaced
	}
	err = savepoint(ctx, tx, func(sp pgx.Tx) error {
		_, err := sp.Exec(ctx, "CREATE OR REPLACE VIEW "+view+" AS "+def)
		return err
	})
	if err != nil {
		// A column removed or retyped: CREATE OR REPLACE only appends.
		// Drop and create, unless something depends on the view (then the
		// drop fails and the old view stays, reported).
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42P16" {
			return 0, fmt.Errorf("create view %s: %w", view, err)
		}
		err = savepoint(ctx, tx, func(sp pgx.Tx) error {
			if _, err := sp.Exec(ctx, "DROP VIEW IF EXISTS "+view); err != nil {
				return err
			}
			_, err := sp.Exec(ctx, "CREATE VIEW "+view+" AS "+def)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("recreate view %s: %w", view, err)
		}
	}
	err = savepoint(ctx, tx, func(sp pgx.Tx) error {
		if err := comment(ctx, sp, view, ev); err != nil {
			return err
		}
		if _, err := sp.Exec(ctx, `INSERT INTO herd.event_views (view_name, event, columns, refreshed_at) VALUES ($1, $2, $3, now())
			ON CONFLICT (event) DO UPDATE SET view_name = excluded.view_name, columns = excluded.columns, refreshed_at = now()`,
			ev.view, ev.name, cols); err != nil {
			return err
		}
		// Analysts read it as they read herd.tracks (a recreated view
		// loses its grants).
		_, err := sp.Exec(ctx, "SELECT herd.grant_event_view($1)", ev.view)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("record view %s: %w", view, err)
	}
	return out, nil
}

// comment describes the view and each of its columns: the event columns
// carry herd.events' comment on the same column, the property columns say
// which property they read and as what.
func comment(ctx context.Context, tx pgx.Tx, view string, ev *eventProps) error {
	stmts := []string{"COMMENT ON VIEW " + view + " IS " + quoteLiteral("track events named "+ev.name+
		" (herd.events where type = 'track'), one column per top-level property; made by herd views refresh")}
	rows, _ := tx.Query(ctx, `SELECT a.attname::text, coalesce(col_description(a.attrelid, a.attnum), '')
		FROM pg_attribute a WHERE a.attrelid = 'herd.events'::regclass AND a.attnum > 0 AND NOT a.attisdropped`)
	events := map[string]string{}
	var name, text string
	if _, err := pgx.ForEachRow(rows, []any{&name, &text}, func() error { events[name] = text; return nil }); err != nil {
		return fmt.Errorf("read the comments of herd.events: %w", err)
	}
	col := func(c, text string) {
		stmts = append(stmts, "COMMENT ON COLUMN "+view+"."+pgx.Identifier{c}.Sanitize()+" IS "+quoteLiteral(text))
	}
	for _, c := range baseColumns {
		text := events[c]
		if text == "" {
			text = "herd.events." + c
		}
		col(c, text)
	}
	for _, c := range ev.columns {
		var as string
		switch c.Type {
		case "numeric":
			as = "as a number (NULL when not a JSON number)"
		case "boolean":
			as = "as a boolean (NULL when not a JSON boolean)"
		case "jsonb":
			as = "as JSON (objects and arrays)"
		default:
			as = "as text"
		}
		col(c.Name, "Property "+c.Property+" of the event, read from properties "+as)
	}
	col("properties", "All properties of the event as sent (JSON), also those without a column")
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func savepoint(ctx context.Context, tx pgx.Tx, f func(pgx.Tx) error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := f(sp); err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	return sp.Commit(ctx)
}

func jsonEqual(a, b []byte) bool {
	var x, y []Column
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil || len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// viewSQL is the view's query. Casts are guarded by jsonb_typeof so that a
// value of another type reads as NULL instead of failing the query.
func viewSQL(ev *eventProps) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, c := range baseColumns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("e." + pgx.Identifier{c}.Sanitize())
	}
	for _, c := range ev.columns {
		key := quoteLiteral(c.Property)
		b.WriteString(",\n\t")
		switch c.Type {
		case "numeric":
			fmt.Fprintf(&b, "CASE WHEN jsonb_typeof(e.properties -> %s) = 'number' THEN (e.properties ->> %s)::numeric END", key, key)
		case "boolean":
			fmt.Fprintf(&b, "CASE WHEN jsonb_typeof(e.properties -> %s) = 'boolean' THEN (e.properties ->> %s)::boolean END", key, key)
		case "jsonb":
			fmt.Fprintf(&b, "e.properties -> %s", key)
		default:
			fmt.Fprintf(&b, "e.properties ->> %s", key)
		}
		b.WriteString(" AS " + pgx.Identifier{c.Name}.Sanitize())
	}
	b.WriteString(",\n\te.properties\nFROM herd.events e\nWHERE e.type = 'track' AND e.event = " + quoteLiteral(ev.name))
	return b.String()
}

// quoteLiteral quotes s as a standard SQL string literal. DDL cannot take
// parameters, so the event name is embedded; with standard_conforming_strings
// on (checked by Refresh) doubling quotes is the whole escaping. Postgres
// text cannot hold NUL, so none can be in s.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
