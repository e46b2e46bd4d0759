package pgcluster_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/jackc/pgx/v5"
)

// newCluster describes a cluster under a temporary directory, stopped when
// the test ends; it skips the test without PostgreSQL binaries.
func newCluster(t *testing.T, dir string, port int) *pgcluster.Cluster {
	t.Helper()
	if _, err := pgcluster.FindBinDir(); err != nil {
		t.Skip(err)
	}
	c, err := pgcluster.New(filepath.Join(dir, "pg"), port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c.Running(ctx) {
			_ = c.Stop(ctx, "immediate")
		}
	})
	return c
}

func tempDir(t *testing.T) string {
	t.Helper()
	// Not t.TempDir: when tests run as root the server runs as postgres,
	// which must be able to traverse the directory.
	dir, err := os.MkdirTemp("", "herd-pgcluster-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// connect opens a connection to url and runs a query, with password
// overriding whatever url finds (nil: as url says).
func connect(t *testing.T, url string, password *string) error {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	if password != nil {
		cfg.Password = *password
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

func bare(c *pgcluster.Cluster) string {
	return strings.Split(c.URL("postgres"), "&passfile=")[0]
}

func ptr(s string) *string { return &s }

// TestPasswordRequired: a cluster made with PassFile refuses connections
// without its password or with another, accepts its URL (which names the
// password file, not the password), keeps the file 0600, and a second start
// reuses the same password.
func TestPasswordRequired(t *testing.T) {
	dir := tempDir(t)
	c := newCluster(t, dir, 0)
	c.PassFile = filepath.Join(dir, "pgpass")
	ctx := context.Background()
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(c.PassFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %#o, want 0600", st.Mode().Perm())
	}
	before, _ := os.ReadFile(c.PassFile)
	pw := strings.Split(strings.Split(string(before), "\n")[0], ":")[4]
	if strings.Contains(c.URL("herd"), pw) {
		t.Errorf("URL %s holds the password", c.URL("herd"))
	}
	if err := connect(t, bare(c), ptr("")); err == nil {
		t.Error("connected without a password")
	}
	if err := connect(t, bare(c), ptr("postgres")); err == nil {
		t.Error("connected with a wrong password")
	}
	if err := connect(t, c.URL("postgres"), nil); err != nil {
		t.Fatalf("the cluster's URL: %v", err)
	}
	if trusting, err := c.Trusting(); err != nil || trusting {
		t.Errorf("pg_hba.conf trusts some connection (%v)", err)
	}

	// Second start, as herd up's next run does: same file, same password.
	if err := c.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	c2 := newCluster(t, dir, c.Port)
	c2.PassFile = c.PassFile
	if !c2.Initialized() {
		t.Fatal("not initialized")
	}
	if err := c2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c2.Secure(ctx); err != nil {
		t.Fatalf("Secure on a secured cluster: %v", err)
	}
	after, _ := os.ReadFile(c.PassFile)
	if string(after) != string(before) {
		t.Error("the password changed on a second start")
	}
	if err := connect(t, c2.URL("postgres"), nil); err != nil {
		t.Fatalf("second start: %v", err)
	}
	if err := connect(t, bare(c2), ptr("")); err == nil {
		t.Error("second start: connected without a password")
	}
}

// TestSecureUpgradesTrust: a cluster made with trust authentication (by an
// older herd up) gets a password at its next start, and trusts nobody after.
func TestSecureUpgradesTrust(t *testing.T) {
	dir := tempDir(t)
	c := newCluster(t, dir, 0)
	ctx := context.Background()
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := connect(t, c.URL("postgres"), ptr("")); err != nil {
		t.Fatalf("trust cluster: %v", err)
	}
	c.PassFile = filepath.Join(dir, "pgpass")
	if err := c.Secure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := connect(t, bare(c), ptr("")); err == nil {
		t.Error("connected without a password after Secure")
	}
	if err := connect(t, c.URL("postgres"), nil); err != nil {
		t.Fatalf("with the password file: %v", err)
	}
	if trusting, _ := c.Trusting(); trusting {
		t.Error("pg_hba.conf still trusts")
	}
	b, _ := os.ReadFile(filepath.Join(c.Dir, "server.log"))
	pw := strings.Split(strings.Split(mustRead(t, c.PassFile), "\n")[0], ":")[4]
	if strings.Contains(string(b), pw) {
		t.Error("the server log holds the password")
	}

	// A lost password file is an error that says how to recover.
	if err := os.Remove(c.PassFile); err != nil {
		t.Fatal(err)
	}
	err := c.Secure(ctx)
	if err == nil || !strings.Contains(err.Error(), "pg_hba.conf") {
		t.Errorf("Secure without the password file: %v, want how to reset", err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestStartUnderPathWithSpaces: a cluster whose directory has a space and a
// quote in its path (a clone under "My Projects") starts and answers.
func TestStartUnderPathWithSpaces(t *testing.T) {
	dir := filepath.Join(tempDir(t), "my herd's data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, dir, 0)
	c.PassFile = filepath.Join(dir, "pgpass")
	ctx := context.Background()
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := connect(t, c.URL("postgres"), nil); err != nil {
		t.Fatalf("the cluster's URL: %v", err)
	}
}

// TestUpgradeFromTrustNeverListensWithoutPassword: while a cluster made
// with trust authentication (by an older herd up) is given its password,
// its server accepts no TCP connection, so no local user can log in without
// one in that window; after, it trusts nobody.
func TestUpgradeFromTrustNeverListensWithoutPassword(t *testing.T) {
	dir := tempDir(t)
	c := newCluster(t, dir, 0)
	ctx := context.Background()
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	called := false
	defer pgcluster.SetBeforePassword(func(c *pgcluster.Cluster) {
		called = true
		if err := connect(t, bare(c), ptr("")); err == nil {
			t.Error("a TCP client logged in without a password while the password was being set")
		}
	})()
	c.PassFile = filepath.Join(dir, "pgpass")
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !called {
		t.Fatal("the trust cluster was not upgraded offline (the hook never ran)")
	}
	if err := connect(t, bare(c), ptr("")); err == nil {
		t.Error("connected without a password after the upgrade")
	}
	if err := connect(t, c.URL("postgres"), nil); err != nil {
		t.Fatalf("with the password file: %v", err)
	}
}
