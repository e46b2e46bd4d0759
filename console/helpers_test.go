package console_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd/analysts"
	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/console"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/internal/natstest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// clock is the console's clock in tests: real time plus an offset the
// test moves.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// env is a running pipeline, a console on it, and three people: analysts
// A and B, and Admin, an analyst who is also a member of herd_admin.
type env struct {
	P       *herdtest.Pipeline
	Console *console.Server
	URL     string
	Clock   *clock
	Lake    string
	A, B    analysts.Analyst
	Admin   analysts.Analyst
}

type envOptions struct {
	adjust  func(*console.Config)
	archive bool // run an archiver into a lake directory
}

func start(t *testing.T, o envOptions) *env {
	t.Helper()
	p := herdtest.Start(t, herdtest.Options{})
	e := &env{P: p, Clock: &clock{}}
	e.A = addAnalyst(t, p.DB, "ca")
	e.B = addAnalyst(t, p.DB, "cb")
	e.Admin = addAnalyst(t, p.DB, "cadm")
	grant := "GRANT " + console.AdminRole + " TO " + pgx.Identifier{e.Admin.Name}.Sanitize()
	for i := 0; ; i++ {
		_, err := p.DB.Exec(context.Background(), grant)
		if err == nil {
			break
		}
		if i == 10 {
			t.Fatalf("%s: %v", grant, err)
		}
		time.Sleep(100 * time.Millisecond) // tuple concurrently updated, as in dropRole
	}
	cfg := console.Config{
		DB: p.DB, DatabaseURL: p.DBURL, NATS: natstest.Connect(t, p.NATS), JS: p.JS, Stream: p.Stream,
		Log: p.Log, Now: e.Clock.Now,
	}
	if o.archive {
		e.Lake = t.TempDir()
		lake := archive.NewDir(e.Lake)
		ctx, cancel := context.WithCancel(context.Background())
		a := archive.New(archive.Config{Stream: p.Stream, FileMaxAge: 100 * time.Millisecond}, lake, p.JS, p.Log, prometheus.NewRegistry())
		done := make(chan struct{})
		go func() { defer close(done); _ = a.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		cfg.Locate = func(ctx context.Context, src int64, ts time.Time, seq uint64) (string, string, error) {
			key, _, err := archive.Locate(ctx, lake, src, ts, seq)
			return key, path.Dir(key), err
		}
	}
	if o.adjust != nil {
		o.adjust(&cfg)
	}
	srv, err := console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	t.Cleanup(srv.Close)
	e.Console, e.URL = srv, hs.URL
	return e
}

func exec(t *testing.T, db *pgxpool.Pool, sql string) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// addAnalyst adds an analyst with a unique name (roles are server-wide)
// in a group of the test's database, and drops both when the test ends.
func addAnalyst(t *testing.T, db *pgxpool.Pool, prefix string) analysts.Analyst {
	t.Helper()
	ctx := context.Background()
	var dbname string
	if err := db.QueryRow(ctx, "SELECT current_database()").Scan(&dbname); err != nil {
		t.Fatal(err)
	}
	group := "grp_" + dbname
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := prefix + "_" + hex.EncodeToString(b)
	t.Cleanup(func() { dropRole(t, db, group) })
	a, err := analysts.Add(ctx, db, herdtest.Logger(t), analysts.Config{Group: group}, name)
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
	// The console's connections as the role close with the console; wait
	// for the server to see them gone.
	for i := 0; i < 50; i++ {
		var n int
		_ = db.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", name).Scan(&n)
		if n == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	role := pgx.Identifier{name}.Sanitize()
	// Tests in parallel change the members of herd_admin at once, which
	// Postgres may refuse with "tuple concurrently updated": try again.
	var err error
	for i := 0; i < 10; i++ {
		if _, err = db.Exec(ctx, "DROP OWNED BY "+role+" CASCADE; DROP ROLE "+role); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("drop test role %s: %v", name, err)
}

// client is one browser: its cookies and CSRF token.
type client struct {
	t    *testing.T
	base string
	hc   *http.Client
	csrf string
	ip   string // X-Forwarded-For, when set
}

func (e *env) client(t *testing.T) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: e.URL, hc: &http.Client{Jar: jar, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request and returns the status and body. Non-GET requests
// carry the CSRF token unless hdr sets X-CSRF-Token itself.
func (c *client) do(method, p string, body any, hdr map[string]string) (int, []byte, http.Header) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+p, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method != http.MethodGet && c.csrf != "" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	if c.ip != "" {
		req.Header.Set("X-Forwarded-For", c.ip)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, p, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// json sends a request that must answer want, and decodes the body.
func (c *client) json(method, p string, body any, want int, out any) {
	c.t.Helper()
	st, b, _ := c.do(method, p, body, nil)
	if st != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, p, st, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, p, b, err)
		}
	}
}

type loginReply struct {
	User  string `json:"user"`
	Admin bool   `json:"admin"`
	CSRF  string `json:"csrf"`
}

func (c *client) login(user, password string) (int, loginReply) {
	c.t.Helper()
	st, b, _ := c.do(http.MethodPost, "/api/login", map[string]string{"user": user, "password": password}, nil)
	var r loginReply
	if st == http.StatusOK {
		if err := json.Unmarshal(b, &r); err != nil {
			c.t.Fatal(err)
		}
		c.csrf = r.CSRF
	}
	return st, r
}

func (e *env) signIn(t *testing.T, a analysts.Analyst) *client {
	t.Helper()
	c := e.client(t)
	if st, _ := c.login(a.Name, a.Password); st != http.StatusOK {
		t.Fatalf("sign in as %s: %d", a.Name, st)
	}
	return c
}

type result struct {
	Columns []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"columns"`
	Rows      [][]any `json:"rows"`
	Truncated bool    `json:"truncated"`
	RowCount  int64   `json:"row_count"`
	Error     string  `json:"error"`
	Code      string  `json:"code"`
}

// send posts one track event through the collector with the server
// source's key and returns the status.
func send(t *testing.T, p *herdtest.Pipeline, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/v1/track", strings.NewReader(body))
	req.SetBasicAuth(p.Server.WriteKey, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sse reads Server-Sent Events from a response body.
type sse struct {
	r *bufio.Reader
}

// next returns the next event's name and data.
func (s *sse) next() (string, string, error) {
	var name, data string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if name != "" || data != "" {
				return name, data, nil
			}
		case strings.HasPrefix(line, "event: "):
			name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		}
	}
}

func mustPrefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}
