package replicate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// sourceCluster starts a private cluster that can publish. extra settings
// override the defaults.
func sourceCluster(t *testing.T, extra map[string]string) *pgcluster.Cluster {
	t.Helper()
	conf := map[string]string{
		"wal_level":             "logical",
		"max_replication_slots": "10",
		"max_wal_senders":       "10",
		"shared_buffers":        "64MB",
	}
	for k, v := range extra {
		conf[k] = v
	}
	return startCluster(t, conf)
}

// warehouseCluster starts a private cluster for the subscriber side. The
// machine's shared server is left alone: subscriptions start background
// workers there (4 at most by default) that other tests would compete for.
func warehouseCluster(t *testing.T) *pgcluster.Cluster {
	t.Helper()
	return startCluster(t, map[string]string{
		"max_logical_replication_workers": "8",
		"max_worker_processes":            "16",
		"shared_buffers":                  "64MB",
		// A failed table sync or apply is retried after this; keep tests quick.
		"wal_retrieve_retry_interval": "500ms",
		// Lets status read the last apply error back through pg_read_file.
		"logging_collector": "on",
	})
}

// startCluster starts a private cluster with conf for this test.
func startCluster(t *testing.T, conf map[string]string) *pgcluster.Cluster {
	t.Helper()
	return pgtest.Cluster(t, conf)
}

// newDB creates a database on cluster c and returns its URL.
func newDB(t *testing.T, c *pgcluster.Cluster) string {
	t.Helper()
	return pgtest.NewDB(t, c.URL("postgres"))
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryInt(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// pair is a source database on a publishing cluster and a warehouse
// database on another cluster.
type pair struct {
	srcURL, whURL string
	src, wh       *pgxpool.Pool
	srcCluster    *pgcluster.Cluster
}

func newPair(t *testing.T, srcConf map[string]string) *pair {
	t.Helper()
	var p pair
	whc := warehouseCluster(t)
	p.srcCluster = sourceCluster(t, srcConf)
	p.srcURL, p.whURL = newDB(t, p.srcCluster), newDB(t, whc)
	p.src, p.wh = pgtest.Pool(t, p.srcURL), pgtest.Pool(t, p.whURL)
	return &p
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// requireEqual runs Check and fails unless every table matches.
func requireEqual(t *testing.T, p *pair, name string, wantTables int) []CheckResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Check(ctx, p.wh, name, 30*time.Second)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if len(res) != wantTables {
		t.Fatalf("check compared %d tables, want %d: %+v", len(res), wantTables, res)
	}
	for _, r := range res {
		if !r.Equal {
			t.Errorf("%s differs: source %d rows sum %s, warehouse %d rows sum %s", r.Table, r.SourceRows, r.SourceSum, r.TargetRows, r.TargetSum)
		}
	}
	return res
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// uniqueGroup names an analysts group for one test (roles are server-wide).
func uniqueGroup() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "analysts_" + hex.EncodeToString(b)
}

// countAs counts the rows of table as a new role that is a member of
// group only, as an analyst is (no group: a member of none). The role
// lives for one transaction.
func countAs(t *testing.T, pool *pgxpool.Pool, group, table string) (int64, error) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	role := quote("member_" + uniqueGroup())
	create := "CREATE ROLE " + role
	if group != "" {
		create += " IN ROLE " + quote(group)
	}
	if _, err := tx.Exec(ctx, create+"; SET LOCAL ROLE "+role); err != nil {
		t.Fatalf("%s: %v", create, err)
	}
	var n int64
	err = tx.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}
