package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdhq/herd/analysts"
	"github.com/herdhq/herd/console"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/jackc/pgx/v5/pgxpool"
)

// serve runs a console on db (herd's pool on dbURL) for the test.
func serve(t *testing.T, db *pgxpool.Pool, dbURL string) *env {
	t.Helper()
	srv, err := console.New(console.Config{DB: db, DatabaseURL: dbURL, Log: herdtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	t.Cleanup(srv.Close)
	return &env{Console: srv, URL: hs.URL, Clock: &clock{}}
}

// withUser returns dbURL connecting as user with password.
func withUser(t *testing.T, dbURL, user, password string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	q := u.Query()
	q.Del("passfile")
	u.RawQuery = q.Encode()
	return u.String()
}

// TestTrustServerWithoutVerifierRefusesSignIn: on a server that trusts
// every connection, a herd that cannot read pg_authid (not a superuser)
// cannot check a password, so nobody signs in, and the answer says what
// to configure.
func TestTrustServerWithoutVerifierRefusesSignIn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.New(t)
	admin := pgtest.Pool(t, dbURL)
	if _, err := schemas.Migrate(ctx, admin); err != nil {
		t.Fatal(err)
	}
	a := addAnalyst(t, admin, "ct")
	low := addAnalyst(t, admin, "herdlow") // a role without superuser, as herd
	e := serve(t, pgtest.Pool(t, withUser(t, dbURL, low.Name, low.Password)), dbURL)
	c := e.client(t)
	st, body, _ := c.do("POST", "/api/login", map[string]string{"user": a.Name, "password": "wrong"}, nil)
	if st != http.StatusServiceUnavailable || !strings.Contains(string(body), "pg_hba") {
		t.Fatalf("sign-in on a trust server herd cannot check: %d %s, want 503 naming pg_hba", st, body)
	}
	if st, _ := c.login(a.Name, a.Password); st != http.StatusServiceUnavailable {
		t.Fatalf("even the right password: %d, want 503", st)
	}
}

// scramCluster starts a private cluster that requires SCRAM passwords for
// every connection, as herd up's own is.
func scramCluster(t *testing.T) *pgcluster.Cluster {
	t.Helper()
	if _, err := pgcluster.FindBinDir(); err != nil {
		t.Skipf("no PostgreSQL server binaries: %v", err)
	}
	dir, err := os.MkdirTemp("", "herd-console-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c, err := pgcluster.New(filepath.Join(dir, "data"), 0)
	if err != nil {
		t.Fatal(err)
	}
	c.PassFile = filepath.Join(dir, "pgpass")
	ctx := context.Background()
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background(), "immediate") })
	return c
}

// TestSignInOnScramServer: on a server that asks for passwords, sign-in
// works whether herd is a superuser (verifier and server both check) or
// not (the server checks), and a wrong password is refused either way.
func TestSignInOnScramServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := scramCluster(t)
	dbURL := c.URL("postgres")
	super := pgtest.Pool(t, dbURL)
	if _, err := schemas.Migrate(ctx, super); err != nil {
		t.Fatal(err)
	}
	a, err := analysts.Add(ctx, super, herdtest.Logger(t), analysts.Config{}, "scram_a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := super.Exec(ctx, "CREATE ROLE lowherd LOGIN PASSWORD 'low-pw-123'"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		db   *pgxpool.Pool
	}{
		{"herd superuser", super},
		{"herd not superuser", pgtest.Pool(t, withUser(t, dbURL, "lowherd", "low-pw-123"))},
	} {
		e := serve(t, tc.db, dbURL)
		cl := e.client(t)
		if st, _ := cl.login(a.Name, a.Password+"x"); st != http.StatusUnauthorized {
			t.Fatalf("%s: wrong password: %d, want 401", tc.name, st)
		}
		st, who := cl.login(a.Name, a.Password)
		if st != http.StatusOK || who.User != a.Name {
			t.Fatalf("%s: right password: %d %+v", tc.name, st, who)
		}
		var res result
		cl.json("POST", "/api/query", map[string]any{"sql": "SELECT current_user"}, 200, &res)
		if res.Rows[0][0] != a.Name {
			t.Fatalf("%s: query ran as %v, want %s", tc.name, res.Rows[0][0], a.Name)
		}
	}
}
