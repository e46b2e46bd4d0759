package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd/console"
	"github.com/herdhq/herd/queries"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAnalystsShareQueries is the workspace end to end: two analysts and
// an admin sign in; A queries herd.events; A cannot read B's schema and
// gets Postgres's error; A saves a query and B reads the same snapshot;
// without a session the link gives the sign-in page and no data.
func TestAnalystsShareQueries(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	if st := send(t, e.P, `{"messageId":"share-1","userId":"u1","event":"Signed Up"}`); st != 200 {
		t.Fatalf("collector: %d", st)
	}
	e.P.WaitRows(t, 1, 10*time.Second, "SELECT count(*) FROM herd.events")

	a, b := e.signIn(t, e.A), e.signIn(t, e.B)
	adm := e.client(t)
	st, who := adm.login(e.Admin.Name, e.Admin.Password)
	if st != 200 || !who.Admin || who.User != e.Admin.Name {
		t.Fatalf("admin sign-in: %d %+v, want admin", st, who)
	}
	var sess loginReply
	a.json("GET", "/api/session", nil, 200, &sess)
	if sess.User != e.A.Name || sess.Admin {
		t.Fatalf("A's session %+v: want %s, not admin", sess, e.A.Name)
	}

	var res result
	a.json("POST", "/api/query", map[string]any{"sql": "SELECT message_id, received_at, current_user AS who FROM herd.events"}, 200, &res)
	if len(res.Rows) != 1 || res.Rows[0][0] != "share-1" || res.Rows[0][2] != e.A.Name {
		t.Fatalf("A's query: %+v, want share-1 run as %s", res, e.A.Name)
	}
	if res.Columns[1].Type != "timestamptz" {
		t.Fatalf("received_at type %q, want timestamptz", res.Columns[1].Type)
	}
	if _, err := time.Parse(time.RFC3339Nano, res.Rows[0][1].(string)); err != nil {
		t.Fatalf("received_at %v is not RFC 3339: %v", res.Rows[0][1], err)
	}

	// B writes into B's own schema (write: true); A cannot read it.
	secret := pgx.Identifier{e.B.Name, "notes"}.Sanitize()
	b.json("POST", "/api/query", map[string]any{"sql": "CREATE TABLE " + secret + " AS SELECT 'b only' AS note", "write": true}, 200, nil)
	// Read-only by default: the same statement without write fails.
	b.json("POST", "/api/query", map[string]any{"sql": "CREATE TABLE " + pgx.Identifier{e.B.Name, "again"}.Sanitize() + " (x int)"}, 400, &res)
	if res.Code != "25006" {
		t.Fatalf("write in a read-only query: %+v, want 25006", res)
	}
	a.json("POST", "/api/query", map[string]any{"sql": "SELECT * FROM " + secret}, 400, &res)
	if res.Code != "42501" || !strings.Contains(res.Error, "permission denied") {
		t.Fatalf("A reading B's schema: %+v, want Postgres's permission denied (42501)", res)
	}

	// A saves; B opens the link and sees the same snapshot.
	var saved struct {
		Name string `json:"name"`
		Run  struct {
			ID    int64       `json:"id"`
			RunAs string      `json:"run_as"`
			Rows  [][]*string `json:"rows"`
		} `json:"run"`
	}
	a.json("POST", "/api/queries", map[string]any{"name": "signups", "sql": "SELECT event, count(*) AS n FROM herd.events GROUP BY 1", "every": ""}, 201, &saved)
	if saved.Run.RunAs != e.A.Name || len(saved.Run.Rows) != 1 || *saved.Run.Rows[0][1] != "1" {
		t.Fatalf("saved run %+v: want one row computed as %s", saved.Run, e.A.Name)
	}
	var snap struct {
		Name    string `json:"name"`
		SavedBy string `json:"saved_by"`
		SQL     string `json:"sql"`
		Run     struct {
			ID   int64       `json:"id"`
			Rows [][]*string `json:"rows"`
		} `json:"run"`
		Runs []struct {
			ID int64 `json:"id"`
		} `json:"runs"`
	}
	b.json("GET", "/q/signups.json", nil, 200, &snap)
	if snap.Run.ID != saved.Run.ID || snap.SavedBy != e.A.Name || len(snap.Run.Rows) != 1 || *snap.Run.Rows[0][0] != "Signed Up" || len(snap.Runs) != 1 {
		t.Fatalf("B's view of signups: %+v, want A's snapshot %d", snap, saved.Run.ID)
	}
	st, csv, _ := b.do("GET", "/q/signups.csv", nil, nil)
	if st != 200 || string(csv) != "event,n\nSigned Up,1\n" {
		t.Fatalf("B's CSV: %d %q", st, csv)
	}
	var list struct {
		Queries []struct {
			Name    string `json:"name"`
			SavedBy string `json:"saved_by"`
		} `json:"queries"`
	}
	b.json("GET", "/api/queries", nil, 200, &list)
	if len(list.Queries) != 1 || list.Queries[0].Name != "signups" {
		t.Fatalf("B's list: %+v", list)
	}
	// B may not replace A's query.
	st, body, _ := b.do("POST", "/api/queries", map[string]any{"name": "signups", "sql": "SELECT 1"}, nil)
	if st != http.StatusConflict {
		t.Fatalf("B replacing A's query: %d %s, want 409", st, body)
	}

	// No session: the page sends to sign-in, the data answers 401.
	anon := e.client(t)
	st, body, hdr := anon.do("GET", "/q/signups", nil, nil)
	if st != http.StatusSeeOther || !strings.HasPrefix(hdr.Get("Location"), "/login?next=") || strings.Contains(string(body), "Signed Up") {
		t.Fatalf("anonymous /q/signups: %d %s %q, want 303 to /login", st, hdr.Get("Location"), body)
	}
	for _, p := range []string{"/q/signups.json", "/q/signups.csv", "/q/signups.json?run=1", "/api/queries"} {
		st, body, _ := anon.do("GET", p, nil, nil)
		if st != http.StatusUnauthorized || strings.Contains(string(body), "Signed Up") || strings.Contains(string(body), "herd.events") {
			t.Fatalf("anonymous %s: %d %s, want 401 without data", p, st, body)
		}
	}
	// A signed-in page load gets the app.
	st, body, _ = b.do("GET", "/q/signups", nil, nil)
	if st != 200 || !strings.Contains(string(body), "<html") {
		t.Fatalf("B's /q/signups page: %d", st)
	}
}

