package queries

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/jackc/pgx/v5/pgxpool"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func setup(t *testing.T, cfg Config) (*pgxpool.Pool, *Store, *httptest.Server) {
	t.Helper()
	db := pgtest.Pool(t, pgtest.New(t))
	if _, err := schemas.Migrate(context.Background(), db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	srv := httptest.NewServer(Handler(db, quietLog()))
	t.Cleanup(srv.Close)
	return db, New(db, quietLog(), cfg), srv
}

func exec(t *testing.T, db *pgxpool.Pool, sql string) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func get(t *testing.T, srv *httptest.Server, path string, wantStatus int) string {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s: %d %s, want %d", path, resp.StatusCode, b, wantStatus)
	}
	return string(b)
}

func readCSV(t *testing.T, body string) [][]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("parse CSV %q: %v", body, err)
	}
	return recs
}

// Acceptance 5.
func TestSnapshotsAndPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store, srv := setup(t, Config{})
	exec(t, db, `CREATE TABLE public.sales (region text, amount int);
		INSERT INTO sales VALUES ('north', 10), ('north', 5), ('<script>alert(1)</script>', 1), ('south', NULL)`)
	const sql = "SELECT region, sum(amount) AS total FROM sales GROUP BY region ORDER BY region"
	if err := store.Save(ctx, "sales-by-region", sql+";", 0); err != nil {
		t.Fatal(err)
	}
	first, err := store.Run(ctx, "sales-by-region")
	if err != nil || first.Error != "" {
		t.Fatalf("run: %+v %v", first, err)
	}

	html := get(t, srv, "/q/sales-by-region", 200)
	for _, want := range []string{
		"<td>north</td><td>15</td>",
		"&lt;script&gt;alert(1)&lt;/script&gt;",
		`<td class="null">NULL</td>`,
		"GROUP BY region",
		first.Started.UTC().Format("2006-01-02 15:04:05"),
	} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q:\n%s", want, html)
		}
	}
	if strings.Contains(html, "<script>alert") {
		t.Error("page contains unescaped data")
	}
	want := [][]string{{"region", "total"}, {"<script>alert(1)</script>", "1"}, {"north", "15"}, {"south", ""}}
	if got := readCSV(t, get(t, srv, "/q/sales-by-region.csv", 200)); !reflect.DeepEqual(got, want) {
		t.Fatalf("CSV %q, want %q", got, want)
	}

	// The data changes; the next run shows it, the first snapshot does not.
	exec(t, db, "UPDATE sales SET amount = 100 WHERE region = 'north'; DELETE FROM sales WHERE region = 'south'")
	second, err := store.Run(ctx, "sales-by-region")
	if err != nil || second.Error != "" {
		t.Fatalf("second run: %+v %v", second, err)
	}
	latest := readCSV(t, get(t, srv, "/q/sales-by-region.csv", 200))
	if latest[2][1] != "200" || len(latest) != 3 {
		t.Fatalf("latest CSV %q, want north 200 and no south", latest)
	}
	old := readCSV(t, get(t, srv, "/q/sales-by-region.csv?run="+strconv.FormatInt(first.ID, 10), 200))
	if !reflect.DeepEqual(old, want) {
		t.Fatalf("first snapshot after the data changed: %q, want %q", old, want)
	}
	var js struct {
		RunID   int64       `json:"run_id"`
		SQL     string      `json:"sql"`
		Columns []string    `json:"columns"`
		Rows    [][]*string `json:"rows"`
		RanAt   time.Time   `json:"ran_at"`
	}
	if err := json.Unmarshal([]byte(get(t, srv, "/q/sales-by-region.json?run="+strconv.FormatInt(first.ID, 10), 200)), &js); err != nil {
		t.Fatal(err)
	}
	if js.RunID != first.ID || js.SQL != sql || len(js.Rows) != 3 || js.Rows[1][1] == nil || *js.Rows[1][1] != "15" || js.Rows[2][1] != nil || js.RanAt.IsZero() {
		t.Fatalf("JSON of the first run: %+v", js)
	}
	html = get(t, srv, "/q/sales-by-region?run="+strconv.FormatInt(first.ID, 10), 200)
	if !strings.Contains(html, "<td>north</td><td>15</td>") {
		t.Fatalf("first run's page lost its data:\n%s", html)
	}
	if !strings.Contains(get(t, srv, "/q/", 200), `href="sales-by-region"`) {
		t.Error("index does not link the query")
	}
	get(t, srv, "/q/nope", 404)
	get(t, srv, "/q/nope.csv", 404)
	get(t, srv, "/q/sales-by-region?run=999999", 404)
	get(t, srv, "/q/sales-by-region?run=abc", 400)
}

