package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
	dto "github.com/prometheus/client_model/go"
)

// counterValue sums the counter named name in the pipeline's registry.
func counterValue(t *testing.T, p *herdtest.Pipeline, name string) float64 {
	t.Helper()
	mfs, err := p.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if mf.GetType() == dto.MetricType_COUNTER {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// behindProxy is a collector that believes X-Forwarded-For from the test's
// own address, so that each request can come from the client it names.
func behindProxy(ipRate float64) herdtest.Options {
	return herdtest.Options{NoWriter: true, Collector: func(c *collector.Config) {
		c.IPRateLimit = ipRate
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}}
}

func from(ip string, h map[string]string) map[string]string {
	out := map[string]string{"X-Forwarded-For": ip}
	for k, v := range h {
		out[k] = v
	}
	return out
}

// TestIPLimitBeforeBody: the per-client limit is checked before the body is
// read, decompressed or decoded, and before the write key is looked up: a
// client over it gets 429 for a gzip bomb, and for a key that does not
// exist, and nothing is decompressed or recorded.
func TestIPLimitBeforeBody(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, behindProxy(1))
	bomb := gz(t, append([]byte(`{"batch":[`), bytes.Repeat([]byte(" "), 10<<20)...)) // 10 MB once decompressed
	t.Logf("bomb: %d bytes gzip", len(bomb))
	event := []byte(`{"event":"e","userId":"u"}`)
	auth := map[string]string{"Authorization": basic(p.WriteKey)}

	if r := post(t, p.URL+"/v1/track", event, from("203.0.113.1", auth)); r.Status != 200 {
		t.Fatalf("first request: %d %s", r.Status, r.RawBody)
	}
	before := counterValue(t, p, "herd_collector_decompressed_bytes_total")
	for _, tc := range []struct {
		name string
		h    map[string]string
		body []byte
	}{
		{"gzip bomb, valid key", map[string]string{"Authorization": basic(p.WriteKey), "Content-Encoding": "gzip"}, bomb},
		{"gzip bomb, unknown key", map[string]string{"Authorization": basic("no-such-key"), "Content-Encoding": "gzip"}, bomb},
		{"unknown key", map[string]string{"Authorization": basic("no-such-key")}, event},
		{"no key", nil, event},
	} {
		r := post(t, p.URL+"/v1/batch", tc.body, from("203.0.113.1", tc.h))
		if r.Status != 429 || r.Header.Get("Retry-After") == "" || !strings.Contains(fmt.Sprint(r.Body["error"]), "too many requests from 203.0.113.1") {
			t.Errorf("%s over the client limit: %d %q %s", tc.name, r.Status, r.Header.Get("Retry-After"), r.RawBody)
		}
	}
	if got := counterValue(t, p, "herd_collector_decompressed_bytes_total"); got != before {
		t.Errorf("%.0f bytes decompressed for requests over the client limit", got-before)
	}
	// The same bomb from another client is decompressed up to the limit
	// only, and refused as too large (the metric does count).
	if r := post(t, p.URL+"/v1/batch", bomb, from("203.0.113.2", map[string]string{"Authorization": basic(p.WriteKey), "Content-Encoding": "gzip"})); r.Status != 413 {
		t.Errorf("bomb within the client limit: %d %s", r.Status, r.RawBody)
	}
	if got := counterValue(t, p, "herd_collector_decompressed_bytes_total") - before; got <= 0 || got > collector.MaxBatchBytes+1 {
		t.Errorf("%.0f bytes decompressed for the bomb; want at most the limit", got)
	}
	// Unknown keys count against the client too.
	statuses := []int{}
	for range 3 {
		statuses = append(statuses, post(t, p.URL+"/v1/track", event, from("203.0.113.3", map[string]string{"Authorization": basic("guess")})).Status)
	}
	if statuses[0] != 401 || statuses[1] != 429 || statuses[2] != 429 {
		t.Errorf("guessed keys from one client: %v, want [401 429 429]", statuses)
	}
}

// TestIPLimitPerIPv6Network: IPv6 clients share a bucket per /64; IPv4
// clients have one each.
func TestIPLimitPerIPv6Network(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, behindProxy(2))
	auth := map[string]string{"Authorization": basic(p.WriteKey)}
	send := func(ip string) int {
		return post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u"}`), from(ip, auth)).Status
	}
	got := []int{send("2001:db8:1:2::1"), send("2001:db8:1:2::2"), send("2001:db8:1:2:abcd::3"), send("2001:db8:1:3::1"),
		send("198.51.100.1"), send("198.51.100.2"), send("198.51.100.3")}
	want := []int{200, 200, 429, 200, 200, 200, 200}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
}