// TestSavedQueryNeverShowsMoreThanSaver: a snapshot is computed as the
// role that saved it, so a table only herd reads yields an error, not
// rows, and a query herd saved for itself is invisible to analysts.
func TestSavedQueryNeverShowsMoreThanSaver(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	ctx := context.Background()
	exec(t, e.P.DB, "CREATE TABLE public.salaries (who text, amount int); INSERT INTO public.salaries VALUES ('ceo', 1000000)")
	a, b := e.signIn(t, e.A), e.signIn(t, e.B)

	var saved struct {
		Run struct {
			Rows  [][]*string `json:"rows"`
			Error *string     `json:"error"`
		} `json:"run"`
	}
	a.json("POST", "/api/queries", map[string]any{"name": "peek", "sql": "SELECT * FROM public.salaries"}, 201, &saved)
	if len(saved.Run.Rows) != 0 || saved.Run.Error == nil || !strings.Contains(*saved.Run.Error, "permission denied") {
		t.Fatalf("A's peek: %+v, want permission denied and no rows", saved.Run)
	}
	a.json("POST", "/api/queries", map[string]any{"name": "keys", "sql": "SELECT write_key FROM herd.sources"}, 201, &saved)
	if len(saved.Run.Rows) != 0 || saved.Run.Error == nil {
		t.Fatalf("A's write keys: %+v, want an error and no rows", saved.Run)
	}
	// Running it again (POST /api/queries/NAME/run) is still as A.
	var run struct {
		Rows  [][]*string `json:"rows"`
		Error *string     `json:"error"`
		RunAs string      `json:"run_as"`
	}
	b.json("POST", "/api/queries/peek/run", nil, 200, &run)
	if len(run.Rows) != 0 || run.Error == nil || run.RunAs != e.A.Name {
		t.Fatalf("B running A's peek: %+v, want it computed as %s with no rows", run, e.A.Name)
	}
	for _, c := range []*client{a, b} {
		st, body, _ := c.do("GET", "/q/peek.json", nil, nil)
		if st != http.StatusNotFound || strings.Contains(string(body), "1000000") {
			t.Fatalf("/q/peek.json: %d %s, want 404 (no successful run) without the salary", st, body)
		}
	}
	// herd's own saved query (herd queries save, computed as herd) can
	// read the table, and no analyst sees it or its rows.
	store := queries.New(e.P.DB, e.P.Log, queries.Config{})
	if err := store.Save(ctx, "payroll", "SELECT * FROM public.salaries", 0); err != nil {
		t.Fatal(err)
	}
	if r, err := store.Run(ctx, "payroll"); err != nil || len(r.Rows) != 1 {
		t.Fatalf("herd's run: %+v %v", r, err)
	}
	for _, p := range []string{"/q/payroll.json", "/q/payroll.csv"} {
		st, body, _ := a.do("GET", p, nil, nil)
		if st != http.StatusNotFound || strings.Contains(string(body), "1000000") {
			t.Fatalf("A's %s: %d %s, want 404 without the salary", p, st, body)
		}
	}
	st, body, _ := a.do("POST", "/api/queries/payroll/run", nil, nil)
	if st != http.StatusNotFound || strings.Contains(string(body), "1000000") {
		t.Fatalf("A running herd's payroll: %d %s, want 404", st, body)
	}
	var list struct {
		Queries []struct{ Name string } `json:"queries"`
	}
	a.json("GET", "/api/queries", nil, 200, &list)
	for _, q := range list.Queries {
		if q.Name == "payroll" {
			t.Fatalf("A lists herd's payroll: %+v", list)
		}
	}
}

