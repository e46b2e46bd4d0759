package collector

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// MemoryGuard says whether the process is over its memory budget; it is
// asked once per event request, so it must answer from a sample
// (membudget.Guard does).
type MemoryGuard interface {
	Over() bool
}

// inFlight counts the bytes of request bodies admitted to the event
// endpoints and not yet answered: they wait for JetStream's acknowledgement
// holding their body, so under a slow stream they are what grows.
type inFlight struct {
	limit   int64
	n       atomic.Int64
	refused *prometheus.CounterVec
}

func (f *inFlight) register(limit int64, reg prometheus.Registerer) {
	f.limit = limit
	f.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herd_collector_memory_refused_requests_total",
		Help: "Requests answered 503 because the memory budget was reached, by what reached it (heap: the live heap past its bound; in_flight: request bytes awaiting JetStream past InFlightBytes).",
	}, []string{"reason"})
	if reg != nil {
		reg.MustRegister(f.refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herd_collector_in_flight_bytes", Help: "Bytes of event request bodies admitted and not yet answered.",
		}, func() float64 { return float64(f.n.Load()) }))
	}
}

// admit reserves n bytes of room, or refuses the request with 503 when the
// memory guard says the process is over its budget or the bytes in flight
// would pass their limit. The returned func gives the room back; it is nil
// when the request was refused and already answered.
func (c *Collector) admit(ctx *fasthttp.RequestCtx, n int64) func() {
	f := &c.inFlight
	if c.cfg.Memory != nil && c.cfg.Memory.Over() {
		f.refused.WithLabelValues("heap").Inc()
		// The connection is closed: fasthttp keeps a connection's
		// request buffers (its last body's size) while it is open.
		ctx.SetConnectionClose()
		ctx.Response.Header.Set("Retry-After", "1")
		replyError(ctx, fasthttp.StatusServiceUnavailable, "collector over its memory budget; nothing was stored; retry after 1s")
		return nil
	}
	if f.limit > 0 {
		if v := f.n.Add(n); v > f.limit && v != n {
			f.n.Add(-n)
			f.refused.WithLabelValues("in_flight").Inc()
			ctx.Response.Header.Set("Retry-After", "1")
			replyError(ctx, fasthttp.StatusServiceUnavailable, fmt.Sprintf("collector busy: %d bytes of requests await their acknowledgement (the limit); nothing was stored; retry after 1s", f.limit))
			return nil
		}
	} else {
		f.n.Add(n)
	}
	return func() { f.n.Add(-n) }
}
