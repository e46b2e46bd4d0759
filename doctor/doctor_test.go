package doctor_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/doctor"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// want fails the test when r is not at level, naming the check.
func want(t *testing.T, r doctor.Result, level doctor.Level) {
	t.Helper()
	if r.Level != level {
		t.Errorf("%s: %s (%s), want %s", r.Check, r.Level, r.Message, level)
	}
	if level != doctor.OK && r.Fix == "" {
		t.Errorf("%s: %s without a fix: %s", r.Check, r.Level, r.Message)
	}
}

func TestWebhooks(t *testing.T) {
	for _, c := range []struct {
		name        string
		secret, key bool
		level       doctor.Level
	}{
		{"secret without key", true, false, doctor.Warn},
		{"secret and key", true, true, doctor.OK},
		{"key alone", false, true, doctor.OK},
		{"neither", false, false, doctor.OK},
	} {
		t.Run(c.name, func(t *testing.T) {
			want(t, doctor.Webhooks("Stripe", "STRIPE_WEBHOOK_SECRET", c.secret, "$STRIPE_API_KEY", c.key), c.level)
		})
	}
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "City.mmdb")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		level      doctor.Level
	}{
		{"missing", filepath.Join(dir, "GeoLite2-City.mmdb"), doctor.Fail},
		{"a directory", dir, doctor.Fail},
		{"present", file, doctor.OK},
		{"not set", "", doctor.OK},
	} {
		t.Run(c.name, func(t *testing.T) { want(t, doctor.File("geoip-db", c.path), c.level) })
	}
}

func TestWritable(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "data")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, dir string
		level     doctor.Level
	}{
		{"under a file", filepath.Join(blocker, "lake"), doctor.Fail},
		{"existing", dir, doctor.OK},
		{"to be created", filepath.Join(dir, "new", "lake"), doctor.OK},
	} {
		t.Run(c.name, func(t *testing.T) { want(t, doctor.Writable("lake", c.dir), c.level) })
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("the check created %s: %v", filepath.Join(dir, "new"), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the check left files behind: %v", entries)
	}
}

func TestAdminListener(t *testing.T) {
	for _, c := range []struct {
		name, listen, token string
		level               doctor.Level
	}{
		{"everywhere without a token", "0.0.0.0:8081", "", doctor.Fail},
		{"everywhere with a token", ":8081", "the one in /etc/herd/admin.token", doctor.Warn},
		{"loopback", "127.0.0.1:8081", "", doctor.OK},
		{"not an address", "8081", "", doctor.Fail},
	} {
		t.Run(c.name, func(t *testing.T) { want(t, doctor.AdminListener(c.listen, c.token), c.level) })
	}
}

func TestFreeDisk(t *testing.T) {
	dir := t.TempDir()
	const huge = 1 << 62
	want(t, doctor.FreeDisk(dir, huge, huge), doctor.Fail)
	want(t, doctor.FreeDisk(dir, huge, 0), doctor.Warn)
	want(t, doctor.FreeDisk(dir, 0, 0), doctor.OK)
	want(t, doctor.FreeDisk(filepath.Join(dir, "missing"), 0, 0), doctor.Fail)
}

func TestConnections(t *testing.T) {
	db := pgtest.Pool(t, pgtest.New(t))
	ctx := context.Background()
	var maxConns int
	if err := db.QueryRow(ctx, "SELECT current_setting('max_connections')::int").Scan(&maxConns); err != nil {
		t.Fatal(err)
	}
	want(t, doctor.Connections(ctx, db, maxConns+1), doctor.Fail)
	want(t, doctor.Connections(ctx, db, 1), doctor.OK)
}

func TestClockSkew(t *testing.T) {
	db := pgtest.Pool(t, pgtest.New(t))
	ctx := context.Background()
	shifted := func(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }
	want(t, doctor.ClockSkew(ctx, db, shifted(-5*time.Minute)), doctor.Fail)
	want(t, doctor.ClockSkew(ctx, db, shifted(10*time.Second)), doctor.Warn)
	want(t, doctor.ClockSkew(ctx, db, time.Now), doctor.OK)
}

// TestServerSettings: wal_level and pg_stat_statements fail on a server
// without them (the shared test server, when it is such a one) and pass
// on a private cluster started with them.
func TestServerSettings(t *testing.T) {
	ctx := context.Background()
	shared := pgtest.Pool(t, pgtest.New(t))
	var level, libs string
	if err := shared.QueryRow(ctx, "SELECT current_setting('wal_level'), current_setting('shared_preload_libraries')").Scan(&level, &libs); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		want(t, doctor.WALLevel(ctx, shared, "of replication app"), doctor.Fail)
	}
	if !strings.Contains(libs, "pg_stat_statements") {
		want(t, doctor.StatStatements(ctx, shared), doctor.Warn)
	}

	c := pgtest.Cluster(t, map[string]string{"wal_level": "logical", "shared_preload_libraries": "pg_stat_statements"})
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	want(t, doctor.WALLevel(ctx, conn, "of replication app"), doctor.OK)
	want(t, doctor.StatStatements(ctx, conn), doctor.Warn) // loaded, not installed
	if _, err := conn.Exec(ctx, "CREATE EXTENSION pg_stat_statements"); err != nil {
		t.Fatal(err)
	}
	want(t, doctor.StatStatements(ctx, conn), doctor.OK)
}
