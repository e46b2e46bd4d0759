package collector

import (
	"net"
	"net/netip"
	"strings"

	"github.com/valyala/fasthttp"
)

// clientAddr picks the address of the client: the socket peer, unless the peer
// is a trusted proxy, in which case the right-most address in the forwarding
// headers that is not itself a trusted proxy. The left-most entries are
// whatever the client chose to send and are never believed on their own.
//
// Every line of the forwarding headers is read: a proxy may add its own line
// rather than append to the client's (HAProxy does), and reading only the
// first line would read the client's. X-Forwarded-For wins over
// Forwarded when both are present, because the common proxies append to
// X-Forwarded-For and pass a client's Forwarded header through untouched;
// X-Real-IP, a single address set by the proxy, is the last resort.
//
// The zero Addr means no address is known.
func (c *Collector) clientAddr(peer net.IP, h *fasthttp.RequestHeader) netip.Addr {
	addr, ok := netip.AddrFromSlice(peer)
	if !ok {
		return netip.Addr{}
	}
	addr = addr.Unmap()
	if !c.trusted(addr) {
		return addr
	}
	// PeekAll's result is only valid until the next Peek: copy as we go.
	var hops []string
	for _, line := range h.PeekAll("X-Forwarded-For") {
		for _, part := range strings.Split(string(line), ",") {
			if p := strings.TrimSpace(part); p != "" {
				hops = append(hops, p)
			}
		}
	}
	if len(hops) == 0 {
		for _, line := range h.PeekAll("Forwarded") {
			hops = append(hops, forwardedFor(string(line))...)
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := parseHop(hops[i])
		if err != nil {
			// "unknown", an obfuscated node name or garbage: the proxy that
			// wrote it did not know the client, and anything to its left
			// is unverifiable. The proxy's own address would put the
			// visitor in the data centre: store no address instead.
			return netip.Addr{}
		}
		if !c.trusted(a) {
			return a
		}
		addr = a
	}
	if realIP := h.Peek("X-Real-IP"); len(hops) == 0 && len(realIP) > 0 {
		if a, err := parseHop(strings.TrimSpace(string(realIP))); err == nil {
			return a
		}
	}
	// Every hop is a trusted proxy: the left-most is where the request began.
	return addr
}

func (c *Collector) trusted(a netip.Addr) bool {
	for _, p := range c.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor extracts the for= values of an RFC 7239 Forwarded header.
func forwardedFor(h string) []string {
	if h == "" {
		return nil
	}
	var out []string
	for _, elem := range strings.Split(h, ",") {
		for _, pair := range strings.Split(elem, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if ok && strings.EqualFold(k, "for") {
				out = append(out, strings.Trim(v, `"`))
			}
		}
	}
	return out
}

// parseHop reads "1.2.3.4", "1.2.3.4:567", "[2001:db8::1]:80" or "2001:db8::1".
// Zones (fe80::1%eth0) are dropped: they mean nothing off the host and
// Postgres inet cannot hold them.
func parseHop(s string) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return a.Unmap().WithZone(""), err
}

// cleanIP normalises an address and, when asked, anonymises it: the last
// octet of IPv4 and the last 80 bits of IPv6 are zeroed.
func (c *Collector) cleanIP(s string, anonymize bool) string {
	if s == "" {
		return ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	a = a.Unmap().WithZone("")
	if anonymize || c.cfg.AnonymizeIP {
		bits := 24
		if a.Is6() {
			bits = 48
		}
		p, _ := a.Prefix(bits)
		a = p.Addr()
	}
	return a.String()
}
