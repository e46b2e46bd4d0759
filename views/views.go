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
)

// Config configures Refresh. The zero value works.
type Config struct {
	// Window is how far back event names and their properties are read.
	// Default 7 days.
	Window time.Duration
	// MaxColumns bounds the property columns of one view (the most frequent
	// properties are kept). Default 200; Postgres allows 1664 in all.
	MaxColumns int
}

func (c *Config) defaults() {
	if c.Window <= 0 {
		c.Window = 7 * 24 * time.Hour
	}
	if c.MaxColumns <= 0 {
		c.MaxColumns = 200
	}
}

// Result says what one Refresh did.
type Result struct {
	Created, Replaced, Unchanged int
	// Failed lists the events whose view could not be made, with why (a view
	// an analyst built on top blocks a drop, for example). The other views
	// are still refreshed.
	Failed map[string]error
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

// Refresh creates or updates the view of every track event name seen in the
// window. Views it created earlier for names no longer seen are kept: their
// older data is still there. Event and property names are user input: they
// reach SQL only as quoted identifiers derived from them and as quoted
// literals.
func Refresh(ctx context.Context, db *pgxpool.Pool, cfg Config, log *slog.Logger) (Result, error) {
	cfg.defaults()
	res := Result{Failed: map[string]error{}}
	var scs string
	if err := db.QueryRow(ctx, "SHOW standard_conforming_strings").Scan(&scs); err != nil {
		return res, fmt.Errorf("views: read standard_conforming_strings: %w", err)
	}
	if scs != "on" {
		// quoteLiteral relies on it: with it off, a backslash escapes.
		return res, errors.New("views: standard_conforming_strings is off; turn it on (the default since Postgres 9.1)")
	}
	events, err := scan(ctx, db, cfg)
	if err != nil {
		return res, err
	}
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey); err != nil {
			return fmt.Errorf("views: take lock: %w", err)
		}
		reg, taken, err := registry(ctx, tx)
		if err != nil {
			return err
		}
		names := assignNames(events, reg, taken)
		for _, ev := range events {
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
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	return res, nil
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

// scan reads the track event names of the window and the types of their
// top-level properties.
func scan(ctx context.Context, db *pgxpool.Pool, cfg Config) ([]*eventProps, error) {
	rows, err := db.Query(ctx, `
		SELECT e.event, p.key, jsonb_typeof(p.value), count(*)
		FROM herd.events e
		LEFT JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(e.properties) = 'object' THEN e.properties END) p ON true
		WHERE e.type = 'track' AND e.event IS NOT NULL AND e."timestamp" > now() - $1::interval
		GROUP BY 1, 2, 3`, cfg.Window)
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
func registry(ctx context.Context, tx pgx.Tx) (map[string]registered, map[string]bool, error) {
	reg := map[string]registered{}
	rows, _ := tx.Query(ctx, `SELECT event, view_name, columns FROM herd.event_views`)
	for rows.Next() {
		var (
			ev string
			r  registered
		)
		if err := rows.Scan(&ev, &r.view, &r.columns); err != nil {
			return nil, nil, fmt.Errorf("views: read herd.event_views: %w", err)
		}
		reg[ev] = r
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("views: read herd.event_views: %w", err)
	}
	taken := map[string]bool{}
	rows, _ = tx.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'herd'`)
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
	view    string
	columns []byte // JSON of []Column
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
	for _, ev := range events {
		if r, ok := reg[ev.name]; ok {
			names[ev.name] = r.view
			used[r.view] = true
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
		if _, err := sp.Exec(ctx, "COMMENT ON VIEW "+view+" IS "+quoteLiteral("track events named "+ev.name)); err != nil {
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
