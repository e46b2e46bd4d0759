package stripe

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// herd_stripe_last_success_timestamp_seconds, which the HerdStripeStale
// alert reads, is set when a sync finishes, advances with each later one,
// and stays where it was while syncs fail (Stripe refuses the key).
func TestLastSuccessAdvancesWithSyncs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	last := func() float64 { return testutil.ToFloat64(h.s.m.lastSuccess) }
	if v := last(); v != 0 {
		t.Fatalf("herd_stripe_last_success_timestamp_seconds = %v before any sync, want 0", v)
	}
	start := time.Now().Unix()
	h.sync() // the full backfill
	first := last()
	if first < float64(start) {
		t.Fatalf("herd_stripe_last_success_timestamp_seconds = %v after the first sync finished, want at least %d", first, start)
	}

	time.Sleep(1100 * time.Millisecond) // the gauge has whole seconds
	h.fake.create("customers", map[string]any{"email": "later@example.com"})
	h.sync() // incremental
	second := last()
	if second <= first {
		t.Fatalf("herd_stripe_last_success_timestamp_seconds = %v after a later sync, was %v; want it to advance", second, first)
	}

	time.Sleep(1100 * time.Millisecond)
	h.fake.mu.Lock()
	h.fake.key = "sk_test_rotated" // herd's key is refused
	h.fake.mu.Unlock()
	if err := h.s.Sync(context.Background()); err == nil {
		t.Fatal("sync with a refused key succeeded")
	}
	if v := last(); v != second {
		t.Fatalf("herd_stripe_last_success_timestamp_seconds = %v after a failed sync, want it to stay %v", v, second)
	}
}
