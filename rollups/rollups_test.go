package rollups

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// warehouse returns a migrated fresh database.
func warehouse(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	url := pgtest.New(t)
	db := pgtest.Pool(t, url)
	if _, err := schemas.Migrate(context.Background(), db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db, url
}

func exec(t *testing.T, db *pgxpool.Pool, sql string) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// writeDir writes files (name -> SQL) into a fresh directory.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, sql := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func applyDir(t *testing.T, db *pgxpool.Pool, dir string) map[string]Result {
	t.Helper()
	cfg := Config{Dir: dir}
	rs, err := LoadDir(cfg)
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	res, err := Apply(context.Background(), db, quietLog(), cfg, rs)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return byName(res)
}

func byName(res []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range res {
		m[r.Name] = r
	}
	return m
}

func names(res []Result) []string {
	var out []string
	for _, r := range res {
		out = append(out, r.Name)
	}
	return out
}

func TestParse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, sql string
		want      Rollup
		wantErr   string
	}{
		{"materialized with header", "-- daily signups\n-- refresh: 15m\nCREATE MATERIALIZED VIEW daily AS SELECT 1;",
			Rollup{Name: "rollups.daily", Schema: "rollups", Relname: "daily", Kind: Materialized, Every: 15 * time.Minute}, ""},
		{"days and qualified", "-- refresh every 2d\ncreate materialized view Reports.Weekly as select 1",
			Rollup{Name: "reports.weekly", Schema: "reports", Relname: "weekly", Kind: Materialized, Every: 48 * time.Hour}, ""},
		{"default interval", "CREATE MATERIALIZED VIEW IF NOT EXISTS m AS SELECT 1",
			Rollup{Name: "rollups.m", Schema: "rollups", Relname: "m", Kind: Materialized, Every: time.Hour}, ""},
		{"view ignores interval", "-- refresh: 5m\nCREATE OR REPLACE VIEW \"Mixed Case\" AS SELECT 1",
			Rollup{Name: "rollups.Mixed Case", Schema: "rollups", Relname: "Mixed Case", Kind: View}, ""},
		{"not a view", "CREATE TABLE t (id int)", Rollup{}, "must start with CREATE VIEW"},
		{"bad interval", "-- refresh: soon\nCREATE VIEW v AS SELECT 1", Rollup{}, "refresh header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse("f.sql", c.sql, Config{})
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.SQL, got.File = "", ""
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestOrderReadsReferencesNotCommentsOrStrings(t *testing.T) {
	t.Parallel()
	mk := func(sql string) Rollup {
		r, err := Parse("x.sql", sql, Config{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	rs := []Rollup{
		mk("CREATE VIEW c AS SELECT * FROM rollups.b -- not a: a\n/* nor a /* nested a */ */ WHERE 'a' <> $$a$$"),
		mk("CREATE VIEW b AS SELECT * FROM a JOIN \"public\".p ON true"),
		mk("CREATE VIEW a AS SELECT 1"),
		mk("CREATE VIEW public.p AS SELECT 1"),
	}
	got, err := Order(rs, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"public.p", "rollups.a", "rollups.b", "rollups.c"}; !reflect.DeepEqual(namesOf(got), want) {
		t.Fatalf("order %v, want %v", namesOf(got), want)
	}
	if want := []string{"public.p", "rollups.a"}; !reflect.DeepEqual(got[2].Deps, want) {
		t.Fatalf("b deps %v, want %v", got[2].Deps, want)
	}
	if want := []string{"rollups.b"}; !reflect.DeepEqual(got[3].Deps, want) {
		t.Fatalf("c deps %v, want %v (comments and strings must not count)", got[3].Deps, want)
	}
}

func namesOf(rs []Rollup) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestCycleIsRefused(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{
		"x.sql": "CREATE VIEW x AS SELECT * FROM y",
		"y.sql": "CREATE VIEW y AS SELECT * FROM z",
		"z.sql": "CREATE VIEW z AS SELECT * FROM x",
	})
	_, err := LoadDir(Config{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "cycle: rollups.x -> rollups.y -> rollups.z -> rollups.x") {
		t.Fatalf("err = %v, want the cycle named", err)
	}
}

// Acceptance 1: C reads B reads A; a failing A skips B and C with the
// reason, an independent rollup still runs.
func TestDependencyOrderAndFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := warehouse(t)
	exec(t, db, "CREATE TABLE public.src (id int PRIMARY KEY, v int); INSERT INTO src SELECT g, g FROM generate_series(1, 10) g")
	// File names sort opposite to the dependency order on purpose. A fails
	// with division by zero once src is empty.
	files := map[string]string{
		"1_c.sql": "-- refresh: 1h\nCREATE MATERIALIZED VIEW rollups.c AS SELECT count(*) AS n, sum(v2) AS total FROM rollups.b;",
		"2_b.sql": "-- refresh: 1h\nCREATE MATERIALIZED VIEW b AS SELECT id, v * 2 AS v2 FROM a;\nCREATE UNIQUE INDEX ON b (id);",
		"3_a.sql": "-- refresh: 1h\nCREATE MATERIALIZED VIEW a AS SELECT s.id, s.v FROM (SELECT 1 / count(*) AS guard FROM src) g JOIN src s ON g.guard IS NOT NULL;",
		"4_d.sql": "-- refresh: 1h\nCREATE MATERIALIZED VIEW d AS SELECT count(*) AS n FROM src;",
	}
	dir := writeDir(t, files)
	rs, err := LoadDir(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, r := range rs {
		pos[r.Name] = i
	}
	if !(pos["rollups.a"] < pos["rollups.b"] && pos["rollups.b"] < pos["rollups.c"]) {
		t.Fatalf("apply order %v: want a before b before c", namesOf(rs))
	}
	res := applyDir(t, db, dir)
	for _, n := range []string{"rollups.a", "rollups.b", "rollups.c", "rollups.d"} {
		if res[n].Status != "ok" {
			t.Fatalf("apply %s: %+v", n, res[n])
		}
	}
	var total int
	if err := db.QueryRow(ctx, "SELECT total FROM rollups.c").Scan(&total); err != nil || total != 110 {
		t.Fatalf("rollups.c total = %d, %v; want 110", total, err)
	}

	// Refresh everything: in dependency order, and the new data arrives.
	exec(t, db, "INSERT INTO src VALUES (11, 11)")
	got, err := Refresh(ctx, db, quietLog(), Config{}, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	order := names(got)
	idx := func(n string) int {
		for i, x := range order {
			if x == n {
				return i
			}
		}
		t.Fatalf("%s not refreshed: %v", n, order)
		return -1
	}
	if !(idx("rollups.a") < idx("rollups.b") && idx("rollups.b") < idx("rollups.c")) {
		t.Fatalf("refresh order %v", order)
	}
	if err := db.QueryRow(ctx, "SELECT total FROM rollups.c").Scan(&total); err != nil || total != 132 {
		t.Fatalf("after refresh rollups.c total = %d, %v; want 132", total, err)
	}
	if r := byName(got)["rollups.b"]; !r.Concurrent || r.Rows != 11 {
		t.Fatalf("b refresh %+v: want concurrent (it has a unique index) with 11 rows", r)
	}

	// Break A at refresh time.
	exec(t, db, "DELETE FROM src")
	got, err = Refresh(ctx, db, quietLog(), Config{}, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	m := byName(got)
	if m["rollups.a"].Status != "error" || !strings.Contains(m["rollups.a"].Error, "division by zero") {
		t.Fatalf("a: %+v, want the division by zero recorded", m["rollups.a"])
	}
	if m["rollups.b"].Status != "skipped" || !strings.Contains(m["rollups.b"].Error, "depends on rollups.a, which failed") {
		t.Fatalf("b: %+v", m["rollups.b"])
	}
	if m["rollups.c"].Status != "skipped" || !strings.Contains(m["rollups.c"].Error, "rollups.a failed") {
		t.Fatalf("c: %+v", m["rollups.c"])
	}
	if m["rollups.d"].Status != "ok" || m["rollups.d"].Rows != 1 {
		t.Fatalf("d: %+v, want it refreshed regardless", m["rollups.d"])
	}
	// The same outcome is in herd.rollup_runs, with what a human needs.
	var status, errText string
	err = db.QueryRow(ctx, `SELECT status, error FROM herd.rollup_runs WHERE rollup = 'rollups.a' AND action = 'refresh'
		ORDER BY id DESC LIMIT 1`).Scan(&status, &errText)
	if err != nil || status != "error" || !strings.Contains(errText, "division by zero") {
		t.Fatalf("rollup_runs for a: %s %q %v", status, errText, err)
	}
	var d int
	if err := db.QueryRow(ctx, "SELECT n FROM rollups.d").Scan(&d); err != nil || d != 0 {
		t.Fatalf("rollups.d = %d, %v; want 0 after refresh", d, err)
	}

	// Break A's SQL: apply records the error, keeps the old A, skips B and C,
	// and still applies a changed independent rollup.
	exec(t, db, "INSERT INTO src SELECT g, g FROM generate_series(1, 3) g")
	files["3_a.sql"] = "-- refresh: 1h\nCREATE MATERIALIZED VIEW a AS SELECT id, v FROM no_such_table;"
	files["4_d.sql"] = "-- refresh: 1h\nCREATE MATERIALIZED VIEW d AS SELECT count(*) AS n, 'v2' AS version FROM src;"
	res = applyDir(t, db, writeDir(t, files))
	if res["rollups.a"].Status != "error" || !strings.Contains(res["rollups.a"].Error, `"no_such_table" does not exist`) {
		t.Fatalf("apply a: %+v", res["rollups.a"])
	}
	for _, n := range []string{"rollups.b", "rollups.c"} {
		if res[n].Status != "skipped" || !strings.Contains(res[n].Error, "rollups.a") {
			t.Fatalf("apply %s: %+v, want skipped naming rollups.a", n, res[n])
		}
	}
	if res["rollups.d"].Status != "ok" {
		t.Fatalf("apply d: %+v", res["rollups.d"])
	}
	var version string
	if err := db.QueryRow(ctx, "SELECT version FROM rollups.d").Scan(&version); err != nil || version != "v2" {
		t.Fatalf("rollups.d version = %q, %v", version, err)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM rollups.c").Scan(&n); err != nil {
		t.Fatalf("rollups.c must survive a failed apply of a: %v", err)
	}
	if err := db.QueryRow(ctx, `SELECT count(*) FROM herd.rollup_runs WHERE action = 'apply' AND
		((rollup = 'rollups.a' AND status = 'error') OR (rollup IN ('rollups.b', 'rollups.c') AND status = 'skipped'))`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("apply outcomes recorded: %d, %v; want 3", n, err)
	}

	// Status shows the last run and the next due time.
	st, err := Statuses(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Name == "rollups.a" {
			if s.LastStatus != "error" || !s.NextDue.Equal(s.LastStarted.Add(time.Hour)) {
				t.Fatalf("status of a: %+v", s)
			}
		}
	}
}

// A view whose SQL changed is rebuilt together with what reads it, and an
// unchanged directory applies nothing.
func TestReapply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := warehouse(t)
	files := map[string]string{
		"a.sql": "CREATE VIEW a AS SELECT 1 AS x",
		"b.sql": "-- refresh: 1h\nCREATE MATERIALIZED VIEW b AS SELECT x FROM a",
	}
	applyDir(t, db, writeDir(t, files))
	res := applyDir(t, db, writeDir(t, files))
	for n, r := range res {
		if r.Status != "unchanged" {
			t.Fatalf("second apply of %s: %+v, want unchanged", n, r)
		}
	}
	files["a.sql"] = "CREATE VIEW a AS SELECT 2 AS x, 'new' AS y"
	res = applyDir(t, db, writeDir(t, files))
	if res["rollups.a"].Status != "ok" || res["rollups.b"].Status != "ok" {
		t.Fatalf("reapply: %+v", res)
	}
	var x int
	if err := db.QueryRow(ctx, "SELECT x FROM rollups.b").Scan(&x); err != nil || x != 2 {
		t.Fatalf("b.x = %d, %v; want 2", x, err)
	}
	// A table in the way is never dropped.
	exec(t, db, "DROP MATERIALIZED VIEW rollups.b; CREATE TABLE rollups.b (x int)")
	files["b.sql"] += " -- changed"
	res = applyDir(t, db, writeDir(t, files))
	if res["rollups.b"].Status != "error" || !strings.Contains(res["rollups.b"].Error, "not a view") {
		t.Fatalf("apply over a table: %+v", res["rollups.b"])
	}
}

// Acceptance 2: a concurrent refresh does not block readers; a plain
// refresh (no unique index) does, which shows the check can fail.
func TestConcurrentRefreshDoesNotBlockReaders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, url := warehouse(t)
	exec(t, db, "CREATE TABLE public.src (id int PRIMARY KEY); INSERT INTO src SELECT generate_series(1, 1000)")
	// pg_sleep in the definition makes every refresh take about a second.
	applyDir(t, db, writeDir(t, map[string]string{
		"with_index.sql": "-- refresh: 1h\nCREATE MATERIALIZED VIEW with_index AS SELECT s.id FROM src s CROSS JOIN (SELECT pg_sleep(1)) z;\nCREATE UNIQUE INDEX ON with_index (id);",
	}))
	exec(t, db, "CREATE MATERIALIZED VIEW rollups.no_index AS SELECT s.id FROM src s CROSS JOIN (SELECT pg_sleep(1)) z")

	reader, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close(context.Background()) })
	if _, err := reader.Exec(ctx, "SET lock_timeout = '300ms'"); err != nil {
		t.Fatal(err)
	}

	// readDuringRefresh starts stmt in the background, waits until Postgres
	// shows it running, reads the view and returns the read's error.
	readDuringRefresh := func(view string, refresh func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- refresh() }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var n int
			if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE state = 'active'
				AND query ILIKE 'REFRESH MATERIALIZED VIEW%' AND datname = current_database()`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("refresh never showed up in pg_stat_activity")
			}
			time.Sleep(20 * time.Millisecond)
		}
		var n int
		readErr := reader.QueryRow(ctx, "SELECT count(*) FROM rollups."+view).Scan(&n)
		select {
		case err := <-done:
			t.Fatalf("refresh of %s finished before the read; the test proves nothing (err %v)", view, err)
		default:
		}
		if readErr == nil && n != 1000 {
			t.Fatalf("read %d rows of %s during refresh, want the old 1000", n, view)
		}
		if err := <-done; err != nil {
			t.Fatalf("refresh %s: %v", view, err)
		}
		return readErr
	}

	err = readDuringRefresh("with_index", func() error {
		res, err := Refresh(ctx, db, quietLog(), Config{}, time.Now(), true)
		if err == nil && (len(res) != 1 || res[0].Status != "ok" || !res[0].Concurrent) {
			return errors.New("want one concurrent ok refresh, got " + strings.Join(names(res), ","))
		}
		return err
	})
	if err != nil {
		t.Fatalf("reading with_index during a concurrent refresh: %v", err)
	}
	err = readDuringRefresh("no_index", func() error {
		_, err := db.Exec(ctx, "REFRESH MATERIALIZED VIEW rollups.no_index")
		return err
	})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" {
		t.Fatalf("reading no_index during a plain refresh: %v, want lock timeout (55P03)", err)
	}
}

func TestSchedulerRunsDueWorkAndJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := warehouse(t)
	applyDir(t, db, writeDir(t, map[string]string{
		"m.sql": "-- refresh: 1h\nCREATE MATERIALIZED VIEW m AS SELECT now() AS at",
	}))
	// Just applied: not due for an hour.
	res, err := Refresh(ctx, db, quietLog(), Config{}, time.Now(), false)
	if err != nil || len(res) != 0 {
		t.Fatalf("refresh right after apply: %v %v, want nothing due", names(res), err)
	}
	res, err = Refresh(ctx, db, quietLog(), Config{}, time.Now().Add(61*time.Minute), false)
	if err != nil || len(res) != 1 || res[0].Status != "ok" {
		t.Fatalf("refresh an hour later: %+v %v", res, err)
	}
	// The scheduler's tick runs its jobs under the lock.
	s := NewScheduler(db, quietLog(), Config{Tick: time.Hour})
	ran := 0
	s.Add("count", func(ctx context.Context) error { ran++; return nil })
	s.Tick(ctx)
	if ran != 1 {
		t.Fatalf("job ran %d times, want 1", ran)
	}
	// While another process holds the lock, nothing runs.
	conn, err := db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		t.Fatal(err)
	}
	s.Tick(ctx)
	if _, err := Refresh(ctx, db, quietLog(), Config{}, time.Now(), true); !errors.Is(err, ErrBusy) {
		t.Fatalf("refresh while locked: %v, want ErrBusy", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey); err != nil {
		t.Fatal(err)
	}
	if ran != 1 {
		t.Fatalf("job ran %d times while another process held the lock, want 1", ran)
	}
}
