package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/warehouse"
)

// rawGet sends a GET with exactly the Host line given (Go's client refuses
// to send some) and returns the status and the response.
func rawGet(t *testing.T, baseURL, path, host string, extra ...string) (int, *http.Response) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(baseURL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n"
	for i := 0; i+1 < len(extra); i += 2 {
		req += extra[i] + ": " + extra[i+1] + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "Connection: close\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp
}

// TestSettingsNotPoisoned: the settings answer analytics.js reads believes
// X-Forwarded-Proto and X-Forwarded-Host only from trusted proxies, refuses
// a Host that is not a plain host[:port], and is publicly cacheable only
// when it does not depend on the request (PublicURL set).
func TestSettingsNotPoisoned(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		adjust    func(*collector.Config)
		host      string
		headers   []string
		status    int
		apiHost   string
		protocol  string
		cacheable bool
	}{
		{name: "client's forwarding headers ignored", host: "shop.example",
			headers: []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "attacker.example"},
			status:  200, apiHost: "shop.example/v1", protocol: "http"},
		{name: "hostile Host refused", host: `x"><script>alert(1)</script>`, status: 400},
		{name: "hostile Host without a slash refused", host: `x"><img src=x onerror=alert(1)>`, status: 400},
		{name: "Host with a path refused", host: "attacker.example/x", status: 400},
		{name: "trusted proxy believed", host: "10.0.0.5:8080",
			adjust:  func(c *collector.Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} },
			headers: []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "collect.example"},
			status:  200, apiHost: "collect.example/v1", protocol: "https"},
		{name: "trusted proxy with a hostile forwarded host", host: "collect.example",
			adjust:  func(c *collector.Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} },
			headers: []string{"X-Forwarded-Host", "a b"}, status: 400},
		{name: "public URL: fixed and cacheable", host: "attacker.example",
			adjust:  func(c *collector.Config) { c.PublicURL = "https://t.example" },
			headers: []string{"X-Forwarded-Proto", "http"},
			status:  200, apiHost: "t.example/v1", protocol: "https", cacheable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := herdtest.Start(t, herdtest.Options{NoWriter: true, Collector: tc.adjust})
			status, resp := rawGet(t, p.URL, "/v1/projects/"+p.WriteKey+"/settings", tc.host, tc.headers...)
			defer resp.Body.Close()
			var body map[string]any
			if err := jsonDecode(resp, &body); err != nil {
				t.Fatalf("reply is not JSON: %v", err)
			}
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, body)
			}
			cc := resp.Header.Get("Cache-Control")
			if strings.Contains(cc, "public") != tc.cacheable && status == 200 {
				t.Errorf("Cache-Control %q: publicly cacheable %v, want %v", cc, !tc.cacheable, tc.cacheable)
			}
			if status != 200 {
				// fasthttp refuses some before the handler runs.
				if e := fmt.Sprint(body["error"]); !strings.Contains(e, "is not a host name") && !strings.HasPrefix(e, "malformed request") {
					t.Errorf("error %v", body["error"])
				}
				return
			}
			seg := body["integrations"].(map[string]any)["Segment.io"].(map[string]any)
			if seg["apiHost"] != tc.apiHost || seg["protocol"] != tc.protocol {
				t.Errorf("apiHost %v protocol %v, want %s %s", seg["apiHost"], seg["protocol"], tc.apiHost, tc.protocol)
			}
		})
	}
}

func jsonDecode(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}

// TestDemoPageShowsOnlyBrowserKeys: a page that shows a write key on the
// public listener is served only while the key is a live browser source's;
// a server source's key, a revoked key or an unknown one gets 404, and the
// key is not in the answer.
func TestDemoPageShowsOnlyBrowserKeys(t *testing.T) {
	t.Parallel()
	browserKey, serverKey, unknownKey := warehouse.NewWriteKey(), warehouse.NewWriteKey(), warehouse.NewWriteKey()
	page := func(key string) collector.Static {
		return collector.Static{ContentType: "text/html", CacheControl: "no-store", WriteKey: key,
			Render: func(host, scheme string) []byte { return []byte("<p>" + key + " at " + scheme + "://" + host + "</p>") }}
	}
	p := herdtest.Start(t, herdtest.Options{NoWriter: true, Collector: func(c *collector.Config) {
		c.Static = map[string]collector.Static{"/demo-browser": page(browserKey), "/demo-server": page(serverKey), "/demo-unknown": page(unknownKey)}
	}})
	ctx := context.Background()
	if _, err := warehouse.CreateSource(ctx, p.DB, herd.Source{Name: "site", Kind: herd.KindBrowser, WriteKey: browserKey}); err != nil {
		t.Fatal(err)
	}
	if _, err := warehouse.CreateSource(ctx, p.DB, herd.Source{Name: "api", Kind: herd.KindServer, WriteKey: serverKey}); err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		status, resp := rawGet(t, p.URL, path, "localhost:8080")
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		return status, b.String()
	}
	deadline := time.Now().Add(5 * time.Second)
	for { // the new sources reach the collector through the mirror
		if status, _ := get("/demo-browser"); status == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, body := get("/demo-browser"); status != 200 || !strings.Contains(body, browserKey) {
		t.Fatalf("browser source's page: %d %s", status, body)
	}
	for _, c := range []struct{ path, key string }{{"/demo-server", serverKey}, {"/demo-unknown", unknownKey}} {
		status, body := get(c.path)
		if status != 404 || strings.Contains(body, c.key) {
			t.Errorf("%s: %d %s: want 404 without the key", c.path, status, body)
		}
	}
	if err := warehouse.RevokeSource(ctx, p.DB, "site"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		status, body := get("/demo-browser")
		if status == 404 && !strings.Contains(body, browserKey) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked source's page still served: %d", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