// TestIPLimitLoopbackExempt: with ExemptLoopback (herd's default), clients
// on loopback are not limited; others still are.
func TestIPLimitLoopbackExempt(t *testing.T) {
	t.Parallel()
	opts := behindProxy(1)
	inner := opts.Collector
	opts.Collector = func(c *collector.Config) { inner(c); c.ExemptLoopback = true }
	p := herdtest.Start(t, opts)
	auth := map[string]string{"Authorization": basic(p.WriteKey)}
	for i := range 5 {
		if r := post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u"}`), auth); r.Status != 200 {
			t.Fatalf("loopback request %d: %d %s", i, r.Status, r.RawBody)
		}
	}
	post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u"}`), from("203.0.113.9", auth))
	if r := post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u"}`), from("203.0.113.9", auth)); r.Status != 429 {
		t.Errorf("non-loopback client over the limit: %d", r.Status)
	}
}

// TestRejectsBounded: refused bodies are recorded within a per-source
// budget; past it they are counted, and a summary reject says how many
// were not recorded. Another source is unaffected.
func TestRejectsBounded(t *testing.T) {
	t.Parallel()
	const rate = 1024 // bytes/s; the burst is its floor, 256 KiB
	p := herdtest.Start(t, herdtest.Options{Collector: func(c *collector.Config) { c.RejectRate = rate }})
	auth := map[string]string{"Authorization": basic(p.WriteKey)}
	bad := []byte(`{"event":"e","userId":"u","properties":{"pad":"` + strings.Repeat("x", 30<<10) + `"`) // invalid JSON, 30 KB
	start := time.Now()
	const sent = 40 // 1.2 MB of refused bodies
	for i := range sent {
		if r := post(t, p.URL+"/v1/track", bad, auth); r.Status != 400 {
			t.Fatalf("bad body %d: %d %s", i, r.Status, r.RawBody)
		}
	}
	elapsed := time.Since(start)
	dropped := counterValue(t, p, "herd_collector_rejects_unrecorded_total")
	if dropped == 0 {
		t.Fatalf("no reject counted as unrecorded after %d refused 30 KB bodies", sent)
	}
	// Another source records its own.
	if r := post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u"}x`), map[string]string{"Authorization": basic(p.Server.WriteKey)}); r.Status != 400 {
		t.Fatalf("other source: %d", r.Status)
	}
	if n := p.WaitRows(t, 1, 10*time.Second, "SELECT count(*) FROM herd.rejects WHERE source_id = $1", p.Server.ID); n != 1 {
		t.Errorf("other source's reject: %d rows", n)
	}
	recorded := int64(sent) - int64(dropped)
	if n := p.WaitRows(t, recorded, 10*time.Second, "SELECT count(*) FROM herd.rejects WHERE source_id = $1", p.Source.ID); n != recorded {
		t.Fatalf("%d rejects stored, want %d (sent %d, %v unrecorded)", n, recorded, sent, dropped)
	}
	var stored int64
	if err := p.DB.QueryRow(context.Background(), "SELECT coalesce(sum(length(raw)), 0) FROM herd.rejects WHERE source_id = $1", p.Source.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if limit := int64(256<<10) + int64(elapsed.Seconds()+1)*rate; stored > limit {
		t.Errorf("rejects hold %d bytes; the budget allowed %d", stored, limit)
	}
	// Once the budget has room, a summary comes with the next reject.
	time.Sleep(1100 * time.Millisecond)
	if r := post(t, p.URL+"/v1/track", []byte(`{"event":"e"`), auth); r.Status != 400 {
		t.Fatalf("small bad body: %d", r.Status)
	}
	want := fmt.Sprintf("%.0f refused events or requests of this source (", dropped)
	if n := p.WaitRows(t, 1, 10*time.Second, "SELECT count(*) FROM herd.rejects WHERE source_id = $1 AND starts_with(reason, $2)", p.Source.ID, want); n != 1 {
		t.Errorf("no summary reject starting %q", want)
	}
	t.Logf("%d refused bodies: %d recorded (%d bytes), %.0f counted only", sent, recorded, stored, dropped)
}

