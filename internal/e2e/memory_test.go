package e2e

import (
	"fmt"
	"strings"
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
