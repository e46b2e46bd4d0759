package collector

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestPanicLogRedactsKey: the log line of a request that panicked names its
// path without the write key a settings path carries.
func TestPanicLogRedactsKey(t *testing.T) {
	t.Parallel()
	const key = "wk_secret_1234567890"
	for _, path := range []string{"/v1/projects/" + key + "/settings", "/projects/" + key + "/settings"} {
		t.Run(path, func(t *testing.T) {
			var logged bytes.Buffer
			// A collector whose sources were never loaded: looking the key up
			// panics, as a bug would.
			c := &Collector{m: newMetrics(nil), log: slog.New(slog.NewTextHandler(&logged, nil))}
			c.cfg.defaults()
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod("GET")
			ctx.Request.SetRequestURI(path)
			c.serve(&ctx)
			if ctx.Response.StatusCode() != 500 {
				t.Fatalf("status %d, want 500 (no panic?)", ctx.Response.StatusCode())
			}
			if !strings.Contains(logged.String(), "REDACTED") || strings.Contains(logged.String(), key) {
				t.Errorf("log line shows the key or no redacted path: %s", logged.String())
			}
		})
	}
	if got := redactPath("/v1/batch"); got != "/v1/batch" {
		t.Errorf("redactPath changed a path without a key: %s", got)
	}
}
