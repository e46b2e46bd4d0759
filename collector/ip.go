package collector

import (
	"net"
	"net/netip"
	"strings"
)

// clientIP picks the address of the client: the socket peer, unless the peer
// is a trusted proxy, in which case the right-most address in the forwarding
// headers that is not itself a trusted proxy. The left-most entries are
// whatever the client chose to send and are never believed on their own.
func (c *Collector) clientIP(peer net.IP, xff, realIP, forwarded []byte) string {
	addr, ok := netip.AddrFromSlice(peer)
	if !ok {
		return ""
	}
	addr = addr.Unmap()
	if !c.trusted(addr) {
		return addr.String()
	}
	hops := forwardedFor(string(forwarded))
	if len(hops) == 0 {
		for _, part := range strings.Split(string(xff), ",") {
			if p := strings.TrimSpace(part); p != "" {
				hops = append(hops, p)
			}
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := parseHop(hops[i])
		if err != nil {
			// An unparseable hop ends the trustworthy chain: stop at the last
			// good address we had.
			break
		}
		if !c.trusted(a) {
			return a.String()
		}
		addr = a
	}
	if len(hops) == 0 && len(realIP) > 0 {
		if a, err := parseHop(strings.TrimSpace(string(realIP))); err == nil {
			return a.String()
		}
	}
	return addr.String()
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
func parseHop(s string) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return a.Unmap(), err
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
	a = a.Unmap()
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
