// Package pgtest gives each test a fresh database on a real PostgreSQL server
// (HERD_TEST_DATABASE_URL, else the local server on 127.0.0.1:5432), and a
// private cluster for tests that must stop, restart or reconfigure a server.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// AdminURL is the server tests create their databases on.
func AdminURL() string {
	if u := os.Getenv("HERD_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// NewDB creates an empty database for this test on the server at adminURL
// and returns its URL; the database is dropped when the test ends.
func NewDB(t testing.TB, adminURL string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v (is PostgreSQL running?)", adminURL, err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "herd_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", adminURL, err)
	}
	u.Path = "/" + name
	return u.String()
}

// New creates a fresh database on the shared test server and returns its URL.
func New(t testing.TB) string {
	t.Helper()
	return NewDB(t, AdminURL())
}

// Pool opens a pool on url, closed when the test ends.
func Pool(t testing.TB, dbURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("pgtest: pool %s: %v", dbURL, err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Cluster starts a private cluster with the given settings (for example
// wal_level=logical) in a temporary directory, stopped when the test ends.
// It skips the test when no PostgreSQL server binaries are installed.
func Cluster(t testing.TB, config map[string]string) *pgcluster.Cluster {
	t.Helper()
	if _, err := pgcluster.FindBinDir(); err != nil {
		t.Skipf("pgtest: %v", err)
	}
	dir, err := os.MkdirTemp("", "herd-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c, err := pgcluster.New(filepath.Join(dir, "data"), 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Config = config
	ctx := context.Background()
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.Running(context.Background()) {
			_ = c.Stop(context.Background(), "immediate")
		}
	})
	return c
}
