package replicate

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const appSchema = `
CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, score int, born date);
CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint, amount numeric(10,2), created_at timestamptz DEFAULT now(), tags text[]);
CREATE TABLE events (k1 int, k2 text, payload jsonb, ratio float8, PRIMARY KEY (k1, k2));
INSERT INTO users SELECT g, 'user ' || g, g % 100, date '2000-01-01' + g FROM generate_series(1, 1000) g;
INSERT INTO orders (user_id, amount, tags) SELECT g % 1000 + 1, g * 1.25, ARRAY['a', g::text] FROM generate_series(1, 1000) g;
INSERT INTO events SELECT g, 'k' || g, jsonb_build_object('n', g), g / 7.0 FROM generate_series(1, 1000) g;
`

// Acceptance 1: 10,000 inserts, updates and deletes across three tables
// reach the warehouse; check reports equal counts and checksums, and
// reports a difference when there is one.
func TestReplicateThreeTables(t *testing.T) {
	t.Parallel()
	p := newPair(t, nil)
	exec(t, p.src, appSchema)
	ctx := ctxT(t, 2*time.Minute)
	var progress syncBuffer
	group := uniqueGroup()
	err := Add(ctx, p.wh, Config{SourceURL: p.srcURL, Tables: []string{"users", "orders", "public.events"},
		Progress: &progress, ProgressEvery: 200 * time.Millisecond, AnalystsGroup: group})
	if err != nil {
		t.Fatalf("add: %v", err)
	}
	for _, tbl := range []string{"public.users", "public.orders", "public.events"} {
		if !strings.Contains(progress.String(), tbl+": ready, 1000 rows copied") {
			t.Errorf("progress lacks %s ready with 1000 rows:\n%s", tbl, progress.String())
		}
		// The tables keep the source's schema, outside the analysts'
		// schemas: the analysts group is granted them.
		if n, err := countAs(t, p.wh, group, tbl); err != nil || n != 1000 {
			t.Errorf("a member of the analysts group reads %d rows of %s: %v; want 1000", n, tbl, err)
		}
	}
	if _, err := countAs(t, p.wh, "", "public.users"); err == nil {
		t.Error("a role outside the analysts group reads public.users; the check above proves nothing")
	}

	// 10,000 single-row statements in transactions of 50: 60% inserts,
	// 30% updates, 10% deletes, spread over the three tables.
	var ops [3]int
	for tx := 0; tx < 200; tx++ {
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		for j := 0; j < 50; j++ {
			i := tx*50 + j
			id := 1 + (i*7919)%1000
			switch op := i % 10; {
			case op < 6:
				ops[0]++
				switch i % 3 {
				case 0:
					b.Queue("INSERT INTO users VALUES ($1, $2, $3, now()::date)", 10000+i, fmt.Sprint("new ", i), i)
				case 1:
					b.Queue("INSERT INTO orders (user_id, amount, tags) VALUES ($1, $2, $3)", id, float64(i)/4, []string{"x", strconv.Itoa(i)})
				default:
					b.Queue("INSERT INTO events VALUES ($1, $2, $3, $4)", i, "n"+strconv.Itoa(i), map[string]any{"i": i}, float64(i)/3)
				}
			case op < 9:
				ops[1]++
				switch i % 3 {
				case 0:
					b.Queue("UPDATE users SET score = score + 1, name = name || '!' WHERE id = $1", id)
				case 1:
					b.Queue("UPDATE orders SET amount = amount + 0.01, tags = tags || 'u'::text WHERE id = $1", id)
				default:
					b.Queue("UPDATE events SET payload = payload || '{\"u\": true}' WHERE k1 = $1", id)
				}
			default:
				ops[2]++
				switch i % 3 {
				case 0:
					b.Queue("DELETE FROM users WHERE id = $1", id)
				case 1:
					b.Queue("DELETE FROM orders WHERE id = $1", id)
				default:
					b.Queue("DELETE FROM events WHERE k1 = $1", id)
				}
			}
		}
		b.Queue("COMMIT")
		if err := p.src.SendBatch(ctx, b).Close(); err != nil {
			t.Fatalf("workload transaction %d: %v", tx, err)
		}
	}
	t.Logf("workload: %d inserts, %d updates, %d deletes", ops[0], ops[1], ops[2])
	res := requireEqual(t, p, "herd", 3)
	for _, r := range res {
		if r.SourceRows < 1000 {
			t.Errorf("%s has %d rows; the workload should have grown it", r.Table, r.SourceRows)
		}
	}

	// The check must notice a difference.
	exec(t, p.wh, "UPDATE public.events SET ratio = ratio + 1 WHERE k1 = (SELECT min(k1) FROM public.events)")
	res, err = Check(ctx, p.wh, "herd", 30*time.Second)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	for _, r := range res {
		if want := r.Table != "public.events"; r.Equal != want {
			t.Errorf("after changing one warehouse row of public.events: %s equal = %v, want %v", r.Table, r.Equal, want)
		}
	}
	// resync TABLE copies it again while the others keep streaming.
	var progress2 syncBuffer
	if err := Resync(ctx, p.wh, ResyncConfig{Tables: []string{"events"}, Progress: &progress2}); err != nil {
		t.Fatalf("resync events: %v", err)
	}
	if !strings.Contains(progress2.String(), "public.events: ready") {
		t.Errorf("resync progress lacks public.events ready:\n%s", progress2.String())
	}
	exec(t, p.src, "INSERT INTO users VALUES (999999, 'after resync', 1, now()::date)")
	requireEqual(t, p, "herd", 3)
}

