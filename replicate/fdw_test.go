package replicate

import (
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// viewDefs reads the definitions of views with every name qualified.
func viewDefs(t *testing.T, pool *pgxpool.Pool, views ...string) map[string]string {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET search_path = pg_catalog"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET search_path") //nolint:errcheck
	out := map[string]string{}
	for _, v := range views {
		var def string
		if err := conn.QueryRow(ctx, "SELECT pg_get_viewdef($1::regclass)", v).Scan(&def); err != nil {
			t.Fatalf("definition of %s: %v", v, err)
		}
		out[v] = def
	}
	return out
}

// Acceptance 5: in FDW mode a chain of three views over a foreign table
// survives a migration of the source after Refresh, with the same
// definitions, owner grants and comments. The source is the machine's
// server, whose wal_level (replica) could not publish.
func TestFDWRefreshViewChain(t *testing.T) {
	t.Parallel()
	srcURL := pgtest.New(t)
	src := pgtest.Pool(t, srcURL)
	wh := pgtest.Pool(t, newDB(t, warehouseCluster(t)))
	ctx := ctxT(t, time.Minute)
	exec(t, src, `CREATE TABLE customers (id int PRIMARY KEY, name text, country text, spend numeric);
		INSERT INTO customers SELECT g, 'c' || g, CASE WHEN g % 2 = 0 THEN 'DE' ELSE 'FR' END, g FROM generate_series(1, 10) g`)
	group := uniqueGroup()
	if err := Add(ctx, wh, Config{SourceURL: srcURL, Tables: []string{"customers"}, Mode: ModeFDW, IntoSchema: "app_fdw", AnalystsGroup: group}); err != nil {
		t.Fatalf("add fdw: %v", err)
	}
	// An analyst (a non-superuser in the group) reads the foreign table
	// through the user mapping for PUBLIC.
	if n, err := countAs(t, wh, group, "app_fdw.customers"); err != nil || n != 10 {
		t.Fatalf("a member of the analysts group reads %d rows of app_fdw.customers: %v; want 10", n, err)
	}
	if _, err := countAs(t, wh, "", "app_fdw.customers"); err == nil {
		t.Error("a role outside the analysts group reads app_fdw.customers")
	}
	exec(t, wh, `CREATE SCHEMA reports;
		CREATE ROLE herd_test_reader;
		CREATE VIEW reports.v1 AS SELECT id, name, country, spend FROM app_fdw.customers WHERE spend > 0;
		CREATE VIEW reports.v2 AS SELECT country, sum(spend) AS total, count(*) AS n FROM reports.v1 GROUP BY country;
		CREATE VIEW reports.v3 WITH (security_barrier = true) AS SELECT country, total FROM reports.v2 WHERE total > 20;
		COMMENT ON VIEW reports.v2 IS 'spend per country';
		GRANT SELECT ON reports.v3 TO herd_test_reader;`)
	views := []string{"reports.v1", "reports.v2", "reports.v3"}
	before := viewDefs(t, wh, views...)

	// The app deploys a migration: a new column, and a wider type.
	exec(t, src, `ALTER TABLE customers ADD COLUMN email text;
		ALTER TABLE customers ALTER COLUMN spend TYPE numeric(12,2);
		UPDATE customers SET email = name || '@example.com'`)
	if _, err := wh.Exec(ctx, "SELECT email FROM app_fdw.customers"); err == nil {
		t.Fatal("the foreign table shows the new column before refresh; the test proves nothing")
	}
	res, err := RefreshWith(ctx, wh, RefreshConfig{AnalystsGroup: group})
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if n, err := countAs(t, wh, group, "app_fdw.customers WHERE email IS NOT NULL"); err != nil || n != 10 {
		t.Errorf("after refresh a member of the analysts group reads %d rows of app_fdw.customers: %v; want 10", n, err)
	}
	if strings.Join(res.Views, ",") != `reports.v1,reports.v2,reports.v3` || res.ForeignTables != 1 {
		t.Errorf("refresh recreated %v over %d foreign tables, want v1,v2,v3 in order over 1", res.Views, res.ForeignTables)
	}
	after := viewDefs(t, wh, views...)
	for _, v := range views {
		if before[v] != after[v] {
			t.Errorf("%s changed:\nbefore: %s\nafter:  %s", v, before[v], after[v])
		}
	}
	if n := queryInt(t, wh, "SELECT count(*) FROM app_fdw.customers WHERE email LIKE '%@example.com'"); n != 10 {
		t.Errorf("%d rows with the new column through the foreign table, want 10", n)
	}
	if n := queryInt(t, wh, "SELECT count(*) FROM reports.v3"); n != 2 {
		t.Errorf("reports.v3 has %d rows, want 2", n)
	}
	if n := queryInt(t, wh, `SELECT count(*) FROM pg_class WHERE oid = 'reports.v3'::regclass
		AND has_table_privilege('herd_test_reader', oid, 'SELECT') AND reloptions @> '{security_barrier=true}'`); n != 1 {
		t.Error("reports.v3 lost its grant or its security_barrier option")
	}
	if n := queryInt(t, wh, "SELECT count(*) FROM pg_description WHERE objoid = 'reports.v2'::regclass AND description = 'spend per country'"); n != 1 {
		t.Error("reports.v2 lost its comment")
	}

	// A migration that breaks a view: refresh fails as a whole and leaves
	// the old foreign table and views in place.
	exec(t, src, "ALTER TABLE customers RENAME COLUMN country TO country_code")
	if _, err := Refresh(ctx, wh, "", nil); err == nil || !strings.Contains(err.Error(), "reports.v1") {
		t.Errorf("refresh after renaming a used column: err = %v, want a failure naming reports.v1", err)
	}
	if got := viewDefs(t, wh, views...); got["reports.v3"] != before["reports.v3"] || got["reports.v1"] != before["reports.v1"] {
		t.Error("a failed refresh changed the views")
	}
}
