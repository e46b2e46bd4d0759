package analysts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/views"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func migrated(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	db := pgtest.Pool(t, url)
	if _, err := schemas.Migrate(context.Background(), db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db
}

// testGroup is the analysts group of the test using database db: roles
// are server-wide and tests share the server, so each test has its own,
// named after its database.
func testGroup(t *testing.T, db *pgxpool.Pool) string {
	t.Helper()
	var dbname string
	if err := db.QueryRow(context.Background(), "SELECT current_database()").Scan(&dbname); err != nil {
		t.Fatal(err)
	}
	return "grp_" + dbname
}

// addAnalyst adds an analyst with a unique name (roles are server-wide and
// tests share the server) in the test's own group, and drops both when the
// test ends.
func addAnalyst(t *testing.T, db *pgxpool.Pool, prefix string) Analyst {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := prefix + "_" + hex.EncodeToString(b)
	group := testGroup(t, db)
	t.Cleanup(func() { dropRole(t, db, group) }) // after the analyst's own
	a, err := Add(context.Background(), db, quietLog(), Config{Group: group}, name)
	if err != nil {
		t.Fatalf("add analyst %s: %v", name, err)
	}
	t.Cleanup(func() { dropRole(t, db, name) })
	return a
}

func dropRole(t *testing.T, db *pgxpool.Pool, name string) {
	t.Helper()
	ctx := context.Background()
	var exists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil || !exists {
		return
	}
	role := pgx.Identifier{name}.Sanitize()
	if _, err := db.Exec(ctx, "DROP OWNED BY "+role+" CASCADE; DROP ROLE "+role); err != nil {
		t.Errorf("drop test role %s: %v", name, err)
	}
}

// privateCluster starts a private cluster with config for this test.
func privateCluster(t *testing.T, config map[string]string) *pgcluster.Cluster {
	t.Helper()
	return pgtest.Cluster(t, config)
}

