package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/collector/enrich"
	"github.com/herdhq/herd/internal/herdtest"
)

func withEnricher(t *testing.T, cfg enrich.Config, more func(*collector.Config)) func(*collector.Config) {
	t.Helper()
	e, err := enrich.New(cfg, herdtest.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return func(c *collector.Config) {
		c.Enricher = e
		if more != nil {
			more(c)
		}
	}
}

// browserPage is a page view as analytics.js sends it.
func browserPage(id string) map[string]any {
	return map[string]any{
		"type": "page", "anonymousId": "anon-ua", "messageId": id,
		"context": map[string]any{
			"library": map[string]any{"name": "analytics.js", "version": "next-1.70.0"},
			"page":    map[string]any{"url": "https://shop.example.com/", "path": "/"},
		},
	}
}

// TestUserAgents posts real agents and reads what Postgres holds.
func TestUserAgents(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{Collector: withEnricher(t, enrich.Config{}, nil)})
	cases := []struct {
		name, ua, ctxUA string
		server          bool
		browser, os     string // "NULL" when none
		device, bot     string
	}{
		{name: "chrome", ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", browser: "Chrome", os: "Windows", device: "desktop", bot: "false"},
		{name: "safari ios", ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", browser: "Safari", os: "iOS", device: "mobile", bot: "false"},
		{name: "safari ipad", ua: "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", browser: "Safari", os: "iPadOS", device: "tablet", bot: "false"},
		{name: "safari mac", ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", browser: "Safari", os: "macOS", device: "desktop", bot: "false"},
		{name: "firefox", ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", browser: "Firefox", os: "Windows", device: "desktop", bot: "false"},
		{name: "edge", ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51", browser: "Edge", os: "Windows", device: "desktop", bot: "false"},
		{name: "chrome android", ua: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36", browser: "Chrome", os: "Android", device: "mobile", bot: "false"},
		{name: "googlebot", ua: "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", browser: "Googlebot", os: "NULL", device: "bot", bot: "true"},
		{name: "bingbot", ua: "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", browser: "bingbot", os: "NULL", device: "bot", bot: "true"},
		{name: "headless chrome", ua: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36", browser: "Headless Chrome", os: "Linux", device: "bot", bot: "true"},
		{name: "curl", ua: "curl/8.5.0", browser: "curl", os: "NULL", device: "bot", bot: "true"},
		{name: "empty", ua: "", browser: "NULL", os: "NULL", device: "bot", bot: "true"},
		{name: "server forwards the visitor's agent", server: true, ua: "analytics-node/2.0", ctxUA: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", browser: "Firefox", os: "Windows", device: "desktop", bot: "false"},
		{name: "server library agent is not the visitor's", server: true, ua: "Go-http-client/1.1", browser: "NULL", os: "NULL", device: "NULL", bot: "false"},
	}
	for i, c := range cases {
		id := fmt.Sprintf("ua-%02d", i)
		ev, key := browserPage(id), p.WriteKey
		if c.server {
			key = p.Server.WriteKey
			ev["context"].(map[string]any)["library"] = map[string]any{"name": "analytics-node", "version": "2.0"}
		}
		if c.ctxUA != "" {
			ev["context"].(map[string]any)["userAgent"] = c.ctxUA
		}
		// An empty User-Agent header makes Go's client send none.
		if r := postHeaders(t, p.URL+"/v1/page", key, ev, http.Header{"User-Agent": {c.ua}}); r.Status != 200 {
			t.Fatalf("%s: %d %s", c.name, r.Status, r.RawBody)
		}
	}
	waitEvents(t, p, "ua-", len(cases))
	for i, c := range cases {
		id := fmt.Sprintf("ua-%02d", i)
		got := [4]string{column(t, p, "browser", id), column(t, p, "os", id), column(t, p, "device_type", id), column(t, p, "is_bot", id)}
		if want := [4]string{c.browser, c.os, c.device, c.bot}; got != want {
			t.Errorf("%s: browser, os, device, is_bot = %q, want %q", c.name, got, want)
		}
	}
}

// TestDropBots: with bots dropped, a crawler's event is answered 200, counted,
// and not stored.
func TestDropBots(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{Collector: withEnricher(t, enrich.Config{}, func(c *collector.Config) { c.DropBots = true })})
	bot := postHeaders(t, p.URL+"/v1/page", p.WriteKey, browserPage("drop-bot"), http.Header{"User-Agent": {"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}})
	human := postHeaders(t, p.URL+"/v1/page", p.WriteKey, browserPage("drop-human"), http.Header{"User-Agent": {"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"}})
	if bot.Status != 200 || human.Status != 200 {
		t.Fatalf("replies %d %s / %d %s", bot.Status, bot.RawBody, human.Status, human.RawBody)
	}
	waitEvents(t, p, "drop-human", 1)
	p.StopWriter() // everything published is now committed
	if n := p.WaitRows(t, 0, 0, "SELECT count(*) FROM herd.events WHERE message_id = 'drop-bot'"); n != 0 {
		t.Errorf("dropped bot event stored")
	}
	mfs, err := p.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var dropped float64
	for _, mf := range mfs {
		if mf.GetName() != "herd_collector_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["result"] == "dropped" && labels["reason"] == "bot" {
				dropped = m.GetCounter().GetValue()
			}
		}
	}
	if dropped != 1 {
		t.Errorf("dropped bot events counted %v, want 1", dropped)
	}
}
