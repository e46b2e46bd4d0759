package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/herdhq/herd/collector/enrich"
	"github.com/herdhq/herd/internal/herdtest"
)

const chromeUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"

// TestCampaign: utm_* and click ids from the page URL or context.campaign,
// referrer host and class.
func TestCampaign(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{Collector: withEnricher(t, enrich.Config{}, nil)})
	cases := []struct {
		name     string
		url, ref string
		campaign map[string]any
		want     string // utm_source|utm_medium|utm_campaign|gclid|fbclid|referrer_host|referrer_class|path
	}{
		{name: "utm in url, google referrer", url: "https://shop.example.com/pricing?utm_source=x&utm_medium=y", ref: "https://www.google.com/",
			want: "x|y|NULL|NULL|NULL|www.google.com|search|/pricing"},
		{name: "gclid", url: "https://shop.example.com/?gclid=EAIaIQ&utm_campaign=spring", ref: "https://www.google.com/",
			want: "NULL|NULL|spring|EAIaIQ|NULL|www.google.com|paid|/"},
		{name: "context.campaign wins over url", url: "https://shop.example.com/?utm_source=url", ref: "https://mail.google.com/",
			campaign: map[string]any{"source": "newsletter", "medium": "email", "name": "june"},
			want:     "newsletter|email|june|NULL|NULL|mail.google.com|email|/"},
		{name: "fbclid from facebook", url: "https://shop.example.com/a?fbclid=IwAR0", ref: "https://l.facebook.com/",
			want: "NULL|NULL|NULL|NULL|IwAR0|l.facebook.com|social|/a"},
		{name: "internal", url: "https://shop.example.com/b", ref: "https://shop.example.com/a",
			want: "NULL|NULL|NULL|NULL|NULL|shop.example.com|internal|/b"},
		{name: "direct", url: "https://shop.example.com/",
			want: "NULL|NULL|NULL|NULL|NULL|NULL|direct|/"},
	}
	for i, c := range cases {
		ev := browserPage(fmt.Sprintf("utm-%d", i))
		ctx := ev["context"].(map[string]any)
		ctx["page"] = map[string]any{"url": c.url, "referrer": c.ref}
		if c.campaign != nil {
			ctx["campaign"] = c.campaign
		}
		if r := postHeaders(t, p.URL+"/v1/page", p.WriteKey, ev, http.Header{"User-Agent": {chromeUA}}); r.Status != 200 {
			t.Fatalf("%s: %d %s", c.name, r.Status, r.RawBody)
		}
	}
	waitEvents(t, p, "utm-", len(cases))
	for i, c := range cases {
		expr := `concat_ws('|', coalesce(utm_source, 'NULL'), coalesce(utm_medium, 'NULL'), coalesce(utm_campaign, 'NULL'), coalesce(gclid, 'NULL'),
			coalesce(fbclid, 'NULL'), coalesce(referrer_host, 'NULL'), coalesce(referrer_class, 'NULL'), coalesce(path, 'NULL'))`
		if got := column(t, p, expr, fmt.Sprintf("utm-%d", i)); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

// TestSessions: derived sessions follow the 30-minute rule whatever order
// the events arrive in; a client's session id is kept.
func TestSessions(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{Collector: withEnricher(t, enrich.Config{}, nil)})
	t0 := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	send := func(id, anon string, at time.Duration, path string, sessionID string) {
		t.Helper()
		ev := browserPage(id)
		ev["anonymousId"] = anon
		ev["timestamp"] = t0.Add(at).Format(time.RFC3339)
		ctx := ev["context"].(map[string]any)
		ctx["page"] = map[string]any{"url": "https://shop.example.com" + path, "path": path, "referrer": "https://news.ycombinator.com/"}
		if sessionID != "" {
			ctx["sessionId"] = sessionID
		}
		if r := postHeaders(t, p.URL+"/v1/page", p.WriteKey, ev, http.Header{"User-Agent": {chromeUA}}); r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.RawBody)
		}
	}
	sessions := func(anon string) string {
		t.Helper()
		var s string
		err := p.DB.QueryRow(context.Background(), `SELECT string_agg(concat_ws(' ', pages, landing_path, referrer_class, extract(epoch FROM duration)::int), ', ' ORDER BY started_at)
			FROM herd.sessions WHERE visitor_id = $1`, anon).Scan(&s)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The late event arrives last and bridges the gap.
	send("s-1", "visitor-1", 0, "/landing", "")
	send("s-2", "visitor-1", 10*time.Minute, "/two", "")
	send("s-3", "visitor-1", 50*time.Minute, "/three", "")
	send("s-4", "visitor-1", 2*time.Hour, "/later", "")
	// The client's own session id is kept, whatever the gaps.
	send("s-5", "visitor-2", 0, "/a", "client-session-9")
	send("s-6", "visitor-2", 2*time.Hour, "/b", "client-session-9")
	waitEvents(t, p, "s-", 6)
	if got, want := sessions("visitor-1"), "2 /landing social 600, 1 /three social 0, 1 /later social 0"; got != want {
		t.Errorf("before the late event: sessions %q, want %q", got, want)
	}
	send("s-7", "visitor-1", 30*time.Minute, "/bridge", "")
	waitEvents(t, p, "s-", 7)
	if got, want := sessions("visitor-1"), "4 /landing social 3000, 1 /later social 0"; got != want {
		t.Errorf("after the late event: sessions %q, want %q", got, want)
	}
	var sid string
	if err := p.DB.QueryRow(context.Background(), `SELECT string_agg(DISTINCT session_id, ',') FROM herd.event_sessions WHERE visitor_id = 'visitor-2'`).Scan(&sid); err != nil {
		t.Fatal(err)
	}
	if sid != "client-session-9" {
		t.Errorf("client session id: %q", sid)
	}
}
