package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"golang.org/x/sync/semaphore"
)

// Request bodies are streamed (fasthttp's StreamRequestBody): fasthttp
// reads a request's headers and at most the first 8 KiB of its body before
// the handler runs, and the rest is read here only once its bytes are
// admitted. Without it every connection could hold a whole body while it
// arrives (connections × MaxBatchBytes, far past any memory budget,
// whatever the handler answers after).
const (
	// maxBodyBytes is the largest body read: the largest batch plus room
	// for its framing.
	maxBodyBytes = MaxBatchBytes + 64<<10
	// prefetched is what fasthttp reads of a body before the handler runs
	// (its own constant): a body this small is already in memory, and is
	// not made to wait.
	prefetched = 8 << 10
	// chunkStep is how much of a chunked body (no Content-Length) is
	// admitted at a time while it is read.
	chunkStep = 64 << 10
	// DefaultBodyBytes bounds the request bodies read and held at once
	// when no memory budget sets BodyBytes: 64 MiB, about 110 of the
	// largest batches.
	DefaultBodyBytes = 64 << 20
)

// bodyGate admits request bodies by their bytes before they are read.
type bodyGate struct {
	sem     *semaphore.Weighted
	size    int64
	wait    time.Duration
	held    prometheus.Gauge
	refused prometheus.Counter
}

func newBodyGate(size int64, wait time.Duration, reg prometheus.Registerer) *bodyGate {
	g := &bodyGate{sem: semaphore.NewWeighted(size), size: size, wait: wait}
	g.held = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "herd_collector_body_bytes",
		Help: "Bytes of request bodies admitted to be read and not yet answered (bounded by the collector's body budget).",
	})
	g.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "herd_collector_body_refused_total",
		Help: "Requests answered 503 because their body found no room in the body budget in time.",
	})
	if reg != nil {
		reg.MustRegister(g.held, g.refused)
	}
	return g
}

// acquire waits up to the gate's wait for n bytes of room.
func (g *bodyGate) acquire(n int64) bool {
	if !g.sem.TryAcquire(n) {
		ctx, cancel := context.WithTimeout(context.Background(), g.wait)
		err := g.sem.Acquire(ctx, n)
		cancel()
		if err != nil {
			return false
		}
	}
	g.held.Add(float64(n))
	return true
}

func (g *bodyGate) release(n int64) {
	if n > 0 {
		g.sem.Release(n)
		g.held.Sub(float64(n))
	}
}

// bodyBufs keeps body buffers of up to 64 KiB for reuse; larger ones go
// to the garbage collector, so that a burst of large bodies does not stay
// resident.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, prefetched); return &b }}

var errBodyTooLarge = errors.New("body too large")

// readBody reads a streamed request body once its bytes are admitted and
// makes it the request's body. It returns a func to call once the request
// is answered (it gives the bytes and the buffer back), or nil when the
// request was answered here (413 over the limit, 503 with Retry-After
// when the body budget had no room in time, 400 when the body did not
// arrive whole).
func (c *Collector) readBody(ctx *fasthttp.RequestCtx) func() {
	if len(ctx.Request.Header.Peek(tooLargeMark)) > 0 {
		c.bodyTooLarge(ctx)
		return nil
	}
	stream := ctx.RequestBodyStream()
	if stream == nil {
		return func() {}
	}
	g := c.bodies
	cl := ctx.Request.Header.ContentLength()
	if cl > maxBodyBytes {
		c.bodyTooLarge(ctx)
		return nil
	}
	var held int64
	refuse := func() func() {
		g.release(held)
		g.refused.Inc()
		// The body is not read: the connection cannot carry another
		// request.
		ctx.SetConnectionClose()
		ctx.Response.Header.Set("Retry-After", "1")
		replyError(ctx, fasthttp.StatusServiceUnavailable, fmt.Sprintf("collector busy: %d bytes of request bodies are being read (the limit); nothing was stored; retry after 1s", g.size))
		return nil
	}
	if cl > prefetched {
		if !g.acquire(int64(cl)) {
			return refuse()
		}
		held = int64(cl)
	}
	bp := bodyBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	var err error
	if cl >= 0 {
		if cap(buf) < cl {
			buf = make([]byte, 0, cl)
		}
		buf = buf[:cl]
		_, err = io.ReadFull(stream, buf)
	} else {
		// Chunked: admitted step by step as it arrives.
		for err == nil {
			if len(buf) == cap(buf) {
				if len(buf)+1 > maxBodyBytes {
					err = errBodyTooLarge
					break
				}
				if int64(len(buf))+chunkStep > held {
					if !g.acquire(chunkStep) {
						return refuse()
					}
					held += chunkStep
				}
				buf = append(buf, make([]byte, min(chunkStep, maxBodyBytes+1-len(buf)))...)[:len(buf)]
			}
			var n int
			n, err = stream.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	done := func() {
		g.release(held)
		if cap(buf) <= chunkStep {
			*bp = buf[:0]
			bodyBufs.Put(bp)
		}
	}
	switch {
	case errors.Is(err, errBodyTooLarge):
		done()
		c.bodyTooLarge(ctx)
		return nil
	case err != nil:
		done()
		ctx.SetConnectionClose()
		c.m.requests.WithLabelValues("transport", "400").Inc()
		replyError(ctx, fasthttp.StatusBadRequest, "malformed request: the body did not arrive whole: "+err.Error())
		return nil
	}
	ctx.Request.SetBodyRaw(buf)
	return done
}

func (c *Collector) bodyTooLarge(ctx *fasthttp.RequestCtx) {
	ctx.SetConnectionClose()
	c.cors(ctx)
	c.m.requests.WithLabelValues("transport", "413").Inc()
	replyError(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", MaxBatchBytes))
}

// tooLargeMark marks, inside herd, a request whose Content-Length was over
// the limit: it is set by headerReceived (a client's own is removed).
const tooLargeMark = "X-Herd-Body-Over-Limit"

// headerReceived runs once a request's headers are read, before fasthttp
// reads any of its body. A body announced over the limit is not read at
// all (fasthttp would otherwise wait for its first 8 KiB): its length is
// set to 0 and the request marked, and readBody answers it 413 and closes
// the connection.
func (c *Collector) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	h.Del(tooLargeMark)
	if h.ContentLength() > maxBodyBytes {
		h.SetContentLength(0)
		h.Set(tooLargeMark, "1")
	}
	return fasthttp.RequestConfig{}
}