func connectAs(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect as analyst: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestValidName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"_bob2", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"Alice", false},
		{"2fast", false},
		{"a-b", false},
		{`x"; DROP ROLE postgres; --`, false},
		{"pg_monitor", false},
		// herd's own roles: another database's analysts group, the
		// retired analysts' role.
		{"herd_analysts_otherdb", false},
		{"herd_retired_analysts_otherdb", false},
		{"herd_anything", false},
		{"herder", true},
		{"herd", false},
		{"postgres", false},
		{"émile", false},
	}
	for _, c := range cases {
		if err := ValidName(c.name); (err == nil) != c.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// Acceptance 3.
func TestAnalystAccess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.New(t)
	db := migrated(t, url)
	alice := addAnalyst(t, db, "alice")
	bob := addAnalyst(t, db, "bob")
	if !strings.Contains(alice.URL, alice.Name+":"+alice.Password+"@") {
		t.Fatalf("connection string %q lacks the role and password", alice.URL)
	}
	bc := connectAs(t, bob.URL)
	if _, err := bc.Exec(ctx, "CREATE TABLE bobs (x int); INSERT INTO bobs VALUES (1)"); err != nil {
		t.Fatalf("bob creates a table in his schema: %v", err)
	}
	ac := connectAs(t, alice.URL)
	// Tables created in app and rollups after alice was added, by herd's own
	// role, are readable through the default privileges.
	if _, err := db.Exec(ctx, `CREATE TABLE app.customers (id int); INSERT INTO app.customers VALUES (7);
		CREATE MATERIALIZED VIEW rollups.later AS SELECT 1 AS one`); err != nil {
		t.Fatal(err)
	}
	// Outside those schemas (where logical replication puts the app's
	// tables) a table granted to the analysts group alone is readable.
	group := pgx.Identifier{testGroup(t, db)}.Sanitize()
	if _, err := db.Exec(ctx, `CREATE SCHEMA elsewhere; CREATE TABLE elsewhere.shared AS SELECT 1 AS one;
		CREATE TABLE elsewhere.private AS SELECT 1 AS one;
		GRANT USAGE ON SCHEMA elsewhere TO `+group+`; GRANT SELECT ON elsewhere.shared TO `+group); err != nil {
		t.Fatal(err)
	}
	bobs := pgx.Identifier{bob.Name, "bobs"}.Sanitize()
	cases := []struct {
		what, sql string
		denied    bool
	}{
		{"create a table in own schema", "CREATE TABLE mine (x int); INSERT INTO mine VALUES (1); SELECT * FROM " + pgx.Identifier{alice.Name, "mine"}.Sanitize(), false},
		{"read herd.events", "SELECT count(*) FROM herd.events", false},
		{"read a view in herd", "SELECT count(*) FROM herd.pages", false},
		{"read an app table created later", "SELECT id FROM app.customers", false},
		{"read a rollup created later", "SELECT one FROM rollups.later", false},
		{"read a table granted to the analysts group only", "SELECT one FROM elsewhere.shared", false},
		{"read a table not granted", "SELECT one FROM elsewhere.private", true},
		{"insert into herd", "INSERT INTO herd.sources (name, write_key) VALUES ('x', 'y')", true},
		{"create a table in herd", "CREATE TABLE herd.mine (x int)", true},
		{"create a table in app", "CREATE TABLE app.mine (x int)", true},
		{"create in another analyst's schema", "CREATE TABLE " + pgx.Identifier{bob.Name, "evil"}.Sanitize() + " (x int)", true},
		{"read another analyst's table", "SELECT * FROM " + bobs, true},
		{"write another analyst's table", "DELETE FROM " + bobs, true},
	}
	for _, c := range cases {
		_, err := ac.Exec(ctx, c.sql)
		var pe *pgconn.PgError
		denied := errors.As(err, &pe) && pe.Code == "42501"
		if denied != c.denied || (err != nil && !denied) {
			t.Errorf("%s: err = %v, want denied=%v", c.what, err, c.denied)
		}
	}
	var timeout string
	if err := ac.QueryRow(ctx, "SHOW statement_timeout").Scan(&timeout); err != nil || timeout != "5min" {
		t.Errorf("analyst statement_timeout = %q, %v; want 5min", timeout, err)
	}

	list, err := List(ctx, db)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	for _, a := range list {
		if !a.RoleExists || (a.Name == bob.Name && a.SchemaBytes == 0) {
			t.Errorf("list entry %+v", a)
		}
	}
	if _, err := Add(ctx, db, quietLog(), Config{}, alice.Name); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("adding alice twice: %v", err)
	}
}

