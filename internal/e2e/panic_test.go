package e2e

import (
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
)

// boomEnricher fails on one event name, as a bug in herd or a library under
// it would on some input.
type boomEnricher struct{}

func (boomEnricher) Enrich(ev *herd.Event) {
	if ev.Event == "boom" {
		panic("enricher bug")
	}
}

// TestPanicIsA500: a request that meets a bug is answered 500 with a JSON
// error and Retry-After, counted, and the collector goes on serving; no event
// of the failed request is stored.
func TestPanicIsA500(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{Collector: func(c *collector.Config) { c.Enricher = boomEnricher{} }})
	auth := map[string]string{"Authorization": basic(p.WriteKey), "Origin": "https://shop.example"}
	r := post(t, p.URL+"/v1/track", []byte(`{"event":"boom","userId":"u","messageId":"m-boom"}`), auth)
	if r.Status != 500 || r.Body["success"] != false || r.Body["error"] == nil || r.Header.Get("Retry-After") == "" {
		t.Fatalf("panicking request: %d %v %s", r.Status, r.Header, r.RawBody)
	}
	if r.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Errorf("500 without CORS headers: %v", r.Header)
	}
	for i := range 3 {
		if r := post(t, p.URL+"/v1/track", []byte(`{"event":"fine","userId":"u","messageId":"m-fine-`+string(rune('a'+i))+`"}`), auth); r.Status != 200 {
			t.Fatalf("request after the panic: %d %s", r.Status, r.RawBody)
		}
	}
	if n := p.WaitRows(t, 3, 10*time.Second, "SELECT count(*) FROM herd.events"); n != 3 {
		t.Fatalf("rows %d, want the 3 fine events", n)
	}
	if n := counterValue(t, p, "herd_collector_panics_total"); n != 1 {
		t.Errorf("herd_collector_panics_total = %v, want 1", n)
	}
}
