package views

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

func setup(t *testing.T) *pgxpool.Pool {
	t.Helper()
	db := pgtest.Pool(t, pgtest.New(t))
	if _, err := schemas.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

var n int

func insert(t *testing.T, db *pgxpool.Pool, event string, props any) {
	t.Helper()
	n++
	ts := time.Now().UTC().Add(-time.Hour)
	if _, err := db.Exec(context.Background(), "SELECT herd.ensure_partition($1::date)", ts); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(props)
	if _, err := db.Exec(context.Background(), `INSERT INTO herd.events (message_id, source_id, type, event, user_id, "timestamp", received_at, properties)
		VALUES ($1, 1, 'track', $2, 'u', $3, $3, $4)`, fmt.Sprintf("m-%d-%d", time.Now().UnixNano(), n), event, ts, b); err != nil {
		t.Fatal(err)
	}
}

// relations lists every relation outside the system schemas, and a
// checksum of the events, to show what a refresh changed.
func relations(t *testing.T, db *pgxpool.Pool) (map[string]string, string) {
	t.Helper()
	ctx := context.Background()
	rows, _ := db.Query(ctx, `SELECT n.nspname || '.' || c.relname, c.relkind::text || ':' || coalesce(pg_get_viewdef(c.oid), '')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%'`)
	m := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		m[k] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var sum string
	if err := db.QueryRow(ctx, `SELECT count(*) || ':' || md5(string_agg(message_id || coalesce(event, '') || coalesce(properties::text, ''), ',' ORDER BY message_id)) FROM herd.events`).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	return m, sum
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestRefreshHostileNames(t *testing.T) {
	t.Parallel()
	db := setup(t)
	ctx := context.Background()
	long := strings.Repeat("Checkout Step Completed With A Very Long Name ", 5) // > 200 bytes
	names := []string{
		"Signed Up", "signed_up", "signed up!",
		`x"; DROP TABLE herd.events; --`, `x'); DROP TABLE herd.events; --`, `a\'b`,
		"🎉", "🎉🚀", "naïve café",
		long[:200], long[:199] + "X",
		"events", "track_pages", // would shadow nothing: names are prefixed
	}
	props := map[string]any{
		"plan": "pro", "seats": 3, "trial": true, "meta": map[string]any{"a": 1}, "timestamp": "not ours",
		"Plan Type": "x", "🔥": 1, "🔥🔥": 2, `k"; DROP TABLE herd.events; --`: "v", strings.Repeat("k", 200): 1,
	}
	for _, name := range names {
		insert(t, db, name, props)
	}
	insert(t, db, "Signed Up", map[string]any{"plan": nil, "seats": 4, "mixed": "a"})
	insert(t, db, "Signed Up", map[string]any{"mixed": 2})
	beforeRels, beforeSum := relations(t, db)

	res, err := Refresh(ctx, db, Config{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != len(names) || len(res.Failed) != 0 {
		t.Fatalf("refresh: %+v", res)
	}
	afterRels, afterSum := relations(t, db)
	if afterSum != beforeSum {
		t.Errorf("events changed: %s -> %s", beforeSum, afterSum)
	}
	// Nothing but the new views changed: no relation gone or altered.
	var added []string
	for k, v := range afterRels {
		old, ok := beforeRels[k]
		switch {
		case !ok:
			if !strings.HasPrefix(k, "herd.track_") || !strings.HasPrefix(v, "v:") {
				t.Errorf("unexpected new relation %s (%s)", k, v[:1])
			}
			added = append(added, k)
		case old != v:
			t.Errorf("relation %s changed", k)
		}
	}
	for k := range beforeRels {
		if _, ok := afterRels[k]; !ok {
			t.Errorf("relation %s disappeared", k)
		}
	}
	if len(added) != len(names) {
		t.Errorf("%d views added, want %d: %v", len(added), len(names), added)
	}

	// Every event has its own working view with the right rows.
	seen := map[string]string{}
	for _, name := range names {
		var view string
		if err := db.QueryRow(ctx, "SELECT view_name FROM herd.event_views WHERE event = $1", name).Scan(&view); err != nil {
			t.Fatalf("%q: no view recorded: %v", name, err)
		}
		if len(view) > 63 {
			t.Errorf("%q: view name %q longer than 63 bytes", name, view)
		}
		if other, dup := seen[view]; dup {
			t.Errorf("%q and %q share view %s", name, other, view)
		}
		seen[view] = name
		want := 1
		if name == "Signed Up" {
			want = 3
		}
		var got int
		if err := db.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{"herd", view}.Sanitize()).Scan(&got); err != nil {
			t.Errorf("%q: query view %s: %v", name, view, err)
		} else if got != want {
			t.Errorf("%q: view %s has %d rows, want %d", name, view, got, want)
		}
	}
	if testing.Verbose() {
		for v, name := range seen {
			t.Logf("%-70s %q", v, name)
		}
	}
	if v := viewOf(t, db, "Signed Up"); v != "track_signed_up" {
		t.Errorf("Signed Up has view %s, want track_signed_up", v)
	}

	// Typed columns: properties readable without JSON paths.
	types := columnTypes(t, db, viewOf(t, db, "Signed Up"))
	for col, typ := range map[string]string{"plan": "text", "seats": "numeric", "trial": "boolean", "meta": "jsonb",
		"mixed": "text", "prop_timestamp": "text", "timestamp": "timestamp with time zone", "plan_type": "text"} {
		if types[col] != typ {
			t.Errorf("column %s: type %q, want %q (all: %v)", col, types[col], typ, types)
		}
	}
	var seats float64
	var trial bool
	if err := db.QueryRow(ctx, `SELECT sum(seats), bool_or(trial) FROM herd.track_signed_up`).Scan(&seats, &trial); err != nil {
		t.Fatal(err)
	}
	if seats != 7 || !trial {
		t.Errorf("sum(seats) %v bool_or(trial) %v", seats, trial)
	}

	// A second refresh with the same data changes nothing.
	res, err = Refresh(ctx, db, Config{}, quiet())
	if err != nil || res.Unchanged != len(names) || res.Created+res.Replaced != 0 {
		t.Fatalf("second refresh: %+v %v", res, err)
	}
	again, _ := relations(t, db)
	if len(again) != len(afterRels) {
		t.Errorf("second refresh changed the relations")
	}

	// A property changes type: the view is rebuilt, keeping its name.
	insert(t, db, "Signed Up", map[string]any{"trial": "yes", "new_prop": 1})
	res, err = Refresh(ctx, db, Config{}, quiet())
	if err != nil || res.Replaced != 1 || len(res.Failed) != 0 {
		t.Fatalf("refresh after a type change: %+v %v", res, err)
	}
	types = columnTypes(t, db, "track_signed_up")
	if types["trial"] != "text" || types["new_prop"] != "numeric" {
		t.Errorf("after type change: %v", types)
	}
}

func viewOf(t *testing.T, db *pgxpool.Pool, event string) string {
	t.Helper()
	var v string
	if err := db.QueryRow(context.Background(), "SELECT view_name FROM herd.event_views WHERE event = $1", event).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func columnTypes(t *testing.T, db *pgxpool.Pool, view string) map[string]string {
	t.Helper()
	rows, _ := db.Query(context.Background(), `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'herd' AND table_name = $1`, view)
	m := map[string]string{}
	for rows.Next() {
		var c, ty string
		if err := rows.Scan(&c, &ty); err != nil {
			t.Fatal(err)
		}
		m[c] = ty
	}
	if len(m) == 0 {
		t.Fatalf("view %s has no columns", view)
	}
	return m
}

func TestNames(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"Signed Up", "signed_up"},
		{"  --Order   Completed!! ", "order_completed"},
		{`x"; DROP TABLE herd.events; --`, "x_drop_table_herd_events"},
		{"🎉", ""},
		{"naïve café", "na_ve_caf"},
	}
	for _, c := range cases {
		if got := slug(c.in); got != c.want {
			t.Errorf("slug(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	used := map[string]bool{}
	a := unique("track_"+slug(strings.Repeat("a", 100)+"1"), strings.Repeat("a", 100)+"1", used)
	b := unique("track_"+slug(strings.Repeat("a", 100)+"2"), strings.Repeat("a", 100)+"2", used)
	if a == b || len(a) > 63 || len(b) > 63 {
		t.Errorf("long names %q %q", a, b)
	}
}

// insertMany adds n events named name (one per n, with users distinct user
// ids among them) in one statement; name is a format pattern for %s = the
// row number when distinct is set.
func insertMany(t *testing.T, db *pgxpool.Pool, name string, n, users int, distinct bool) {
	t.Helper()
	ctx := context.Background()
	ts := time.Now().UTC().Add(-time.Hour)
	if _, err := db.Exec(ctx, "SELECT herd.ensure_partition($1::date)", ts); err != nil {
		t.Fatal(err)
	}
	ev := "$1::text"
	if distinct {
		ev = "format($1::text, g)"
	}
	if _, err := db.Exec(ctx, `INSERT INTO herd.events (message_id, source_id, type, event, anonymous_id, "timestamp", received_at, properties)
		SELECT md5($1 || g || clock_timestamp()::text), 1, 'track', `+ev+`, 'anon-' || (g % $3), $4, $4, jsonb_build_object('n', g, 'k' || g, true)
		FROM generate_series(1, $2) g`, name, n, users, ts); err != nil {
		t.Fatal(err)
	}
}

// watchLocks reports the most relation locks one session of this database
// held at once while it ran: a refresh's transactions must stay far below
// the lock table the server shares (max_locks_per_transaction x
// max_connections), or every session fails with "out of shared memory".
func watchLocks(t *testing.T, db *pgxpool.Pool) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		peak := 0
		for ctx.Err() == nil {
			var n int
			err := db.QueryRow(ctx, `SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM pg_locks
				WHERE locktype = 'relation' AND pid <> pg_backend_pid()
				AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) GROUP BY pid) l`).Scan(&n)
			if err == nil && n > peak {
				peak = n
			}
			time.Sleep(2 * time.Millisecond)
		}
		done <- peak
	}()
	var peak int
	stopped := false
	stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			peak = <-done
		}
		return peak
	}
	t.Cleanup(func() { stop() })
	return stop
}

func countViews(t *testing.T, db *pgxpool.Pool) (recorded, relations int) {
	t.Helper()
	if err := db.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM herd.event_views),
		(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'herd' AND c.relkind = 'v' AND c.relname LIKE 'track\_%')`).
		Scan(&recorded, &relations); err != nil {
		t.Fatal(err)
	}
	return recorded, relations
}

// TestRefreshBoundsMadeUpNames: event names are client input. A public key
// that sends thousands of made-up names makes at most MaxViews views, in
// transactions that hold a bounded number of locks; the real, frequent
// events keep theirs; names that fall out of the selection lose their view
// unless something depends on it; names no longer seen keep theirs.
func TestRefreshBoundsMadeUpNames(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		madeUp   int
		maxViews int // 0: the default
		want     int // views at most
	}{
		{"10000 names, defaults", 10_000, 0, 200},
		{"600 names, 20 views", 600, 20, 20},
	}
	real := []struct {
		name          string
		events, users int
	}{
		{"Signed Up", 40, 8},
		{"Order Completed", 25, 5},
		{"Page Scrolled", 12, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if testing.Short() && c.madeUp > 1000 {
				t.Skip("short")
			}
			db := setup(t)
			ctx := context.Background()
			for _, r := range real {
				insertMany(t, db, r.name, r.events, r.users, false)
			}
			// One client, a made-up anonymous id per name.
			insertMany(t, db, "made up %s", c.madeUp, c.madeUp+1, true)

			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			stop := watchLocks(t, db)
			res, err := Refresh(ctx, db, Config{MaxViews: c.maxViews, Metrics: m}, quiet())
			peak := stop()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if len(res.Failed) != 0 {
				t.Fatalf("failed views: %v", res.Failed)
			}
			recorded, rels := countViews(t, db)
			if recorded > c.want || rels > c.want || res.Created != rels {
				t.Errorf("%d views recorded, %d exist, %d created; want at most %d", recorded, rels, res.Created, c.want)
			}
			if left := len(real) + c.madeUp - res.Created; res.OverMaxViews != left || res.BelowMinUsers != 0 {
				t.Errorf("left out: %d over max views, %d below min users; want %d and 0", res.OverMaxViews, res.BelowMinUsers, left)
			}
			// About two per view made: a transaction of 50 views holds
			// about 100 (the default lock table has 6,400 entries for
			// every session of the server).
			if bound := 150; peak > bound {
				t.Errorf("a refresh session held %d relation locks at once, want at most %d", peak, bound)
			}
			if v, o := gauge(t, reg, "herd_views_event_views", ""), gauge(t, reg, "herd_views_event_names_without_view", "over_max_views"); v != float64(rels) || o != float64(res.OverMaxViews) {
				t.Errorf("metrics: %v views, %v names over max views; want %d and %d", v, o, rels, res.OverMaxViews)
			}
			t.Logf("%+v; peak relation locks of one session: %d", res, peak)
			for _, r := range real {
				viewOf(t, db, r.name)
			}

			// Something depends on one made-up view; then only names seen
			// from 3 users qualify: the other made-up views go.
			var dependedOn string
			if err := db.QueryRow(ctx, `SELECT view_name FROM herd.event_views WHERE event LIKE 'made up %' ORDER BY view_name LIMIT 1`).Scan(&dependedOn); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(ctx, "CREATE VIEW public.on_top AS SELECT count(*) FROM "+pgx.Identifier{"herd", dependedOn}.Sanitize()); err != nil {
				t.Fatal(err)
			}
			res, err = Refresh(ctx, db, Config{MaxViews: c.maxViews, MinUsers: 3}, quiet())
			if err != nil || len(res.Failed) != 0 {
				t.Fatalf("refresh with a minimum of users: %+v %v", res, err)
			}
			recorded, rels = countViews(t, db)
			if recorded != len(real)+1 || rels != len(real)+1 || len(res.Kept) != 1 || res.Kept[0] != dependedOn {
				t.Errorf("with a minimum of 3 users: %d recorded, %d exist, kept %v; want the %d real ones and %s", recorded, rels, res.Kept, len(real), dependedOn)
			}
			if res.BelowMinUsers != c.madeUp || res.Dropped != c.want-len(real)-1 {
				t.Errorf("with a minimum of 3 users: %d below, %d dropped", res.BelowMinUsers, res.Dropped)
			}
			for _, r := range real {
				var n int
				if err := db.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{"herd", viewOf(t, db, r.name)}.Sanitize()).Scan(&n); err != nil || n != r.events {
					t.Errorf("%s: view has %d rows (%v), want %d", r.name, n, err, r.events)
				}
			}

			// Nothing seen in the window: the views stay as they are.
			res, err = Refresh(ctx, db, Config{MaxViews: c.maxViews, Window: time.Minute}, quiet())
			if err != nil || res.Retained != len(real)+1 || res.Dropped != 0 || res.Created != 0 {
				t.Errorf("refresh of an empty window: %+v %v", res, err)
			}
			if recorded, rels = countViews(t, db); recorded != len(real)+1 || rels != len(real)+1 {
				t.Errorf("after an empty window: %d recorded, %d exist", recorded, rels)
			}
		})
	}
}

// gauge reads a gauge from reg: the one whose label reason is reason, if
// given.
func gauge(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := true
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() != reason {
					match = false
				}
			}
			if match {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s %s", name, reason)
	return 0
}

// TestRefreshCommentsColumns: every column of an event view says what it
// holds, and a view made before views carried comments gets them on the
// next refresh, although its definition is unchanged.
func TestRefreshCommentsColumns(t *testing.T) {
	ctx := context.Background()
	db := setup(t)
	insert(t, db, "Signed Up", map[string]any{"plan": "pro", "seats": 3})
	if _, err := Refresh(ctx, db, Config{}, quiet()); err != nil {
		t.Fatal(err)
	}
	comments := func() map[string]string {
		t.Helper()
		rows, _ := db.Query(ctx, `SELECT a.attname::text, coalesce(col_description(a.attrelid, a.attnum), '')
			FROM pg_attribute a WHERE a.attrelid = 'herd.track_signed_up'::regclass AND a.attnum > 0 AND NOT a.attisdropped`)
		m, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
			var kv [2]string
			return kv, r.Scan(&kv[0], &kv[1])
		})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, kv := range m {
			out[kv[0]] = kv[1]
		}
		return out
	}
	got := comments()
	for col, want := range map[string]string{
		"seats":      "Property seats of the event, read from properties as a number",
		"plan":       "Property plan of the event, read from properties as text",
		"properties": "All properties",
		"timestamp":  "corrected", // herd.events' comment
	} {
		if !strings.Contains(got[col], want) {
			t.Errorf("comment of %s = %q, want it to contain %q", col, got[col], want)
		}
	}
	for col, c := range got {
		if c == "" {
			t.Errorf("column %s has no comment", col)
		}
	}

	// As an older herd left it: no column comments.
	for col := range got {
		if _, err := db.Exec(ctx, "COMMENT ON COLUMN herd.track_signed_up."+pgx.Identifier{col}.Sanitize()+" IS NULL"); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Refresh(ctx, db, Config{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if res.Unchanged != 1 {
		t.Fatalf("second refresh: %+v, want the view unchanged", res)
	}
	for col, c := range comments() {
		if c != got[col] {
			t.Errorf("after refresh, comment of %s = %q, want %q", col, c, got[col])
		}
	}
}
