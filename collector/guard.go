package collector

import (
	"runtime/debug"
	"strings"

	"github.com/valyala/fasthttp"
)

// serve is the server's handler: Handle, with a panic turned into a 500 for
// that request. fasthttp recovers nothing, so without this one request that
// meets a bug (in herd or a library under it) would end the process and every
// request in flight with it. The client is told to retry; an event of the
// request that did reach the stream meets its retry in the writer's ledger.
func (c *Collector) serve(ctx *fasthttp.RequestCtx) {
	defer func() {
		if v := recover(); v != nil {
			c.m.panics.Inc()
			c.log.Error("request failed inside herd and was answered 500; please report this with the stack",
				"path", redactPath(string(ctx.Path())), "panic", v, "stack", string(debug.Stack()))
			ctx.Response.Reset()
			c.cors(ctx)
			ctx.Response.Header.Set("Retry-After", "1")
			replyError(ctx, fasthttp.StatusInternalServerError, "internal error: the request may not be stored; retry")
		}
	}()
	done := c.readBody(ctx)
	if done == nil {
		return
	}
	defer done()
	c.Handle(ctx)
}

// redactPath is a request path fit for the log: the write key in a settings
// path (/v1/projects/KEY/settings) is replaced, as a key is a credential.
func redactPath(path string) string {
	rest, ok := strings.CutPrefix(path, "/v1")
	if !ok {
		rest = path
	}
	key, ok := strings.CutPrefix(rest, "/projects/")
	if !ok {
		return path
	}
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return path[:len(path)-len(key)] + "REDACTED" + key[i:]
	}
	return path[:len(path)-len(key)] + "REDACTED"
}
