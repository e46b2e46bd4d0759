package collector

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestInFlightBound: requests are admitted while the bytes in flight stay
// within the bound (a lone request larger than the bound still is, or it
// could never be stored), refused with 503 and Retry-After past it, and
// admitted again once earlier ones are answered.
func TestInFlightBound(t *testing.T) {
	c := &Collector{m: newMetrics(nil)}
	c.inFlight.register(100, nil)
	var ctx fasthttp.RequestCtx
	big := c.admit(&ctx, 150)
	if big == nil {
		t.Fatal("a lone request over the bound was refused")
	}
	var ctx2 fasthttp.RequestCtx
	if c.admit(&ctx2, 10) != nil {
		t.Fatal("a request past the bound was admitted")
	}
	if ctx2.Response.StatusCode() != 503 || len(ctx2.Response.Header.Peek("Retry-After")) == 0 {
		t.Fatalf("refused with %d, Retry-After %q; want 503 with Retry-After", ctx2.Response.StatusCode(), ctx2.Response.Header.Peek("Retry-After"))
	}
	big()
	a := c.admit(&fasthttp.RequestCtx{}, 60)
	b := c.admit(&fasthttp.RequestCtx{}, 40)
	if a == nil || b == nil {
		t.Fatal("requests within the bound were refused once the first was answered")
	}
	if c.admit(&fasthttp.RequestCtx{}, 1) != nil {
		t.Fatal("a request past a full bound was admitted")
	}
	a()
	b()
	if n := c.inFlight.n.Load(); n != 0 {
		t.Fatalf("%d bytes in flight after every request was answered", n)
	}
}

type fixedGuard bool

func (g fixedGuard) Over() bool { return bool(g) }

// TestOverBudgetClosesConnection: a request refused for the heap is
// answered 503 with Retry-After on a connection that is then closed, so
// that fasthttp drops the buffers the connection keeps.
func TestOverBudgetClosesConnection(t *testing.T) {
	c := &Collector{m: newMetrics(nil)}
	c.cfg.Memory = fixedGuard(true)
	c.inFlight.register(0, nil)
	var ctx fasthttp.RequestCtx
	if c.admit(&ctx, 10) != nil {
		t.Fatal("admitted while over the budget")
	}
	if ctx.Response.StatusCode() != 503 || len(ctx.Response.Header.Peek("Retry-After")) == 0 || !ctx.Response.ConnectionClose() {
		t.Fatalf("status %d, Retry-After %q, close %v; want 503, Retry-After, close", ctx.Response.StatusCode(), ctx.Response.Header.Peek("Retry-After"), ctx.Response.ConnectionClose())
	}
	c.cfg.Memory = fixedGuard(false)
	if done := c.admit(&fasthttp.RequestCtx{}, 10); done == nil {
		t.Fatal("refused under the budget")
	}
}