func TestRemove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.New(t)
	db := migrated(t, url)
	keep := addAnalyst(t, db, "keep")
	gone := addAnalyst(t, db, "gone")
	for _, a := range []Analyst{keep, gone} {
		if _, err := connectAs(t, a.URL).Exec(ctx, "CREATE TABLE work AS SELECT 42 AS answer"); err != nil {
			t.Fatal(err)
		}
	}
	if err := Remove(ctx, db, quietLog(), keep.Name, false); err != nil {
		t.Fatalf("remove keeping objects: %v", err)
	}
	var answer int
	if err := db.QueryRow(ctx, "SELECT answer FROM "+pgx.Identifier{keep.Name, "work"}.Sanitize()).Scan(&answer); err != nil || answer != 42 {
		t.Fatalf("kept table: %d %v", answer, err)
	}
	if err := Remove(ctx, db, quietLog(), gone.Name, true); err != nil {
		t.Fatalf("remove dropping objects: %v", err)
	}
	var roles, schemas int
	if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $2)),
		(SELECT count(*) FROM pg_namespace WHERE nspname = $2)`, keep.Name, gone.Name).Scan(&roles, &schemas); err != nil {
		t.Fatal(err)
	}
	if roles != 0 || schemas != 0 {
		t.Fatalf("after remove: %d roles, %d schemas of %s left; want 0", roles, schemas, gone.Name)
	}
	var groupLeft bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1 AND NOT rolcanlogin)", testGroup(t, db)).Scan(&groupLeft); err != nil || !groupLeft {
		t.Fatalf("the analysts group went away with its last member: %v %v", groupLeft, err)
	}
	// A role herd did not create is never dropped.
	if _, err := db.Exec(ctx, "CREATE ROLE "+pgx.Identifier{keep.Name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if err := Remove(ctx, db, quietLog(), keep.Name, true); err == nil || !strings.Contains(err.Error(), "not an analyst added by herd") {
		t.Fatalf("remove of an unknown role: %v", err)
	}
}

func TestUsageExplainsMissingPgStatStatements(t *testing.T) {
	t.Parallel()
	db := migrated(t, pgtest.New(t))
	var preload string
	if err := db.QueryRow(context.Background(), "SHOW shared_preload_libraries").Scan(&preload); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(preload, "pg_stat_statements") {
		t.Skip("the shared test server loads pg_stat_statements")
	}
	u, err := Report(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Queries) != 0 || !strings.Contains(u.Note, "shared_preload_libraries") {
		t.Fatalf("usage without pg_stat_statements: %+v", u)
	}
	if len(u.Schemas) == 0 {
		t.Fatal("no schema sizes")
	}
}

// Acceptance 4, on a private cluster that loads pg_stat_statements and asks
// analysts for their SCRAM password, so the printed connection string is
// checked too.
func TestUsageGrowsWithAnalystWork(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := privateCluster(t, map[string]string{"shared_preload_libraries": "pg_stat_statements"})
	hba := "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(c.Dir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	url := pgtest.NewDB(t, c.URL("postgres"))
	db := migrated(t, url)
	if _, err := db.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	a := addAnalyst(t, db, "carol")

	bad := strings.Replace(a.URL, a.Password, "wrong", 1)
	if c, err := pgx.Connect(ctx, bad); err == nil {
		c.Close(ctx)
		t.Fatal("a wrong password was accepted; pg_hba.conf is not asking for SCRAM")
	}
	ac := connectAs(t, a.URL)

	size := func() (int64, bool) {
		t.Helper()
		u, err := Report(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range u.Schemas {
			if s.Schema == a.Name {
				return s.Bytes, true
			}
		}
		return 0, false
	}
	before, ok := size()
	if !ok {
		t.Fatalf("analyst schema %s missing from usage", a.Name)
	}
	if _, err := ac.Exec(ctx, "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 20000) g"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := ac.Exec(ctx, "SELECT count(*) FROM big WHERE h LIKE 'a%'"); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := size()
	if after <= before || after < 1<<20 {
		t.Fatalf("analyst schema size %d -> %d bytes; want it to grow past 1 MiB", before, after)
	}
	u, err := Report(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if u.Note != "" {
		t.Fatalf("pg_stat_statements is loaded but usage says: %s", u.Note)
	}
	var found bool
	for _, q := range u.Queries {
		if q.Role == a.Name {
			found = true
			if q.Calls < 4 || q.TotalMS <= 0 || q.MeanMS <= 0 {
				t.Fatalf("query time of %s: %+v", a.Name, q)
			}
		}
	}
	if !found {
		t.Fatalf("no query time for %s in %+v", a.Name, u.Queries)
	}
}

// TestAnalystsReadEventViews: the per-event views (herd.track_<name>) hold
// events only; an analyst added before a view is made, and one added after,
// both read it, and so they do after the view is made again.
func TestAnalystsReadEventViews(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := migrated(t, pgtest.New(t))
	if _, err := db.Exec(ctx, `SELECT herd.ensure_partition(current_date);
		INSERT INTO herd.sources (id, name, write_key) VALUES (1, 'web', 'k1');
		INSERT INTO herd.events (message_id, source_id, type, event, user_id, "timestamp", received_at, properties)
		VALUES ('m1', 1, 'track', 'Signed Up', 'u1', now(), now(), '{"plan":"pro"}')`); err != nil {
		t.Fatal(err)
	}
	before := addAnalyst(t, db, "before")
	refresh := func() {
		t.Helper()
		if _, err := views.Refresh(ctx, db, views.Config{}, quietLog()); err != nil {
			t.Fatal(err)
		}
	}
	refresh()
	after := addAnalyst(t, db, "after")
	refresh()
	for _, a := range []Analyst{before, after} {
		var plan string
		if err := connectAs(t, a.URL).QueryRow(ctx, `SELECT plan FROM herd.track_signed_up`).Scan(&plan); err != nil || plan != "pro" {
			t.Errorf("%s reads herd.track_signed_up: %q, %v", a.Name, plan, err)
		}
	}
}
