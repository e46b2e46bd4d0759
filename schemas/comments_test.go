package schemas_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/rollups"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/views"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestEverythingHerdCreatesIsCommented migrates a fresh warehouse, makes
// what herd makes at run time (per-event views, rollups) and fails on any
// table, view or column of herd's schemas, and any rollup, without a
// COMMENT. A migration added later comments its own objects; the failure
// names them (the query is schemas.UncommentedSQL).
func TestEverythingHerdCreatesIsCommented(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := pgtest.Pool(t, pgtest.New(t))
	if _, err := schemas.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// Per-event views: one event with a property of each type.
	insertTrack(t, db, "Signed Up", `{"plan": "pro", "seats": 3, "trial": true, "tags": ["a"]}`)
	insertTrack(t, db, "it's odd", `{"weird key": 1}`)
	res, err := views.Refresh(ctx, db, views.Config{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 2 || len(res.Failed) != 0 {
		t.Fatalf("views refresh: %+v, want 2 views created", res)
	}

	// Rollups: a view and a materialized view, one file with an opening
	// comment and one without.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a_daily.sql"), "-- Events per day.\n-- refresh: 15m\nCREATE MATERIALIZED VIEW rollups.daily AS SELECT \"timestamp\"::date AS day, count(*) AS events FROM herd.events GROUP BY 1;\n")
	writeFile(t, filepath.Join(dir, "b_names.sql"), "CREATE VIEW rollups.names AS SELECT DISTINCT event FROM herd.events;\n")
	cfg := rollups.Config{Dir: dir}
	rs, err := rollups.LoadDir(cfg)
	if err != nil {
		t.Fatal(err)
	}
	results, err := rollups.Apply(ctx, db, quiet, cfg, rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Status != "ok" {
			t.Fatalf("rollup %s: %s %s", r.Name, r.Status, r.Error)
		}
	}

	// Partitions: a daily one made by the writer's function, a coarse one
	// for days before the window, both commented with what they hold.
	if _, err := db.Exec(ctx, "SELECT herd.ensure_partitions(ARRAY['2026-11-20'::date, '2011-03-04'::date], '2026-11-01'::date)"); err != nil {
		t.Fatal(err)
	}
	parts := map[string]string{}
	rows, _ := db.Query(ctx, `SELECT c.relname, coalesce(obj_description(c.oid, 'pg_class'), '') FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'herd.events'::regclass`)
	var name, comment string
	if _, err := pgx.ForEachRow(rows, []any{&name, &comment}, func() error { parts[name] = comment; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(parts) < 3 {
		t.Fatalf("partitions of herd.events: %v, want at least the three made here", parts)
	}
	for part, want := range map[string]string{
		"events_20261120":          "falls on 2026-11-20 (UTC): a daily partition of herd.events",
		"events_20110101_20120101": "from 2011-01-01 to before 2012-01-01 (UTC): a coarse partition",
	} {
		if !strings.Contains(parts[part], want) || !strings.Contains(parts[part], `\d+ herd.events`) {
			t.Errorf("comment of herd.%s = %q, want it to say %q and point to \\d+ herd.events", part, parts[part], want)
		}
	}

	missing, err := schemas.Uncommented(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("%d objects herd creates have no COMMENT (add COMMENT ON TABLE/VIEW/COLUMN/FUNCTION/SEQUENCE in the migration or code that creates them):\n  %s",
			len(missing), strings.Join(missing, "\n  "))
	}

	// The comments say something specific, not just anything.
	for _, c := range []struct{ rel, col, want string }{
		{"herd.events", "timestamp", "corrected"},
		{"herd.events", "country", "MaxMind"},
		{"herd.track_signed_up", "seats", "as a number"},
		{"herd.track_signed_up", "timestamp", "corrected"}, // herd.events' own comment
		{"herd.pages", "referrer_class", "search"},
		{"stripe.invoices", "amount_due", "smallest unit of currency"},
		{"stripe.invoices", "created", "Unix seconds"},
	} {
		var got string
		if err := db.QueryRow(ctx, `SELECT coalesce(col_description($1::regclass, a.attnum), '') FROM pg_attribute a
			WHERE a.attrelid = $1::regclass AND a.attname = $2`, c.rel, c.col).Scan(&got); err != nil {
			t.Fatalf("comment of %s.%s: %v", c.rel, c.col, err)
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("comment of %s.%s = %q, want it to mention %q", c.rel, c.col, got, c.want)
		}
	}
	for rel, want := range map[string]string{
		"rollups.daily":       "Events per day. Rollup applied by herd rollups apply from " + filepath.Join(dir, "a_daily.sql") + ", refreshed every 15m0s by herd up",
		"rollups.names":       "Rollup applied by herd rollups apply from " + filepath.Join(dir, "b_names.sql"),
		"herd.rejects_id_seq": "Next value of herd.rejects.id, given to each new row",
	} {
		var got string
		if err := db.QueryRow(ctx, "SELECT coalesce(obj_description($1::regclass, 'pg_class'), '')", rel).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("comment of %s = %q, want %q", rel, got, want)
		}
	}
}

// TestUncommentedFindsWhatLacksAComment keeps the check honest: a table, a
// column, a view, a partition made by hand (not by herd's function), a
// function, a sequence and a rollup without a comment are each reported.
func TestUncommentedFindsWhatLacksAComment(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Pool(t, pgtest.New(t))
	if _, err := schemas.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`CREATE TABLE herd.probe (a int, b text)`,
		`COMMENT ON TABLE herd.probe IS 'probe'`,
		`COMMENT ON COLUMN herd.probe.a IS 'a'`,
		`CREATE VIEW stripe.probe_view AS SELECT 1 AS one`,
		`ALTER TABLE herd.events ADD COLUMN probe_col text`,
		`CREATE SCHEMA rollups`,
		`CREATE VIEW rollups.probe_rollup AS SELECT 1 AS x`,
		`INSERT INTO herd.rollups (name, schema_name, rel_name, kind, sql, sql_hash, file) VALUES ('rollups.probe_rollup', 'rollups', 'probe_rollup', 'view', '', '', 'x.sql')`,
		`CREATE VIEW rollups.not_a_rollup AS SELECT 1 AS x`,
		`CREATE TABLE herd.events_20300101 PARTITION OF herd.events FOR VALUES FROM ('2030-01-01') TO ('2030-01-02')`,
		`CREATE FUNCTION herd.probe_fn(a int, b text) RETURNS int LANGUAGE sql AS 'SELECT a'`,
		`CREATE FUNCTION stripe.probe_commented() RETURNS int LANGUAGE sql AS 'SELECT 1'`,
		`COMMENT ON FUNCTION stripe.probe_commented() IS 'probe'`,
		`CREATE SEQUENCE herd.probe_seq`,
	} {
		if _, err := db.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	got, err := schemas.Uncommented(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"herd.events.probe_col", "herd.events_20300101", "herd.probe.b", "herd.probe_fn(a integer, b text)", "herd.probe_seq", "rollups.probe_rollup", "stripe.probe_view", "stripe.probe_view.one"}
	if !slices.Equal(got, want) {
		t.Fatalf("Uncommented = %v, want %v", got, want)
	}
}

// TestPartitionsMadeBeforeCommentsGetOne: a warehouse upgraded to 0902
// already holds partitions made without a comment; the migration comments
// them with the days they hold.
func TestPartitionsMadeBeforeCommentsGetOne(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Pool(t, pgtest.New(t))
	if _, err := schemas.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	// Back to before 0902: its helper gone, two partitions made the old way.
	for _, s := range []string{
		`DELETE FROM herd.schema_migrations WHERE version = 902`,
		`DROP FUNCTION herd.partition_comment(timestamptz, timestamptz) CASCADE`,
		`CREATE TABLE herd.events_20261115 PARTITION OF herd.events FOR VALUES FROM ('2026-11-15') TO ('2026-11-16')`,
		`CREATE TABLE herd.events_20200101_20210101 PARTITION OF herd.events FOR VALUES FROM ('2020-01-01') TO ('2021-01-01')`,
	} {
		if _, err := db.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if got, err := schemas.Uncommented(ctx, db); err != nil || !slices.Contains(got, "herd.events_20261115") {
		t.Fatalf("before 0902: Uncommented = %v, %v; want the partition made without a comment", got, err)
	}
	if done, err := schemas.Migrate(ctx, db); err != nil || !slices.Equal(done, []int{902}) {
		t.Fatalf("re-apply 0902: %v, %v", done, err)
	}
	if got, err := schemas.Uncommented(ctx, db); err != nil || len(got) > 0 {
		t.Fatalf("after 0902: Uncommented = %v, %v; want nothing", got, err)
	}
	for part, want := range map[string]string{
		"herd.events_20261115":          "falls on 2026-11-15 (UTC)",
		"herd.events_20200101_20210101": "from 2020-01-01 to before 2021-01-01 (UTC)",
	} {
		var got string
		if err := db.QueryRow(ctx, "SELECT coalesce(obj_description($1::regclass, 'pg_class'), '')", part).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got, want) {
			t.Errorf("comment of %s = %q, want it to say %q", part, got, want)
		}
	}
}

func insertTrack(t *testing.T, db *pgxpool.Pool, event, props string) {
	t.Helper()
	ctx := context.Background()
	ts := time.Now().UTC().Add(-time.Hour)
	if _, err := db.Exec(ctx, "SELECT herd.ensure_partition($1::date)", ts); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO herd.events (message_id, source_id, type, event, user_id, "timestamp", received_at, properties)
		VALUES ($1, 1, 'track', $2, 'u', $3, $3, $4)`, fmt.Sprintf("m-%s", event), event, ts, props); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
