package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/warehouse"
)

func batchOf(prefix string, n int) []byte {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"type":"track","event":"e","userId":"u","messageId":"%s-%d"}`, prefix, i)
	}
	return []byte(`{"batch":[` + strings.Join(items, ",") + `]}`)
}

// TestSourceRateLimit: past its rate a source gets 429 with Retry-After,
// the refused events are not stored, and the limit takes effect without a
// restart.
func TestSourceRateLimit(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	auth := map[string]string{"Authorization": basic(p.WriteKey)}
	// Unlimited by default.
	for i := 0; i < 4; i++ {
		if r := post(t, p.URL+"/v1/batch", batchOf(fmt.Sprint("free", i), 1000), auth); r.Status != 200 {
			t.Fatalf("unlimited batch %d: %d %s", i, r.Status, r.RawBody)
		}
	}
	limit := 20.0
	if err := warehouse.SetRateLimit(context.Background(), p.DB, "web", &limit); err != nil {
		t.Fatal(err)
	}
	// The bucket holds one full batch (2,500 events); at 20 events/s the
	// third batch of 1,000 within a second is over.
	deadline := time.Now().Add(3 * time.Second)
	var got reply
	sent := 0
	for time.Now().Before(deadline) {
		got = post(t, p.URL+"/v1/batch", batchOf(fmt.Sprint("lim", sent), 1000), auth)
		if got.Status == 429 {
			break
		}
		if got.Status != 200 {
			t.Fatalf("limited batch: %d %s", got.Status, got.RawBody)
		}
		sent++
	}
	if got.Status != 429 {
		t.Fatalf("no 429 after %d batches of 1000 at a 20 events/s limit", sent)
	}
	ra, err := strconv.Atoi(got.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 130 {
		t.Fatalf("Retry-After %q", got.Header.Get("Retry-After"))
	}
	if !strings.Contains(fmt.Sprint(got.Body["error"]), "rate limit") {
		t.Errorf("429 body %s", got.RawBody)
	}
	want := int64(4000 + sent*1000)
	if n := p.WaitRows(t, want, 10*time.Second, "SELECT count(*) FROM herd.events"); n != want {
		t.Fatalf("rows %d, want %d: the refused batch must not be stored", n, want)
	}
	// Another source is not affected.
	if r := post(t, p.URL+"/v1/batch", batchOf("other", 1000), map[string]string{"Authorization": basic(p.Server.WriteKey)}); r.Status != 200 {
		t.Fatalf("other source: %d", r.Status)
	}
}

// TestRevokedKeyRefusedWithinASecond: revoking in Postgres reaches the
// running collector through the key-value mirror.
func TestRevokedKeyRefusedWithinASecond(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	auth := map[string]string{"Authorization": basic(p.WriteKey)}
	if r := post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u"}`), auth); r.Status != 200 {
		t.Fatal(r.RawBody)
	}
	if err := warehouse.RevokeSource(context.Background(), p.DB, "web"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tries := 0
	for {
		tries++
		r := post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u"}`), auth)
		if r.Status == 401 {
			if !strings.Contains(r.RawBody, "revoked") {
				t.Fatalf("401 for another reason: %s", r.RawBody)
			}
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("revoked key still accepted after %s", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("revoked key refused after %s (%d tries)", time.Since(start), tries)
}

// TestClientIPRateLimit: the optional per-IP limit answers 429 too.
func TestClientIPRateLimit(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{Collector: func(c *collector.Config) { c.IPRateLimit = 2 }})
	auth := map[string]string{"Authorization": basic(p.WriteKey)}
	statuses := []int{}
	for i := 0; i < 5; i++ {
		statuses = append(statuses, post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u"}`), auth).Status)
	}
	if statuses[0] != 200 || statuses[4] != 429 {
		t.Fatalf("statuses %v: want the first accepted and the fifth refused", statuses)
	}
}

// TestAllowedOrigins: a browser source limited to its sites refuses events
// from other origins with 403 (still with CORS headers, so the page can read
// why), and takes them from its own.
func TestAllowedOrigins(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	src, err := warehouse.CreateSource(context.Background(), p.DB, herd.Source{Name: "shop", Kind: herd.KindBrowser, AllowedOrigins: []string{"https://shop.example"}})
	if err != nil {
		t.Fatal(err)
	}
	send := func(origin, id string) reply {
		h := map[string]string{"Authorization": basic(src.WriteKey)}
		if origin != "" {
			h["Origin"] = origin
		}
		var r reply
		deadline := time.Now().Add(3 * time.Second)
		for { // the new source reaches the collector through the mirror
			r = post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u","messageId":"`+id+`"}`), h)
			if r.Status != 401 || time.Now().After(deadline) {
				return r
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if r := send("https://shop.example", "own"); r.Status != 200 {
		t.Fatalf("own origin: %d %s", r.Status, r.RawBody)
	}
	r := send("https://evil.example", "foreign")
	if r.Status != 403 || r.Header.Get("Access-Control-Allow-Origin") != "https://evil.example" || !strings.Contains(r.RawBody, "not allowed") {
		t.Fatalf("foreign origin: %d %v %s", r.Status, r.Header, r.RawBody)
	}
	if r := send("", "server-side"); r.Status != 200 {
		t.Fatalf("no Origin (a server or curl): %d %s", r.Status, r.RawBody)
	}
	p.WaitRows(t, 2, 5*time.Second, "SELECT count(*) FROM herd.events WHERE source_id = $1", src.ID)
	var foreign int
	_ = p.DB.QueryRow(context.Background(), "SELECT count(*) FROM herd.events WHERE message_id = 'foreign'").Scan(&foreign)
	if foreign != 0 {
		t.Fatal("an event from a refused origin was stored")
	}
}
