package console_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd/console"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/queries"
	"github.com/jackc/pgx/v5"
)

// write runs one statement as c's role through /api/query with write on.
func (c *client) write(sql string) {
	c.t.Helper()
	c.json("POST", "/api/query", map[string]any{"sql": sql, "write": true}, 200, nil)
}

// TestSavedQueryAuthorisedOnHerdsConnection: an analyst who redefines =
// in their own schema and puts it first in search_path still cannot run
// or read a query saved as herd, nor an unshared one of another role.
func TestSavedQueryAuthorisedOnHerdsConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := start(t, envOptions{})
	exec(t, e.P.DB, "CREATE SCHEMA herdonly_s; CREATE TABLE herdonly_s.herdonly (secret text); INSERT INTO herdonly_s.herdonly VALUES ('herdonly-secret')")
	store := queries.New(e.P.DB, herdtest.Logger(t), queries.Config{})
	if err := store.Save(ctx, "payroll", "select * from herdonly_s.herdonly", 0); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveAs(ctx, "bprivate", "select 'b-private' as x", 0, e.B.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Run(ctx, "bprivate"); err != nil {
		t.Fatal(err)
	}
	b := e.signIn(t, e.B)
	b.json("POST", "/api/queries", map[string]any{"name": "bshared", "sql": "select 'b-shared' as x"}, 201, nil)

	a := e.signIn(t, e.A)
	check := func(when string) {
		t.Helper()
		for _, name := range []string{"payroll", "bprivate"} {
			st, body, _ := a.do("POST", "/api/queries/"+name+"/run", nil, nil)
			if st != http.StatusNotFound || strings.Contains(string(body), "secret") || strings.Contains(string(body), "b-private") {
				t.Fatalf("%s: A runs %s: %d %s, want 404", when, name, st, body)
			}
			st, body, _ = a.do("GET", "/q/"+name+".json", nil, nil)
			if st != http.StatusNotFound || strings.Contains(string(body), "secret") || strings.Contains(string(body), "b-private") {
				t.Fatalf("%s: A reads %s: %d %s, want 404", when, name, st, body)
			}
		}
		var run struct {
			RunAs string   `json:"run_as"`
			Rows  [][]*any `json:"rows"`
		}
		a.json("POST", "/api/queries/bshared/run", nil, 200, &run)
		if run.RunAs != e.B.Name {
			t.Fatalf("%s: B's shared query ran as %q, want %s", when, run.RunAs, e.B.Name)
		}
	}
	check("before")
	// Others run a query at most once a minute.
	e.Clock.Advance(61 * time.Second)
	sch := pgx.Identifier{e.A.Name}.Sanitize()
	a.write("CREATE FUNCTION " + sch + ".yes(text, text) RETURNS boolean LANGUAGE sql AS 'select true'")
	a.write("CREATE OPERATOR " + sch + ".= (leftarg = text, rightarg = text, function = " + sch + ".yes)")
	a.write("CREATE FUNCTION " + sch + ".pg_has_role(name, name, text) RETURNS boolean LANGUAGE sql AS 'select true'")
	a.write("SET search_path = " + sch + ", pg_catalog")
	var res result
	a.json("POST", "/api/query", map[string]any{"sql": "SELECT count(*) FROM herd.saved_queries WHERE name = 'no such name'"}, 200, &res)
	if fmt.Sprint(res.Rows[0][0]) == "0" {
		t.Fatal("the redefined = is not in effect: the test proves nothing")
	}
	check("after redefining =")
}

// TestAdminCheckIgnoresUserSearchPath: a pg_has_role of the analyst's own
// first in their search_path does not make them an operator.
func TestAdminCheckIgnoresUserSearchPath(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	a := e.signIn(t, e.A)
	sch := pgx.Identifier{e.A.Name}.Sanitize()
	a.write("CREATE FUNCTION " + sch + ".pg_has_role(name, oid, text) RETURNS boolean LANGUAGE sql AS 'select true'")
	a.write("CREATE FUNCTION " + sch + ".pg_has_role(name, name, text) RETURNS boolean LANGUAGE sql AS 'select true'")
	a.write("ALTER ROLE " + sch + " SET search_path = " + sch + ", pg_catalog")
	again := e.client(t)
	st, who := again.login(e.A.Name, e.A.Password)
	if st != 200 || who.Admin {
		t.Fatalf("sign-in after the trick: %d %+v, want 200 and not admin", st, who)
	}
	if st, body, _ := again.do("GET", "/api/sources", nil, nil); st != http.StatusForbidden {
		t.Fatalf("GET /api/sources: %d %s, want 403", st, body)
	}
	if st, body, _ := again.do("POST", "/api/sources", map[string]any{"name": "evil"}, nil); st != http.StatusForbidden {
		t.Fatalf("POST /api/sources: %d %s, want 403", st, body)
	}
}

