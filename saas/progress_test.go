package saas

import (
	"bytes"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestProgressLogsRateAndETA(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	clock := time.Unix(1000, 0)
	p := NewProgress(log, "intercom", "contacts", 1000, 100)
	p.now = func() time.Time { return clock }
	p.start, p.last = clock, clock
	clock = clock.Add(5 * time.Second)
	p.Add(50) // within Every: no line
	if buf.Len() != 0 {
		t.Fatalf("logged before Every passed: %s", buf.String())
	}
	clock = clock.Add(5 * time.Second)
	p.Add(50) // 100 rows in 10 s this run, 200 of 1000 in all: 800 left at 10/s
	line := buf.String()
	for _, want := range []string{"backfill in progress", "object=contacts", "rows=200", "rows_per_s=10", "total=1000", "percent=20", "eta=1m20s"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line lacks %q: %s", want, line)
		}
	}
	buf.Reset()
	p.Done()
	if !strings.Contains(buf.String(), "backfill done") || p.Rows() != 200 {
		t.Errorf("done line %q, rows %d", buf.String(), p.Rows())
	}
}

func TestFreshnessGauges(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := NewFreshness(reg, "front")
	if NewFreshness(reg, "front") != f {
		t.Fatal("a second connector of the same name got its own gauges")
	}
	now := time.Unix(5000, 0)
	f.now = func() time.Time { return now }
	if v := testutil.ToFloat64(mustGather(t, reg, "herd_saas_lag_seconds")); !math.IsNaN(v) {
		t.Errorf("lag before any pass %v, want NaN", v)
	}
	f.SyncedUntil(now.Add(-30 * time.Second))
	f.SyncedUntil(now.Add(-90 * time.Second)) // older: ignored
	f.Applied(now.Add(-10 * time.Minute))
	if v := testutil.ToFloat64(mustGather(t, reg, "herd_saas_lag_seconds")); v != 30 {
		t.Errorf("lag %v, want 30", v)
	}
	if v := testutil.ToFloat64(mustGather(t, reg, "herd_saas_newest_change_age_seconds")); v != 600 {
		t.Errorf("newest change age %v, want 600", v)
	}
}

// mustGather returns a collector that yields reg's metric of that name.
func mustGather(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			v := mf.GetMetric()[0].GetGauge().GetValue()
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x"}, func() float64 { return v })
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}
