package archive

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// flakyLake fails the first Put of every key that fail selects, once per key.
type flakyLake struct {
	Lake
	fail   func(key string) bool
	mu     sync.Mutex
	failed map[string]bool
}

func (l *flakyLake) Put(ctx context.Context, key string, data []byte) error {
	if l.fail(key) {
		l.mu.Lock()
		first := !l.failed[key]
		l.failed[key] = true
		l.mu.Unlock()
		if first {
			return errDied
		}
	}
	return l.Lake.Put(ctx, key, data)
}

func (l *flakyLake) failedKeys() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.failed)
}

// Failures on many files (data files, manifests, the lease) count under a
// fixed set of operation names: a failing lake must not grow a series per
// file in herd_archive_errors_total.
func TestErrorsMetricHasFixedLabels(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	lake := &flakyLake{Lake: NewDir(t.TempDir()), failed: map[string]bool{}, fail: func(key string) bool {
		return strings.HasSuffix(key, ".parquet") || strings.HasSuffix(key, ManifestName) || key == LeaseName
	}}
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 200, FileMaxAge: 200 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond, CloseAfter: -1}
	reg := prometheus.NewRegistry()
	a := New(cfg, lake, e.js, testLog(t), reg)
	r := startArchiver(t, a)
	// Five hours of two sources: ten partitions, each with files.
	publish(t, e.js, e.sc, genEvents(2000, []int64{1, 2}, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), 5*time.Hour, 7))
	waitArchived(t, e, cfg, 60*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if n := lake.failedKeys(); n < 10 {
		t.Fatalf("only %d keys failed; the test needs failures on many files", n)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "herd_archive_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	for op := range got {
		if !slices.Contains(errorOps, op) {
			t.Errorf("herd_archive_errors_total has op=%q, not one of the fixed operations %v", op, errorOps)
		}
	}
	if len(got) != len(errorOps) {
		t.Errorf("herd_archive_errors_total has %d series, want exactly the %d fixed operations: %v", len(got), len(errorOps), got)
	}
	for _, op := range []string{opStore, opManifest, opLease} {
		if got[op] < 1 {
			t.Errorf("herd_archive_errors_total{op=%q} = %v after failures of that operation", op, got[op])
		}
	}
}
