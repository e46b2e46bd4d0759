package replicate

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The metrics the HerdReplicationLagging and HerdReplicationUnhealthy
// alerts read follow the subscription: herd_replicate_lag_bytes grows while
// the warehouse cannot apply what the source writes and falls once it
// catches up, and so does herd_replicate_lag_seconds (a stuck apply worker
// used to read as 0.0001 s behind);
// herd_replicate_healthy drops to 0 (health "disabled") when the
// subscription stops and returns to 1.
func TestReplicationMetricsFollowLag(t *testing.T) {
	t.Parallel()
	p := newPair(t, nil)
	ctx := ctxT(t, 3*time.Minute)
	exec(t, p.src, `CREATE TABLE orders (id int PRIMARY KEY, note text);
		INSERT INTO orders SELECT g, 'n' FROM generate_series(1, 100) g`)
	if err := Add(ctx, p.wh, Config{SourceURL: p.srcURL, Tables: []string{"orders"}}); err != nil {
		t.Fatalf("add: %v", err)
	}
	requireEqual(t, p, "herd", 1)

	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(p.wh, nil))
	// sample returns the subscription's value of metric (labels beyond
	// subscription: health), and whether it is exported.
	sample := func(metric string, labels ...string) (float64, bool) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != metric {
				continue
			}
		next:
			for _, m := range mf.Metric {
				have := map[string]string{}
				for _, l := range m.Label {
					have[l.GetName()] = l.GetValue()
				}
				want := append([]string{"subscription", "herd"}, labels...)
				for i := 0; i+1 < len(want); i += 2 {
					if have[want[i]] != want[i+1] {
						continue next
					}
				}
				return value(m), true
			}
		}
		return 0, false
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	wait("the subscription is healthy and streaming", func() bool {
		h, _ := sample("herd_replicate_healthy", "health", HealthOK)
		_, streaming := sample("herd_replicate_lag_seconds")
		return h == 1 && streaming
	})
	idle, _ := sample("herd_replicate_lag_bytes")

	// The warehouse cannot apply: a transaction holds the table locked.
	// The source goes on writing; the slot's confirmed position stays.
	lock, err := p.wh.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	if _, err := lock.Exec(ctx, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	exec(t, p.src, `INSERT INTO orders SELECT g, repeat('x', 200) FROM generate_series(101, 20100) g`)
	const behind = 2 << 20 // 20,000 rows of 200 bytes: over 4 MiB of WAL
	var peak float64
	wait("herd_replicate_lag_bytes grows while the warehouse cannot apply", func() bool {
		peak, _ = sample("herd_replicate_lag_bytes")
		return peak > idle+behind
	})
	// A stuck apply worker confirms nothing: the lag in seconds grows
	// although the sender's last measured replay lag is tiny.
	wait("herd_replicate_lag_seconds grows while the warehouse cannot apply", func() bool {
		v, _ := sample("herd_replicate_lag_seconds")
		return v > 3
	})
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wait("herd_replicate_lag_bytes falls once the warehouse applies", func() bool {
		v, _ := sample("herd_replicate_lag_bytes")
		return v < peak-behind
	})
	wait("herd_replicate_lag_seconds falls once the warehouse applies", func() bool {
		v, _ := sample("herd_replicate_lag_seconds")
		return v < 3
	})
	if n := queryInt(t, p.wh, "SELECT count(*) FROM orders"); n != 20100 {
		t.Fatalf("warehouse has %d rows, want 20100", n)
	}

	exec(t, p.wh, "ALTER SUBSCRIPTION herd DISABLE")
	wait("herd_replicate_healthy is 0 with health disabled", func() bool {
		h, ok := sample("herd_replicate_healthy", "health", HealthDisabled)
		return ok && h == 0
	})
	exec(t, p.wh, "ALTER SUBSCRIPTION herd ENABLE")
	wait("herd_replicate_healthy is 1 again", func() bool {
		h, _ := sample("herd_replicate_healthy", "health", HealthOK)
		return h == 1
	})
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}
