package collector

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/herdhq/herd/membudget"
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
		Help: "Requests answered 503 because the memory budget was reached, by what reached it (heap: the live heap past its bound; in_flight: request bytes awaiting JetStream past InFlightBytes; stream_rate: bytes put on the stream past StreamByteRate).",
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

// admitStream holds a request about to publish while the stream byte rate
// is spent. Requests pay for what they published once it is encoded
// (chargeStream), so the bucket may run into debt; a request that finds it
// in debt waits until the rate has paid it back, up to DecodeWait: a client
// sending faster than the rate is slowed rather than refused, and
// refusals (each a round trip the client repeats) stay few. Past that it
// answers 503 with Retry-After and returns false. The bytes put on the
// stream over a stretch are the rate over it plus the burst plus what the
// requests admitted at once publish (bounded by the bytes in flight).
func (c *Collector) admitStream(ctx *fasthttp.RequestCtx, now time.Time) bool {
	b := c.streamBytes
	if b == nil {
		return true
	}
	wait := b.owed(now)
	if wait > c.cfg.DecodeWait {
		c.inFlight.refused.WithLabelValues("stream_rate").Inc()
		ctx.Response.Header.Set("Retry-After", retryAfter(wait))
		replyError(ctx, fasthttp.StatusServiceUnavailable, fmt.Sprintf("collector at the stream byte rate its memory budget allows (%s/s; raise --memory-limit for more); nothing was stored; retry after %ss", membudget.Format(int64(b.rate)), retryAfter(wait)))
		return false
	}
	if wait > 0 {
		c.m.streamWaits.Inc()
		time.Sleep(wait)
	}
	return true
}

// chargeStream takes the n bytes a request published from the stream
// byte rate's bucket.
func (c *Collector) chargeStream(n int, now time.Time) {
	if b := c.streamBytes; b != nil && n > 0 {
		b.charge(float64(n), now)
	}
}