// TestIPLimitUnknownClient: a trusted proxy that forwards "unknown" or
// garbage as the client's address does not switch the per-client limit
// off: every such client shares one bucket, and another client keeps its
// own.
func TestIPLimitUnknownClient(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, behindProxy(2))
	auth := map[string]string{"Authorization": basic(p.WriteKey)}
	send := func(xff string) reply {
		return post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u"}`), from(xff, auth))
	}
	var got []int
	for _, xff := range []string{"unknown", "198.51.100.7, unknown", "_hidden", "unknown", "not-an-address"} {
		r := send(xff)
		got = append(got, r.Status)
		if r.Status == 429 && !strings.Contains(fmt.Sprint(r.Body["error"]), "did not know") {
			t.Errorf("429 for %q does not say which limit: %s", xff, r.RawBody)
		}
	}
	if want := []int{200, 200, 429, 429, 429}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("clients of unknown address: %v, want %v", got, want)
	}
	if r := send("198.51.100.8"); r.Status != 200 {
		t.Errorf("a known client after the unknown ones: %d %s", r.Status, r.RawBody)
	}
}

// TestBrowserByteRateConcurrent: concurrent requests of a browser source
// cannot together store more than its byte rate allows. Each request
// reserves what it may store before publishing, so the stream holds at
// most the bucket's burst plus the rate over the run, however many requests
// were in flight when the bucket ran dry.
func TestBrowserByteRateConcurrent(t *testing.T) {
	t.Parallel()
	const byteRate = 1 << 20
	p := herdtest.Start(t, herdtest.Options{NoWriter: true, Collector: func(c *collector.Config) { c.BrowserByteRate = byteRate }})
	h := map[string]string{"Authorization": basic(p.WriteKey), "Content-Encoding": "gzip"}
	body := gz(t, amplifyingBatch(collector.MaxBatchEvents, 30<<10)) // stores about 2.3 MB
	start := time.Now()
	var wg sync.WaitGroup
	var ok, limited atomic.Int64
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 2*time.Second {
				switch r := post(t, p.URL+"/v1/batch", body, h); r.Status {
				case 200:
					ok.Add(1)
				case 429:
					limited.Add(1)
				default:
					t.Errorf("status %d: %.200s", r.Status, r.RawBody)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stored := subjectBytes(t, p, p.Stream.EventSubject(p.Source.ID))
	// The burst (8 s worth), the rate over the run, and the frames' own
	// headers (a few bytes an event, which the budget does not count).
	bound := int64(8*byteRate+byteRate*elapsed.Seconds()) + 64<<10
	t.Logf("%d requests answered 200, %d 429; %d bytes stored in %s; bound %d", ok.Load(), limited.Load(), stored, elapsed.Round(time.Millisecond), bound)
	if limited.Load() == 0 {
		t.Errorf("no request answered 429")
	}
	if stored > bound {
		t.Errorf("the browser source stored %d bytes; its byte rate allows %d", stored, bound)
	}
}
