package e2e

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
)

type ipCase struct {
	name    string
	server  bool // post with the server-kind source
	anon    bool // post with the anonymising source
	headers http.Header
	ctxIP   string // context.ip in the event
	want    string // stored host(ip), "NULL" for none
}

func h(kv ...string) http.Header {
	hd := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		hd.Add(kv[i], kv[i+1])
	}
	return hd
}

// TestClientIP checks which address is stored for a request, behind a
// trusted proxy (the test client's 127.0.0.1 is trusted) and directly (it is
// not).
func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	behindProxy := []ipCase{
		{name: "no forwarding header: the peer", want: "127.0.0.1"},
		{name: "one hop", headers: h("X-Forwarded-For", "203.0.113.7"), want: "203.0.113.7"},
		{name: "spoofed left-most hop", headers: h("X-Forwarded-For", "1.1.1.1, 203.0.113.7"), want: "203.0.113.7"},
		{name: "trusted hops skipped", headers: h("X-Forwarded-For", "198.51.100.9, 203.0.113.7, 10.0.0.5"), want: "203.0.113.7"},
		{name: "all hops trusted: the left-most", headers: h("X-Forwarded-For", "10.0.0.7, 10.0.0.5"), want: "10.0.0.7"},
		{name: "client line then proxy line", headers: h("X-Forwarded-For", "6.6.6.6", "X-Forwarded-For", "203.0.113.9"), want: "203.0.113.9"},
		{name: "ipv6", headers: h("X-Forwarded-For", "2001:db8:85a3::8a2e:370:7334"), want: "2001:db8:85a3::8a2e:370:7334"},
		{name: "ipv6 trusted proxy hop", headers: h("X-Forwarded-For", "2001:db8::5, fd00::1"), want: "2001:db8::5"},
		{name: "ipv4-mapped ipv6", headers: h("X-Forwarded-For", "::ffff:203.0.113.10"), want: "203.0.113.10"},
		{name: "hop with port", headers: h("X-Forwarded-For", "203.0.113.11:51234"), want: "203.0.113.11"},
		{name: "unknown hop stores nothing", headers: h("X-Forwarded-For", "203.0.113.7, unknown"), want: "NULL"},
		{name: "forwarded ipv6 with port", headers: h("Forwarded", `for="[2001:db8::17]:4711";proto=https`), want: "2001:db8::17"},
		{name: "forwarded chain", headers: h("Forwarded", "for=6.6.6.6, for=192.0.2.60;proto=http, for=10.0.0.9"), want: "192.0.2.60"},
		{name: "forwarded does not override x-forwarded-for", headers: h("Forwarded", "for=6.6.6.6", "X-Forwarded-For", "203.0.113.8"), want: "203.0.113.8"},
		{name: "x-real-ip", headers: h("X-Real-IP", "198.51.100.23"), want: "198.51.100.23"},
		{name: "server source context.ip", server: true, ctxIP: "198.51.100.77", want: "198.51.100.77"},
		{name: "browser source context.ip ignored", ctxIP: "6.6.6.6", want: "127.0.0.1"},
		{name: "anonymised ipv4", anon: true, headers: h("X-Forwarded-For", "203.0.113.77"), want: "203.0.113.0"},
		{name: "anonymised ipv6", anon: true, headers: h("X-Forwarded-For", "2001:db8:85a3:1234:5678:8a2e:370:7334"), want: "2001:db8:85a3::"},
		{name: "anonymised context.ip", anon: true, ctxIP: "198.51.100.200", want: "198.51.100.0"},
	}
	direct := []ipCase{
		{name: "x-forwarded-for from an untrusted peer", headers: h("X-Forwarded-For", "203.0.113.7"), want: "127.0.0.1"},
		{name: "forwarded from an untrusted peer", headers: h("Forwarded", "for=203.0.113.7"), want: "127.0.0.1"},
		{name: "x-real-ip from an untrusted peer", headers: h("X-Real-IP", "203.0.113.7"), want: "127.0.0.1"},
	}
	for _, run := range []struct {
		name    string
		trusted []netip.Prefix
		cases   []ipCase
	}{{"behind proxy", trusted, behindProxy}, {"direct", nil, direct}} {
		t.Run(run.name, func(t *testing.T) {
			t.Parallel()
			p := herdtest.Start(t, herdtest.Options{Collector: func(c *collector.Config) { c.TrustedProxies = run.trusted }})
			anon := p.Server
			if run.name == "behind proxy" {
				anon = addSource(t, p, herd.Source{Name: "anon", Kind: herd.KindServer, AnonymizeIP: true})
			}
			for i, c := range run.cases {
				key := p.WriteKey
				switch {
				case c.anon:
					key = anon.WriteKey
				case c.server:
					key = p.Server.WriteKey
				}
				ev := map[string]any{"type": "track", "event": "ip", "userId": "u", "messageId": "ip-" + string(rune('a'+i))}
				if c.ctxIP != "" {
					ev["context"] = map[string]any{"ip": c.ctxIP}
				}
				if r := postHeaders(t, p.URL+"/v1/track", key, ev, c.headers); r.Status != 200 {
					t.Fatalf("%s: %d %s", c.name, r.Status, r.RawBody)
				}
			}
			waitEvents(t, p, "ip-", len(run.cases))
			for i, c := range run.cases {
				id := "ip-" + string(rune('a'+i))
				if got := column(t, p, "host(ip)", id); got != c.want {
					t.Errorf("%s: stored ip %s, want %s", c.name, got, c.want)
				}
				if c.anon && c.ctxIP != "" {
					// The context column must not keep the full address.
					if got := column(t, p, "context->>'ip'", id); got != c.want {
						t.Errorf("%s: context.ip stored as %s, want %s", c.name, got, c.want)
					}
				}
			}
		})
	}
}
