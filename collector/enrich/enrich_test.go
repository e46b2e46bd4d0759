package enrich

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/collector/enrich/enrichtest"
	"github.com/prometheus/client_golang/prometheus"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnricher(t testing.TB, cfg Config) *Enricher {
	t.Helper()
	e, err := New(cfg, quiet(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// browserEvent is what the collector hands over for a page view from
// analytics.js.
func browserEvent(ua, ip string) *herd.Event {
	return &herd.Event{Type: herd.TypePage, Enrichment: herd.Enrichment{
		URL: "https://shop.example.com/pricing?utm_source=news&utm_medium=cpc", Path: "/pricing",
		Referrer: "https://www.google.com/", UTMSource: "news", UTMMedium: "cpc",
		LibraryName: "analytics.js", LibraryVersion: "next-1.70.0", UserAgent: ua, IP: ip,
	}}
}

func TestUserAgent(t *testing.T) {
	t.Parallel()
	e := newEnricher(t, Config{})
	cases := []struct {
		name, ua                    string
		browser, os, device, botWhy string
	}{
		{"chrome windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", "Chrome", "Windows", "desktop", ""},
		{"safari ios", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", "Safari", "iOS", "mobile", ""},
		{"safari ipad", "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", "Safari", "iPadOS", "tablet", ""},
		{"android tablet", "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", "Chrome", "Android", "tablet", ""},
		{"android phone", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36", "Chrome", "Android", "mobile", ""},
		{"firefox linux", "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "Firefox", "Ubuntu", "desktop", ""},
		{"edge", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51", "Edge", "Windows", "desktop", ""},
		{"safari mac", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", "Safari", "macOS", "desktop", ""},
		{"googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", "", "bot", BotCrawler},
		{"googlebot smartphone", "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.155 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", "", "bot", BotCrawler},
		{"bingbot", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bingbot", "", "bot", BotCrawler},
		{"headless chrome", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36", "Headless Chrome", "Linux", "bot", BotHeadless},
		{"phantomjs", "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1", "PhantomJS", "Linux", "bot", BotHeadless},
		{"uptimerobot", "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", "", "", "bot", BotMonitor},
		{"curl", "curl/8.5.0", "curl", "", "bot", BotTool},
		{"python", "python-requests/2.31.0", "python-requests", "", "bot", BotTool},
		{"bare mozilla", "Mozilla/5.0", "Mozilla", "", "bot", BotPattern},
		{"cubot phone is no bot", "Mozilla/5.0 (Linux; Android 10; CUBOT X30 Build/QP1A.190711.020) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", "Chrome", "Android", "mobile", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := browserEvent(c.ua, "")
			e.Enrich(ev)
			en := ev.Enrichment
			if c.browser != "" && en.Browser != c.browser || en.OS != c.os || en.DeviceType != c.device || en.IsBot != (c.botWhy != "") || en.BotReason != c.botWhy {
				t.Errorf("got browser %q os %q device %q bot %v (%q); want %q %q %q %q",
					en.Browser, en.OS, en.DeviceType, en.IsBot, en.BotReason, c.browser, c.os, c.device, c.botWhy)
			}
			// Twice: the second answer comes from the cache and must agree.
			ev2 := browserEvent(c.ua, "")
			e.Enrich(ev2)
			if ev2.Enrichment != en {
				t.Errorf("cached result differs: %+v vs %+v", ev2.Enrichment, en)
			}
		})
	}
}

// A browser's agent on an event that no browser SDK would send.
func TestBrowserAgentWithoutBrowserTraits(t *testing.T) {
	t.Parallel()
	e := newEnricher(t, Config{})
	ev := &herd.Event{Type: herd.TypeTrack, Enrichment: herd.Enrichment{
		UserAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
	}}
	e.Enrich(ev)
	if !ev.IsBot || ev.BotReason != BotPattern || ev.Browser != "Chrome" {
		t.Fatalf("bare event with a browser agent: bot %v %q browser %q", ev.IsBot, ev.BotReason, ev.Browser)
	}
}

func TestReferrerClass(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name              string
		e                 herd.Enrichment
		wantHost, wantCls string
	}{
		{"google search", herd.Enrichment{Referrer: "https://www.google.com/", URL: "https://a.example/"}, "www.google.com", ClassSearch},
		{"google country", herd.Enrichment{Referrer: "https://www.google.co.uk/search?q=x", URL: "https://a.example/"}, "www.google.co.uk", ClassSearch},
		{"utm and google", herd.Enrichment{Referrer: "https://www.google.com/", URL: "https://a.example/?utm_source=x", UTMSource: "x", UTMMedium: "y"}, "www.google.com", ClassSearch},
		{"gclid is paid", herd.Enrichment{Referrer: "https://www.google.com/", URL: "https://a.example/", GCLID: "abc"}, "www.google.com", ClassPaid},
		{"cpc is paid", herd.Enrichment{URL: "https://a.example/", UTMMedium: "CPC"}, "", ClassPaid},
		{"gmail", herd.Enrichment{Referrer: "https://mail.google.com/mail/u/0/", URL: "https://a.example/"}, "mail.google.com", ClassEmail},
		{"newsletter medium", herd.Enrichment{URL: "https://a.example/", UTMMedium: "email"}, "", ClassEmail},
		{"same site", herd.Enrichment{Referrer: "https://example.com/a", URL: "https://www.example.com/b"}, "example.com", ClassInternal},
		{"subdomain", herd.Enrichment{Referrer: "https://blog.example.com/a", URL: "https://example.com/b"}, "blog.example.com", ClassInternal},
		{"t.co", herd.Enrichment{Referrer: "https://t.co/xyz", URL: "https://a.example/"}, "t.co", ClassSocial},
		{"facebook mobile", herd.Enrichment{Referrer: "https://l.facebook.com/l.php", URL: "https://a.example/"}, "l.facebook.com", ClassSocial},
		{"fbclid without referrer", herd.Enrichment{URL: "https://a.example/", FBCLID: "x"}, "", ClassSocial},
		{"other site", herd.Enrichment{Referrer: "https://News.Example.org:8443/story", URL: "https://a.example/"}, "news.example.org", ClassReferral},
		{"tagged, no referrer", herd.Enrichment{URL: "https://a.example/", UTMSource: "partner", UTMMedium: "widget"}, "", ClassCampaign},
		{"direct", herd.Enrichment{URL: "https://a.example/"}, "", ClassDirect},
		{"garbage referrer", herd.Enrichment{Referrer: "not a url", URL: "https://a.example/"}, "", ClassDirect},
		{"ipv6 referrer", herd.Enrichment{Referrer: "http://[2001:db8::1]:8080/x", URL: "https://a.example/"}, "2001:db8::1", ClassReferral},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			en := c.e
			classify(&en)
			if en.ReferrerHost != c.wantHost || en.ReferrerClass != c.wantCls {
				t.Errorf("got host %q class %q; want %q %q", en.ReferrerHost, en.ReferrerClass, c.wantHost, c.wantCls)
			}
		})
	}
}

func TestGeoReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	city, asn := filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "asn.mmdb")
	enrichtest.WriteCity(t, city, map[string]enrichtest.Place{
		"81.2.69.0/24":   {Country: "GB", RegionCode: "ENG", Region: "England", City: "London"},
		"2a02:ec0::/29":  {Country: "DE", RegionCode: "BE", Region: "Berlin", City: "Berlin"},
		"89.160.20.0/24": {Country: "SE", RegionCode: "E", Region: "Östergötland", City: "Linköping"},
	})
	enrichtest.WriteASN(t, asn, map[string]uint32{"81.2.69.0/24": 20712}, "Andrews & Arnold")
	e := newEnricher(t, Config{GeoIPDB: city, ASNDB: asn, ReloadEvery: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	check := func(ip, country, region, cityName string, asnNo int64) bool {
		ev := browserEvent("curl/8", ip)
		e.Enrich(ev)
		return ev.Country == country && ev.Region == region && ev.City == cityName && ev.ASN == asnNo
	}
	cases := []struct {
		ip, country, region, city string
		asn                       int64
	}{
		{"81.2.69.142", "GB", "England", "London", 20712},
		{"2a02:ec0::1", "DE", "Berlin", "Berlin", 0},
		{"89.160.20.112", "SE", "Östergötland", "Linköping", 0},
		{"8.8.8.8", "", "", "", 0},
		{"10.1.2.3", "", "", "", 0},
		{"not-an-ip", "", "", "", 0},
	}
	for _, c := range cases {
		if !check(c.ip, c.country, c.region, c.city, c.asn) {
			ev := browserEvent("", c.ip)
			e.Enrich(ev)
			t.Errorf("%s: got %q %q %q %d", c.ip, ev.Country, ev.Region, ev.City, ev.ASN)
		}
	}
	// Replace the file: the answer changes without a restart, and the
	// cached answer for the same address is not kept.
	enrichtest.WriteCity(t, city, map[string]enrichtest.Place{
		"81.2.69.0/24": {Country: "FR", RegionCode: "IDF", Region: "Île-de-France", City: "Paris"},
	})
	deadline := time.Now().Add(5 * time.Second)
	for !check("81.2.69.142", "FR", "Île-de-France", "Paris", 20712) {
		if time.Now().After(deadline) {
			t.Fatal("replaced database not picked up within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !check("89.160.20.112", "", "", "", 0) {
		t.Error("address removed from the new database still answers")
	}
}

func TestMissingDatabaseIsAnError(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{GeoIPDB: filepath.Join(t.TempDir(), "none.mmdb")}, quiet(), nil); err == nil {
		t.Fatal("New with a missing database succeeded")
	}
	asn := filepath.Join(t.TempDir(), "asn.mmdb")
	enrichtest.WriteASN(t, asn, map[string]uint32{"81.2.69.0/24": 1}, "x")
	if _, err := New(Config{GeoIPDB: asn}, quiet(), nil); err == nil {
		t.Fatal("New accepted an ASN database as the City database")
	}
}

// BenchmarkEnrich is the enrichment of a typical browser page view: agent
// and address seen before (the steady state), geo database loaded.
func BenchmarkEnrich(b *testing.B) {
	dir := b.TempDir()
	city := filepath.Join(dir, "city.mmdb")
	enrichtest.WriteCity(b, city, map[string]enrichtest.Place{
		"81.2.69.0/24": {Country: "GB", RegionCode: "ENG", Region: "England", City: "London"},
	})
	e := newEnricher(b, Config{GeoIPDB: city})
	const ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e.Enrich(browserEvent(ua, "81.2.69.142"))
		}
	})
	// Every event a new agent and a new address: the worst case.
	b.Run("uncached", func(b *testing.B) {
		uas := make([]string, 4096)
		ips := make([]string, 4096)
		for i := range uas {
			uas[i] = ua + " r/" + strconv.Itoa(i)
			ips[i] = "81.2." + strconv.Itoa(64+i/256) + "." + strconv.Itoa(i%256)
		}
		small := newEnricher(b, Config{GeoIPDB: city, UACacheSize: 16, GeoCacheSize: 16})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			small.Enrich(browserEvent(uas[i%len(uas)], ips[i%len(ips)]))
			i++
		}
	})
}