// TestRevokeEndsOperatorAccess: operator pages check membership on each
// request, so REVOKE works within the session.
func TestRevokeEndsOperatorAccess(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	adm := e.signIn(t, e.Admin)
	adm.json("GET", "/api/sources", nil, 200, nil)
	revoke := "REVOKE " + console.AdminRole + " FROM " + pgx.Identifier{e.Admin.Name}.Sanitize()
	for i := 0; ; i++ {
		_, err := e.P.DB.Exec(context.Background(), revoke)
		if err == nil {
			break
		}
		if i == 10 {
			t.Fatalf("%s: %v", revoke, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st, body, _ := adm.do("GET", "/api/sources", nil, nil); st != http.StatusForbidden {
		t.Fatalf("after REVOKE: %d %s, want 403", st, body)
	}
	var who loginReply
	adm.json("GET", "/api/session", nil, 200, &who)
	if who.Admin {
		t.Fatalf("session after REVOKE: %+v, want not admin", who)
	}
}

// TestWrongPasswordsDoNotLockOutUser: one address sending a wrong
// password as often as the limit allows does not keep the person out, and
// correct passwords do not use up the name's attempts; many networks
// guessing one name are still limited.
func TestWrongPasswordsDoNotLockOutUser(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{adjust: func(c *console.Config) {
		c.LoginBurst = 2
		c.LoginRefill = 12 * time.Second
		c.TrustedProxies = mustPrefixes("127.0.0.0/8", "::1/128")
	}})
	attacker := e.client(t)
	attacker.ip = "203.0.113.9"
	for i := 0; i < 6; i++ {
		if st, _ := attacker.login(e.A.Name, "wrong"); st != http.StatusUnauthorized && st != http.StatusTooManyRequests {
			t.Fatalf("attacker attempt %d: %d", i, st)
		}
		e.Clock.Advance(12 * time.Second)
	}
	if st, _ := attacker.login(e.A.Name, "wrong"); st != http.StatusUnauthorized {
		t.Fatalf("attacker: %d, want 401", st)
	}
	for i := 0; i < 3; i++ {
		c := e.client(t)
		c.ip = fmt.Sprintf("198.51.%d.7", 100+i)
		if st, _ := c.login(e.A.Name, e.A.Password); st != 200 {
			t.Fatalf("A from %s, right after a wrong password from elsewhere: %d, want 200", c.ip, st)
		}
	}
	// Failures from 20 networks (10 times the burst) use up the name.
	for i := 0; i < 20; i++ {
		c := e.client(t)
		c.ip = fmt.Sprintf("192.0.%d.1", i)
		if st, _ := c.login(e.B.Name, "wrong"); st != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, st)
		}
	}
	c := e.client(t)
	c.ip = "100.64.0.1"
	if st, _ := c.login(e.B.Name, e.B.Password); st != http.StatusTooManyRequests {
		t.Fatalf("B after guesses from 20 networks: %d, want 429", st)
	}
}

// TestQueryByteLimitHoldsForOneRow: one row larger than the result's
// byte limit is not returned. (A row past the connection's message
// limit, a little higher, is refused before it is read:
// TestHugeRowRefused.)
func TestQueryByteLimitHoldsForOneRow(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{adjust: func(c *console.Config) { c.MaxResultBytes = 1 << 20 }})
	a := e.signIn(t, e.A)
	var res result
	a.json("POST", "/api/query", map[string]any{"sql": "SELECT repeat(chr(120), 1080000) AS big"}, 200, &res)
	if len(res.Rows) != 0 || !res.Truncated || res.RowCount != 1 {
		t.Fatalf("one 1.08 MB row past a 1 MiB limit: %d rows, truncated %v, count %d; want 0, true, 1", len(res.Rows), res.Truncated, res.RowCount)
	}
	a.json("POST", "/api/query", map[string]any{"sql": "SELECT repeat(chr(120), 1000) FROM generate_series(1, 5000)"}, 200, &res)
	size := 0
	for _, r := range res.Rows {
		size += len(r[0].(string))
	}
	if !res.Truncated || size > 1<<20 || len(res.Rows) == 0 {
		t.Fatalf("5 MB in rows of 1 kB past a 1 MiB limit: %d rows (%d bytes), truncated %v", len(res.Rows), size, res.Truncated)
	}
}

// TestSavedQueryRunsBounded: runs of saved queries in flight are bounded
// per user (429) and in all (503).
func TestSavedQueryRunsBounded(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{adjust: func(c *console.Config) {
		c.RunsPerUser = 1
		c.RunsTotal = 2
	}})
	a, b, adm := e.signIn(t, e.A), e.signIn(t, e.B), e.signIn(t, e.Admin)
	secs := pgx.Identifier{e.A.Name, "secs"}.Sanitize()
	a.write("CREATE TABLE " + secs + " AS SELECT 0::float8 AS s")
	a.json("POST", "/api/queries", map[string]any{"name": "slow", "sql": "select pg_sleep((select s from " + secs + "))"}, 201, nil)
	a.write("UPDATE " + secs + " SET s = 3")
	codes := make([]int, 2)
	running := func(n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var got int
			if err := e.P.DB.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT n, r FROM \"herd\".\"run\\_as\\_%' AND state = 'active'").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				rows, _ := e.P.DB.Query(context.Background(), "SELECT coalesce(usename, ''), state, left(query, 80) FROM pg_stat_activity WHERE datname = current_database()")
				for rows.Next() {
					var u, s, q string
					_ = rows.Scan(&u, &s, &q)
					t.Logf("%s %s %s", u, s, q)
				}
				rows.Close()
				t.Fatalf("%d runs in flight, want %d (codes %v)", got, n, codes)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for i, c := range []*client{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, _ = c.do("POST", "/api/queries/slow/run", nil, nil)
		}()
		running(i + 1)
		if i == 0 {
			if st, body, _ := a.do("POST", "/api/queries/slow/run", nil, nil); st != http.StatusTooManyRequests {
				t.Fatalf("A's second run at once: %d %s, want 429", st, body)
			}
		}
	}
	if st, body, _ := adm.do("POST", "/api/queries/slow/run", nil, nil); st != http.StatusServiceUnavailable {
		t.Fatalf("a third run with two in flight: %d %s, want 503", st, body)
	}
	wg.Wait()
	if codes[0] != 200 || codes[1] != 200 {
		t.Fatalf("the runs in flight: %v, want 200s", codes)
	}
	a.json("POST", "/api/queries/slow/run", nil, 200, nil)
}