// TestWrongPasswordRefusedOnTrustServer: the test server trusts every
// local connection, so only the verifier check stands between a wrong
// password and a session.
func TestWrongPasswordRefusedOnTrustServer(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	c := e.client(t)
	for _, tc := range []struct{ user, pass string }{
		{e.A.Name, "not-" + e.A.Password},
		{e.A.Name, e.B.Password},
		{"postgres", "anything"}, // a role with no password
		{"no_such_role_x", "x"},
	} {
		st, r := c.login(tc.user, tc.pass)
		if st != http.StatusUnauthorized {
			t.Fatalf("sign in as %s with a wrong password: %d %+v, want 401", tc.user, st, r)
		}
	}
	st, body, _ := c.do("GET", "/api/session", nil, nil)
	if st != http.StatusUnauthorized {
		t.Fatalf("session after refused sign-ins: %d %s", st, body)
	}
	if st, _ := c.login(e.A.Name, e.A.Password); st != 200 {
		t.Fatalf("right password: %d", st)
	}
}

// TestLoginRateLimit: sign-in attempts are limited per client IP and per
// user name, answered 429 with Retry-After, and come back with time.
func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := start(t, envOptions{adjust: func(c *console.Config) {
		c.LoginBurst = 3
		c.LoginRefill = time.Minute
		c.TrustedProxies = nil
		c.Registerer = reg
	}})
	c := e.client(t)
	for i := 0; i < 3; i++ {
		if st, _ := c.login(e.A.Name, "wrong"); st != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i, st)
		}
	}
	st, body, hdr := c.do("POST", "/api/login", map[string]string{"user": e.A.Name, "password": e.A.Password}, nil)
	if st != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("4th attempt with the right password: %d %s (Retry-After %q), want 429", st, body, hdr.Get("Retry-After"))
	}
	// Same IP, other user: the IP is out of attempts too.
	if st, _ := c.login(e.B.Name, e.B.Password); st != http.StatusTooManyRequests {
		t.Fatalf("other user from the same IP: %d, want 429", st)
	}
	e.Clock.Advance(time.Minute + time.Second)
	if st, _ := c.login(e.A.Name, e.A.Password); st != 200 {
		t.Fatalf("after a minute: %d, want 200", st)
	}
	const want = `
# HELP herd_console_sign_ins_total Console sign-in attempts by result: ok, refused (wrong user or password), limited (429), unavailable.
# TYPE herd_console_sign_ins_total counter
herd_console_sign_ins_total{result="limited"} 2
herd_console_sign_ins_total{result="ok"} 1
herd_console_sign_ins_total{result="refused"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "herd_console_sign_ins_total"); err != nil {
		t.Fatal(err)
	}
}

// TestLoginRateLimitPerUser: attempts from many addresses against one
// user name are limited too.
func TestLoginRateLimitPerUser(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{adjust: func(c *console.Config) {
		c.LoginBurst = 2
		c.LoginRefill = time.Minute
		c.TrustedProxies = mustPrefixes("127.0.0.0/8", "::1/128")
	}})
	for i := 0; i < 2; i++ {
		c := e.client(t)
		c.ip = fmt.Sprintf("203.0.113.%d", i+1)
		if st, _ := c.login(e.A.Name, "wrong"); st != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, st)
		}
	}
	c := e.client(t)
	c.ip = "203.0.113.50"
	if st, _ := c.login(e.A.Name, e.A.Password); st != http.StatusTooManyRequests {
		t.Fatalf("third address, same user: %d, want 429", st)
	}
	if st, _ := c.login(e.B.Name, e.B.Password); st != 200 {
		t.Fatalf("another user from a fresh address: %d, want 200", st)
	}
}

// TestCSRF: a state-changing request needs the session's token and a
// same-site origin.
func TestCSRF(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	a := e.signIn(t, e.A)
	q := map[string]any{"sql": "SELECT 1"}
	for _, tc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"no token", map[string]string{"X-CSRF-Token": ""}},
		{"wrong token", map[string]string{"X-CSRF-Token": a.csrf + "x"}},
		{"cross-site origin", map[string]string{"Origin": "https://evil.example"}},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}},
	} {
		for _, p := range []string{"/api/query", "/api/queries", "/api/logout"} {
			st, body, _ := a.do("POST", p, q, tc.hdr)
			if st != http.StatusForbidden {
				t.Fatalf("%s on %s: %d %s, want 403", tc.name, p, st, body)
			}
		}
	}
	st, body, _ := a.do("POST", "/api/query", q, map[string]string{"Origin": e.URL})
	if st != 200 {
		t.Fatalf("same-origin request with the token: %d %s", st, body)
	}
	var msg struct{ Error string }
	st, body, _ = a.do("POST", "/api/query", q, map[string]string{"X-CSRF-Token": ""})
	_ = json.Unmarshal(body, &msg)
	if st != 403 || msg.Error != "missing or wrong CSRF token" {
		t.Fatalf("error %d %s", st, body)
	}
	// Sign-in from another site's page is refused too.
	c := e.client(t)
	st, _, _ = c.do("POST", "/api/login", map[string]string{"user": e.B.Name, "password": e.B.Password}, map[string]string{"Origin": "https://evil.example"})
	if st != http.StatusForbidden {
		t.Fatalf("cross-site sign-in: %d, want 403", st)
	}
}

// TestSessionExpiry: idle and absolute lifetimes, on the console's clock.
func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{adjust: func(c *console.Config) {
		c.IdleTTL = time.Hour
		c.SessionTTL = 3 * time.Hour
	}})
	a := e.signIn(t, e.A)
	e.Clock.Advance(59 * time.Minute)
	a.json("GET", "/api/session", nil, 200, nil)
	e.Clock.Advance(61 * time.Minute)
	st, body, _ := a.do("GET", "/api/session", nil, nil)
	if st != http.StatusUnauthorized || !strings.Contains(string(body), "expired") {
		t.Fatalf("after an idle hour: %d %s, want 401 expired", st, body)
	}
	// Active all along, still ends at the absolute lifetime.
	b := e.signIn(t, e.B)
	for i := 0; i < 5; i++ {
		e.Clock.Advance(35 * time.Minute)
		b.json("POST", "/api/query", map[string]any{"sql": "SELECT 1"}, 200, nil)
	}
	e.Clock.Advance(30 * time.Minute)
	st, body, _ = b.do("POST", "/api/query", map[string]any{"sql": "SELECT 1"}, nil)
	if st != http.StatusUnauthorized || !strings.Contains(string(body), "expired") {
		t.Fatalf("past the absolute lifetime: %d %s, want 401 expired", st, body)
	}
}

// TestSignOut ends the session on the server, not only in the browser.
func TestSignOut(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	a := e.signIn(t, e.A)
	u, _ := http.NewRequest("GET", e.URL, nil)
	cookies := a.hc.Jar.Cookies(u.URL)
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	st, _, hdr := a.do("POST", "/api/logout", nil, nil)
	if st != http.StatusNoContent || !strings.Contains(hdr.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: %d %q", st, hdr.Get("Set-Cookie"))
	}
	// The old cookie, replayed, opens nothing.
	old := e.client(t)
	old.hc.Jar.SetCookies(u.URL, cookies)
	old.csrf = a.csrf
	for _, p := range []string{"/api/session", "/q/anything.json"} {
		if st, _, _ := old.do("GET", p, nil, nil); st != http.StatusUnauthorized {
			t.Fatalf("old cookie on %s after logout: %d, want 401", p, st)
		}
	}
	if st, _, _ := old.do("POST", "/api/query", map[string]any{"sql": "SELECT 1"}, nil); st != http.StatusUnauthorized {
		t.Fatalf("old cookie query after logout: %d", st)
	}
}

// TestCookieAndHeaders: the cookie's attributes and the security headers.
func TestCookieAndHeaders(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{adjust: func(c *console.Config) { c.TrustedProxies = mustPrefixes("127.0.0.0/8") }})
	c := e.client(t)
	st, _, hdr := c.do("POST", "/api/login", map[string]string{"user": e.A.Name, "password": e.A.Password}, nil)
	ck := hdr.Get("Set-Cookie")
	if st != 200 || !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Lax") || strings.Contains(ck, "Secure") {
		t.Fatalf("cookie over http: %d %q", st, ck)
	}
	if hdr.Get("Content-Security-Policy") == "" || hdr.Get("X-Frame-Options") != "DENY" || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", hdr)
	}
	_, _, hdr = c.do("POST", "/api/login", map[string]string{"user": e.A.Name, "password": e.A.Password}, map[string]string{"X-Forwarded-Proto": "https", "Origin": "https://" + strings.TrimPrefix(e.URL, "http://")})
	if !strings.Contains(hdr.Get("Set-Cookie"), "Secure") {
		t.Fatalf("cookie behind an https proxy: %q", hdr.Get("Set-Cookie"))
	}
	// Bodies are bounded.
	st, _, _ = c.do("POST", "/api/login", map[string]string{"user": strings.Repeat("x", 10000), "password": "p"}, nil)
	if st != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize sign-in: %d, want 413", st)
	}
}

// TestAdminOnly: operator endpoints answer 403 to analysts.
func TestAdminOnly(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	a, adm := e.signIn(t, e.A), e.signIn(t, e.Admin)
	for _, p := range []string{"/api/pipeline", "/api/rollups", "/api/usage", "/api/loaders", "/api/sources", "/api/trace/x", "/api/live"} {
		if st, body, _ := a.do("GET", p, nil, nil); st != http.StatusForbidden {
			t.Fatalf("analyst GET %s: %d %s, want 403", p, st, body)
		}
	}
	if st, _, _ := a.do("POST", "/api/sources", map[string]string{"name": "evil"}, nil); st != http.StatusForbidden {
		t.Fatalf("analyst creates a source: %d", st)
	}
	var created struct {
		Name     string `json:"name"`
		WriteKey string `json:"write_key"`
	}
	adm.json("POST", "/api/sources", map[string]string{"name": "mobile", "kind": "server"}, 201, &created)
	if created.WriteKey == "" {
		t.Fatalf("created source: %+v, want its write key", created)
	}
	adm.json("POST", "/api/sources/mobile/limits", map[string]any{"rate_limit": 5}, 200, nil)
	adm.json("POST", "/api/sources/mobile/revoke", nil, 200, nil)
	var list struct {
		Sources []map[string]any `json:"sources"`
	}
	adm.json("GET", "/api/sources", nil, 200, &list)
	found := false
	for _, s := range list.Sources {
		if _, ok := s["write_key"]; ok {
			t.Fatalf("source list shows a write key: %v", s)
		}
		if s["name"] == "mobile" {
			found = s["revoked"] == true && s["rate_limit"] == 5.0
		}
	}
	if !found {
		t.Fatalf("mobile not revoked with its limit in %v", list.Sources)
	}
	var usage struct {
		Schemas []struct{ Name string } `json:"schemas"`
	}
	adm.json("GET", "/api/usage", nil, 200, &usage)
	if len(usage.Schemas) == 0 {
		t.Fatalf("usage: %+v", usage)
	}
	var loaders struct {
		SaaS []struct {
			Name string `json:"name"`
		} `json:"saas"`
	}
	adm.json("GET", "/api/loaders", nil, 200, &loaders)
	stripe := false
	for _, l := range loaders.SaaS {
		stripe = stripe || l.Name == "stripe"
	}
	if !stripe {
		t.Fatalf("loaders: %+v, want stripe's sync_state among them", loaders)
	}
}

// TestQueryLimitsAndCancel: 10,000 rows and truncated; a running query is
// cancelled by its id.
func TestQueryLimitsAndCancel(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	a := e.signIn(t, e.A)
	var res result
	a.json("POST", "/api/query", map[string]any{"sql": "SELECT g, g::numeric / 3 AS third, '{\"a\":1}'::jsonb AS j, '\\x0102'::bytea AS b, NULL AS n FROM generate_series(1, 10005) g"}, 200, &res)
	if len(res.Rows) != 10000 || !res.Truncated || res.RowCount != 10005 {
		t.Fatalf("rows %d truncated %v count %d: want 10000, true, 10005", len(res.Rows), res.Truncated, res.RowCount)
	}
	row := res.Rows[0]
	if row[0] != 1.0 || fmt.Sprint(row[2]) != "map[a:1]" || row[3] != "AQI=" || row[4] != nil {
		t.Fatalf("first row %#v", row)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var st int
	var body []byte
	go func() {
		defer wg.Done()
		st, body, _ = a.do("POST", "/api/query", map[string]any{"sql": "SELECT pg_sleep(30)"}, map[string]string{"X-Query-Id": "q-1"})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cst, cb, _ := a.do("POST", "/api/query/cancel", map[string]string{"id": "q-1"}, nil)
		if cst == http.StatusNoContent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cancel: %d %s", cst, cb)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	if st != http.StatusBadRequest || !strings.Contains(string(body), "57014") {
		t.Fatalf("cancelled query: %d %s, want 400 with 57014", st, body)
	}
	// The session's connection still works.
	a.json("POST", "/api/query", map[string]any{"sql": "SELECT 1"}, 200, nil)
	var schema struct {
		Schemas []struct {
			Name   string `json:"name"`
			Tables []struct {
				Name string `json:"name"`
			} `json:"tables"`
		} `json:"schemas"`
	}
	a.json("GET", "/api/schema", nil, 200, &schema)
	var herdTables []string
	for _, s := range schema.Schemas {
		if s.Name == "herd" {
			for _, tb := range s.Tables {
				herdTables = append(herdTables, tb.Name)
			}
		}
		if s.Name == e.B.Name {
			t.Fatalf("A's schema browser lists B's schema")
		}
	}
	joined := "," + strings.Join(herdTables, ",") + ","
	if !strings.Contains(joined, ",events,") || strings.Contains(joined, ",query_runs_x,") {
		t.Fatalf("herd tables for A: %v", herdTables)
	}
}

// TestSessionCaps: sessions are bounded in total and per user (each
// holds a Postgres connection); a user's oldest session gives way.
func TestSessionCaps(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{adjust: func(c *console.Config) {
		c.MaxSessions = 2
		c.MaxUserSession = 1
	}})
	a1 := e.signIn(t, e.A)
	a2 := e.signIn(t, e.A)
	if st, _, _ := a1.do("GET", "/api/session", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("A's first session after a second one: %d, want 401", st)
	}
	a2.json("GET", "/api/session", nil, 200, nil)
	e.signIn(t, e.B)
	c := e.client(t)
	st, body, _ := c.do("POST", "/api/login", map[string]string{"user": e.Admin.Name, "password": e.Admin.Password}, nil)
	if st != http.StatusServiceUnavailable {
		t.Fatalf("a third user past 2 sessions: %d %s, want 503", st, body)
	}
}