func TestFailuresAndSafety(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store, srv := setup(t, Config{MaxRows: 2})
	exec(t, db, "CREATE TABLE public.t (x int); INSERT INTO t VALUES (1), (2), (3)")

	// A run that fails is stored with its error; the page keeps showing the
	// last good snapshot and says the latest failed.
	if err := store.Save(ctx, "ratio", "SELECT 1 / count(*) AS r FROM t", 0); err != nil {
		t.Fatal(err)
	}
	if r, err := store.Run(ctx, "ratio"); err != nil || r.Error != "" {
		t.Fatalf("ratio: %+v %v", r, err)
	}
	exec(t, db, "DELETE FROM t")
	r, err := store.Run(ctx, "ratio")
	if err != nil || !strings.Contains(r.Error, "division by zero") {
		t.Fatalf("failing run: %+v %v", r, err)
	}
	html := get(t, srv, "/q/ratio", 200)
	if !strings.Contains(html, "failed: division by zero") || !strings.Contains(html, "<td>0</td>") {
		t.Fatalf("page after a failed run:\n%s", html)
	}

	cases := []struct {
		name, sql, saveErr, runErr string
	}{
		{"writes", "DELETE FROM t RETURNING x", "", "read-only transaction"},
		{"two-statements", "SELECT 1; DROP TABLE t", "cannot insert multiple commands", ""},
		{"typo", "SELEC 1", "syntax error", ""},
		{"Bad Name", "SELECT 1", "query name", ""},
	}
	for _, c := range cases {
		err := store.Save(ctx, c.name, c.sql, 0)
		if c.saveErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.saveErr) {
				t.Errorf("save %s: %v, want %q", c.name, err, c.saveErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("save %s: %v", c.name, err)
		}
		r, err := store.Run(ctx, c.name)
		if err != nil || !strings.Contains(r.Error, c.runErr) {
			t.Errorf("run %s: %+v %v, want %q", c.name, r, err, c.runErr)
		}
	}
	exec(t, db, "INSERT INTO t VALUES (1)")
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("t has %d rows, %v: a saved query changed data", n, err)
	}

	// Only MaxRows rows are kept, and the run says so.
	if err := store.Save(ctx, "many", "SELECT g FROM generate_series(1, 5) g", 0); err != nil {
		t.Fatal(err)
	}
	r, err = store.Run(ctx, "many")
	if err != nil || len(r.Rows) != 2 || r.RowCount != 5 || !r.Truncated {
		t.Fatalf("truncated run: %+v %v", r, err)
	}
}

func TestRunDue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store, _ := setup(t, Config{})
	if err := store.Save(ctx, "hourly", "SELECT now() AS at", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := store.Save(ctx, "manual", "SELECT 1", 0); err != nil {
		t.Fatal(err)
	}
	count := func() map[string]int {
		m := map[string]int{}
		rows, _ := db.Query(ctx, "SELECT query_name, count(*) FROM herd.query_runs GROUP BY 1")
		defer rows.Close()
		for rows.Next() {
			var n string
			var c int
			if err := rows.Scan(&n, &c); err != nil {
				t.Fatal(err)
			}
			m[n] = c
		}
		return m
	}
	for range 2 {
		if err := store.RunDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(); !reflect.DeepEqual(got, map[string]int{"hourly": 1}) {
		t.Fatalf("runs after two passes: %v, want hourly once", got)
	}
	exec(t, db, "UPDATE herd.query_runs SET started_at = started_at - interval '61 minutes'")
	if err := store.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if got := count(); got["hourly"] != 2 {
		t.Fatalf("runs after the hour: %v, want hourly twice", got)
	}
}