// Acceptance 2: pre-flight refuses what would break the app or cannot
// work, naming the object and the fix.
func TestPreflightRefuses(t *testing.T) {
	t.Parallel()
	logical := sourceCluster(t, nil)
	replica := sourceCluster(t, map[string]string{"wal_level": "replica"})
	cases := []struct {
		name    string
		url     string
		setup   string
		tables  []string
		wantErr []string // substrings of the error
	}{
		{"table without primary key", newDB(t, logical),
			"CREATE TABLE good (id int PRIMARY KEY); CREATE TABLE nokey (a int, b text)",
			[]string{"good", "nokey"},
			[]string{"public.nokey", "no primary key or replica identity", `ALTER TABLE "public"."nokey" ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;`}},
		{"table without primary key but an id column", newDB(t, logical),
			"CREATE TABLE nokey (id int, b text)",
			[]string{"nokey"},
			[]string{"public.nokey", `ALTER TABLE "public"."nokey" ADD PRIMARY KEY (id);`}},
		{"unique index usable as replica identity", newDB(t, logical),
			"CREATE TABLE nokey (code text NOT NULL, b text); CREATE UNIQUE INDEX nokey_code ON nokey (code)",
			[]string{"nokey"},
			[]string{`ALTER TABLE "public"."nokey" REPLICA IDENTITY USING INDEX "nokey_code";`}},
		{"replica identity nothing", newDB(t, logical),
			"CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t REPLICA IDENTITY NOTHING",
			[]string{"t"},
			[]string{"public.t", "no primary key or replica identity"}},
		{"unlogged table", newDB(t, logical),
			"CREATE UNLOGGED TABLE u (id int PRIMARY KEY)",
			[]string{"u"},
			[]string{"public.u", `ALTER TABLE "public"."u" SET LOGGED;`}},
		{"wal_level replica", newDB(t, replica),
			"CREATE TABLE good (id int PRIMARY KEY)",
			[]string{"good"},
			[]string{`wal_level is "replica"`, "ALTER SYSTEM SET wal_level = logical;", "restart"}},
		{"missing table", newDB(t, logical),
			"CREATE TABLE good (id int PRIMARY KEY)",
			[]string{"good", "nosuch"},
			[]string{`"nosuch" does not exist on the source`}},
	}
	whc := warehouseCluster(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := ctxT(t, time.Minute)
			src, err := pgx.Connect(ctx, c.url)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close(ctx)
			if _, err := src.Exec(ctx, c.setup); err != nil {
				t.Fatalf("setup: %v", err)
			}
			wh := newDB(t, whc)
			whPool := poolFor(t, wh)
			err = Add(ctx, whPool, Config{SourceURL: c.url, Tables: c.tables})
			if err == nil {
				t.Fatal("add succeeded, want a refusal")
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			// Refused means untouched: no publication on the source, no
			// subscription on the warehouse.
			var pubs, subs int
			_ = src.QueryRow(ctx, "SELECT count(*) FROM pg_publication").Scan(&pubs)
			_ = whPool.QueryRow(ctx, "SELECT count(*) FROM pg_subscription").Scan(&subs)
			if pubs != 0 || subs != 0 {
				t.Errorf("after a refusal: %d publications on the source, %d subscriptions on the warehouse", pubs, subs)
			}
		})
	}
	// A pre-flight error is typed, so callers can list the problems.
	ctx := ctxT(t, time.Minute)
	url := newDB(t, replica)
	src := poolFor(t, url)
	exec(t, src, "CREATE TABLE a (x int)")
	ps, err := Preflight(ctx, Config{SourceURL: url, All: true})
	if err != nil {
		t.Fatal(err)
	}
	var checks []string
	for _, p := range ps {
		if p.Fatal {
			checks = append(checks, p.Check)
		}
	}
	if got := strings.Join(checks, ","); got != "wal_level,replica identity" {
		t.Errorf("fatal checks = %s, want wal_level,replica identity", got)
	}
	var pe *PreflightError
	if err := Add(ctx, poolFor(t, newDB(t, whc)), Config{SourceURL: url, All: true}); !errors.As(err, &pe) {
		t.Errorf("add error %v is not a *PreflightError", err)
	}
}

// Acceptance 6: herd replicate add prints progress while it copies a
// table of a million rows.
func TestAddProgressMillionRows(t *testing.T) {
	t.Parallel()
	p := newPair(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	exec(t, p.src, `CREATE TABLE big (id bigint PRIMARY KEY, v int, note text);
		INSERT INTO big SELECT g, g % 1000, 'row ' || g FROM generate_series(1, 1000000) g;
		ANALYZE big;`)
	var progress syncBuffer
	start := time.Now()
	err := Add(ctx, p.wh, Config{SourceURL: p.srcURL, Tables: []string{"big"},
		Progress: &progress, ProgressEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("add: %v\n%s", err, progress.String())
	}
	out := progress.String()
	t.Logf("copy took %s; progress:\n%s", time.Since(start), out)
	// At least one line shows a part of the table copied.
	partial := regexp.MustCompile(`public\.big: copying, (\d+) of ~1000000 rows \((\d+)%\)`)
	seen := false
	for _, m := range partial.FindAllStringSubmatch(out, -1) {
		if n, _ := strconv.Atoi(m[1]); n > 0 && n < 1000000 {
			seen = true
		}
	}
	if !seen {
		t.Errorf("no progress line with part of the rows copied:\n%s", out)
	}
	if !containsAll(out, "public.big: ready, 1000000 rows copied", "initial copy of 1 tables done") {
		t.Errorf("progress lacks the final lines:\n%s", out)
	}
	if n := queryInt(t, p.wh, "SELECT count(*) FROM big"); n != 1000000 {
		t.Errorf("warehouse has %d rows, want 1000000", n)
	}
}

func poolFor(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	return pgtest.Pool(t, url)
}

var _ = context.Background
