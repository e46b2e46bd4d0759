package front

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Lag is published: herd_saas_lag_seconds{source="front"} is NaN before the
// first pass, small after one, and grows while passes fail (Front refuses
// the token); herd_front_last_success_timestamp_seconds stays put then.
func TestLagFollowsPasses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.fake.conversation(2, 1)
	lag := func() float64 {
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "herd_saas_lag_seconds" {
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "source" && l.GetValue() == "front" {
							return m.GetGauge().GetValue()
						}
					}
				}
			}
		}
		t.Fatal("no herd_saas_lag_seconds{source=\"front\"}")
		return 0
	}
	if v := lag(); !math.IsNaN(v) {
		t.Fatalf("lag %v before any pass, want NaN", v)
	}
	h.sync()
	first := lag()
	if first < 0 || first > 5 {
		t.Fatalf("lag %v s after a pass, want a few seconds at most", first)
	}
	success := testutil.ToFloat64(h.s.m.lastSuccess)
	if success == 0 {
		t.Fatal("herd_front_last_success_timestamp_seconds not set after a pass")
	}
	time.Sleep(1100 * time.Millisecond)
	h.fake.mu.Lock()
	h.fake.token = "rotated"
	h.fake.mu.Unlock()
	if err := h.s.Sync(context.Background()); err == nil {
		t.Fatal("a pass with a refused token succeeded")
	}
	if v := lag(); v < first+1 {
		t.Errorf("lag %v after a failed pass, want it grown past %v", v, first+1)
	}
	if v := testutil.ToFloat64(h.s.m.lastSuccess); v != success {
		t.Errorf("last success moved to %v on a failed pass", v)
	}
	if got := h.one(`SELECT last_error FROM front.sync_state WHERE object = 'events'`); got == "" {
		t.Error("the failed pass left no last_error in front.sync_state")
	}
}
