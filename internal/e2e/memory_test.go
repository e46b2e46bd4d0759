package e2e

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
)

// overGuard is a memory guard the test switches.
type overGuard struct{ over atomic.Bool }

func (g *overGuard) Over() bool { return g.over.Load() }

// TestOverMemoryBudgetAnswers503: while the memory guard says the process
// is over its budget, event requests (with the key in the headers or in
// the body) are answered 503 with Retry-After and a JSON error and nothing
// of them is stored; once it clears, requests are stored.
func TestOverMemoryBudgetAnswers503(t *testing.T) {
	t.Parallel()
	g := &overGuard{}
	p := herdtest.Start(t, herdtest.Options{Collector: func(c *collector.Config) { c.Memory = g }})
	auth := map[string]string{"Authorization": basic(p.WriteKey)}
	g.over.Store(true)
	for i, c := range []struct {
		body    []byte
		headers map[string]string
	}{
		{batchOf("over-h", 10), auth},
		{[]byte(fmt.Sprintf(`{"writeKey":%q,"batch":[{"type":"track","event":"e","userId":"u","messageId":"over-b-0"}]}`, p.WriteKey)), nil},
	} {
		r := post(t, p.URL+"/v1/batch", c.body, c.headers)
		if r.Status != 503 || r.Header.Get("Retry-After") == "" || !strings.Contains(fmt.Sprint(r.Body["error"]), "memory budget") {
			t.Errorf("request %d over the budget: %d Retry-After %q %s; want 503 with Retry-After and a JSON error", i, r.Status, r.Header.Get("Retry-After"), r.RawBody)
		}
	}
	g.over.Store(false)
	if r := post(t, p.URL+"/v1/batch", batchOf("under", 10), auth); r.Status != 200 {
		t.Fatalf("under the budget: %d %s", r.Status, r.RawBody)
	}
	if n := p.WaitRows(t, 10, 10*time.Second, "SELECT count(*) FROM herd.events"); n != 10 {
		t.Fatalf("rows %d, want the 10 sent under the budget", n)
	}
	time.Sleep(300 * time.Millisecond)
	var over int64
	if err := p.DB.QueryRow(t.Context(), `SELECT count(*) FROM herd.events WHERE message_id LIKE 'over-%'`).Scan(&over); err != nil {
		t.Fatal(err)
	}
	if over != 0 {
		t.Errorf("%d events refused with 503 were stored", over)
	}
}

// TestStreamByteRate: with the stream byte rate that the memory budget
// sets for herd up, concurrent requests together store no more than the
// rate allows: its burst, the rate over the run, and what the requests
// admitted at once publish. Requests past it wait, and those that would
// wait too long are answered 503 with Retry-After and a JSON error that
// names the way out.
func TestStreamByteRate(t *testing.T) {
	t.Parallel()
	const (
		byteRate = 1 << 20
		conns    = 16
		perReq   = 60
	)
	p := herdtest.Start(t, herdtest.Options{NoWriter: true, Collector: func(c *collector.Config) { c.StreamByteRate = byteRate }})
	h := map[string]string{"Authorization": basic(p.WriteKey)}
	pad := strings.Repeat("x", 2000)
	start := time.Now()
	var wg sync.WaitGroup
	var ok, refused, seq atomic.Int64
	var bad atomic.Value
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 3*time.Second {
				items := make([]string, perReq)
				for i := range items {
					items[i] = fmt.Sprintf(`{"type":"track","event":"e","userId":"u","messageId":"rate-%d","properties":{"pad":%q}}`, seq.Add(1), pad)
				}
				switch r := post(t, p.URL+"/v1/batch", []byte(`{"batch":[`+strings.Join(items, ",")+`]}`), h); r.Status {
				case 200:
					ok.Add(1)
				case 503:
					refused.Add(1)
					if r.Header.Get("Retry-After") == "" || !strings.Contains(fmt.Sprint(r.Body["error"]), "--memory-limit") {
						bad.Store(fmt.Sprintf("503 with Retry-After %q: %s", r.Header.Get("Retry-After"), r.RawBody))
					}
				default:
					t.Errorf("status %d: %.200s", r.Status, r.RawBody)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stored := subjectBytes(t, p, p.Stream.EventSubject(p.Source.ID))
	// The burst (4 MiB at this rate), the rate over the run, one request
	// of each connection admitted at once (about 150 KB each), and the
	// frames' own headers.
	bound := int64(4<<20+byteRate*elapsed.Seconds()) + conns*192<<10 + 64<<10
	t.Logf("%d requests answered 200, %d 503; %d bytes stored in %s; bound %d", ok.Load(), refused.Load(), stored, elapsed.Round(time.Millisecond), bound)
	if v := bad.Load(); v != nil {
		t.Error(v)
	}
	if refused.Load() == 0 || ok.Load() == 0 {
		t.Errorf("want some requests stored and some refused")
	}
	if stored > bound {
		t.Errorf("%d bytes stored; the stream byte rate allows %d", stored, bound)
	}
}
