package collector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/stream"
)

// benchEvent is a track call as analytics.js sends it, context included.
const benchEvent = `{"type":"track","event":"Product Viewed","messageId":"m-123456","userId":"user-42",` +
	`"timestamp":"2026-03-01T12:00:00.000Z","sentAt":"2026-03-01T12:00:00.250Z",` +
	`"properties":{"product_id":"sku-1234","price":19.99,"currency":"EUR","category":"books"},` +
	`"context":{"library":{"name":"analytics.js","version":"5.2.0"},` +
	`"page":{"url":"https://shop.example.com/p/sku-1234?utm_source=news&utm_medium=email","path":"/p/sku-1234","title":"A book","referrer":"https://www.example.org/"},` +
	`"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36","locale":"en-GB"}}`

// benchCollector is a collector with no connections: decode and buildEvent
// need only its configuration.
func benchCollector() *Collector {
	c := &Collector{m: newMetrics(nil)}
	c.cfg.defaults()
	return c
}

func benchInfo() *reqInfo {
	return &reqInfo{
		source:     &herd.Source{ID: 1, Kind: herd.KindBrowser, WriteKey: "k"},
		receivedAt: time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC),
		pathType:   herd.TypeTrack,
		ip:         "203.0.113.7",
		userAgent:  "curl/8.0",
	}
}

// amplifyBody is the batch an attacker with a browser key sends: as many
// events as allowed, each with a context of its own, and a batch context of
// pad that is merged into every one of them.
func amplifyBody(pad string) []byte {
	items := make([]string, MaxBatchEvents)
	for j := range items {
		items[j] = fmt.Sprintf(`{"type":"track","event":"e","userId":"u","messageId":"amp-%d","context":{"x":1}}`, j)
	}
	return []byte(`{"context":{"pad":"` + pad + `"},"batch":[` + strings.Join(items, ",") + `]}`)
}

// BenchmarkDecode is the collector's per-request CPU before publishing: split
// the body into items, then validate, enrich and encode each into an Event
// within the request's store budget, as accept does. amplify and escape are
// the hostile batches: a 30 KB batch context, and one of 5 KB of '<' (which
// an HTML-escaping encoder would grow six-fold), merged into 2,500 events.
func BenchmarkDecode(b *testing.B) {
	c, info := benchCollector(), benchInfo()
	single := []byte(benchEvent)
	batch := []byte(`{"batch":[` + benchEvent)
	for range 49 {
		batch = append(batch, ',')
		batch = append(batch, benchEvent...)
	}
	batch = append(batch, "]}"...)
	for _, tc := range []struct {
		name  string
		body  []byte
		batch bool
	}{
		{"single", single, false},
		{"batch50", batch, true},
		{"amplify2500", amplifyBody(strings.Repeat("x", 30<<10)), true},
		{"escape2500", amplifyBody(strings.Repeat("<", 5<<10)), true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.body)))
			events := 0
			p := &publishing{}
			defer p.release()
			for b.Loop() {
				r, err := decodeBody(tc.body, tc.batch)
				if err != nil {
					b.Fatal(err)
				}
				inf := *info // per request, as in accept
				c.buildAll(r, &inf, p, storeBudget(r), func(_ int, _ *herd.Event, _ int, err error) {
					if err != nil && !tc.batch {
						b.Fatal(err)
					}
					events++
				})
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
		})
	}
}

// BenchmarkEncode is the frame entry of one event: stream.EncodeEntry of
// herd.Event, as the collector packs it.
func BenchmarkEncode(b *testing.B) {
	c, info := benchCollector(), benchInfo()
	r, err := decodeBody([]byte(benchEvent), false)
	if err != nil {
		b.Fatal(err)
	}
	ev, err := c.buildEvent(r.items[0], r, info)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	buf := make([]byte, 0, 2048)
	for b.Loop() {
		buf = stream.EncodeEntry(buf[:0], &ev)
		b.SetBytes(int64(len(buf)))
	}
}
