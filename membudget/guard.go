package membudget

import (
	"context"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Guard samples the runtime's memory on a timer, so that asking whether
// the process is over its budget is one atomic load: requests never read
// runtime statistics themselves (ReadMemStats stops the world).
type Guard struct {
	sizes Sizes
	every time.Duration
	live  atomic.Int64 // heap live at the last collection
	total atomic.Int64 // memory the runtime holds, less what it returned
	over  atomic.Bool
	// idleReleases counts the times free memory was returned to the OS
	// when the process went quiet after work (idle.go).
	idleReleases prometheus.Counter
	samples      []metrics.Sample
}

// NewGuard returns a guard of s, sampling every 10ms once Run starts, with
// its metrics registered on reg: the derived sizes
// (herd_memory_budget_bytes{part}) and the sampled heap and runtime totals.
func NewGuard(s Sizes, reg prometheus.Registerer) *Guard {
	g := &Guard{sizes: s, every: 10 * time.Millisecond, samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}}
	g.sample()
	budget := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "herd_memory_budget_bytes",
		Help: "Sizes derived from --memory-limit, by part (limit: the whole budget; gomemlimit: the runtime's soft limit; heap_high: the live heap past which the collector answers 503)"}, []string{"part"})
	for k, v := range s.parts() {
		if v > 0 {
			budget.WithLabelValues(k).Set(float64(v))
		}
	}
	if s.StreamRate > 0 {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herd_memory_stream_rate_bytes_per_second",
			Help: "Bytes a second the collector may put on the stream, set from --memory-limit so that embedded JetStream's block caches stay within their share; past it requests wait, then get 503"},
			func() float64 { return float64(s.StreamRate) }))
	}
	g.idleReleases = prometheus.NewCounter(prometheus.CounterOpts{Name: "herd_memory_idle_releases_total",
		Help: "Times the process, quiet after work, collected and returned its free memory to the OS"})
	reg.MustRegister(budget, g.idleReleases,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herd_memory_heap_live_bytes", Help: "Live heap as of the last garbage collection, as the memory guard last sampled it"},
			func() float64 { return float64(g.live.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herd_memory_runtime_bytes", Help: "Memory the Go runtime holds from the OS (what GOMEMLIMIT bounds), as the memory guard last sampled it"},
			func() float64 { return float64(g.total.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herd_memory_over_budget", Help: "1 while the collector refuses requests for memory"},
			func() float64 {
				if g.over.Load() {
					return 1
				}
				return 0
			}),
	)
	return g
}

// Sizes returns the sizes the guard holds the process to.
func (g *Guard) Sizes() Sizes { return g.sizes }

// Run samples until ctx ends.
func (g *Guard) Run(ctx context.Context) error {
	t := time.NewTicker(g.every)
	defer t.Stop()
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	r := newIdleRelease()
	r.releasesInc = g.idleReleases.Inc
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			g.sample()
		case now := <-idle.C:
			if r.tick(now, r.read(), time.Second) {
				g.sample()
			}
		}
	}
}

func (g *Guard) sample() {
	metrics.Read(g.samples)
	live := int64(g.samples[0].Value.Uint64())
	total := int64(g.samples[1].Value.Uint64()) - int64(g.samples[2].Value.Uint64())
	g.live.Store(live)
	g.total.Store(total)
	// Over when what survived the last collection passes HeapHigh, or
	// when the runtime holds more than its limit: the collector cannot
	// keep up and the garbage is as real to the kernel as the live heap.
	g.over.Store(live > g.sizes.HeapHigh || total > g.sizes.GoLimit+g.sizes.Reserve/2)
}

// Over reports whether the process is over its budget, as last sampled.
func (g *Guard) Over() bool { return g != nil && g.over.Load() }
