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
