// Package duckdbtest runs SQL in DuckDB from tests, through node and
// @duckdb/node-api (installed from the npm registry on first use), so that
// tests read the lake the way an analyst's DuckDB does.
package duckdbtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// dir holds query.mjs and the package.json that pins @duckdb/node-api.
var dir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "archive", "testdata", "duckdb")
}()

var (
	once       sync.Once
	installErr error
)

// install runs npm ci once per machine: packages' tests run as parallel
// processes, so a file lock keeps two from installing into the same folder.
func install() error {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api")); err == nil {
		return nil
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api")); err == nil {
		return nil // another process installed it while this one waited
	}
	cmd := exec.Command("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return nil
}

// Query runs sql and returns its rows. The test is skipped when node is
// missing or the package cannot be installed (no registry), and fails when
// the query does.
func Query(t testing.TB, sql string) []map[string]any {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed; the DuckDB check needs it")
	}
	once.Do(func() { installErr = install() })
	if installErr != nil {
		t.Skipf("cannot install @duckdb/node-api: %v", installErr)
	}
	cmd := exec.Command("node", "query.mjs")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(sql)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("duckdb query failed: %v\n%s\nquery: %s", err, stderr.String(), sql)
	}
	var rows []map[string]any
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("duckdb output: %v: %.300s", err, out)
	}
	return rows
}
