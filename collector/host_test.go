package collector

import "testing"

// TestValidHost: the host a reply may echo is a plain host[:port].
func TestValidHost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"example.com", true}, {"example.com:8080", true}, {"localhost", true}, {"127.0.0.1:80", true},
		{"[::1]:8080", true}, {"[2001:db8::1]", true}, {"example.com.", true},
		{"", false}, {"evil.example/x", false}, {`a"><script>alert(1)</script>`, false}, {"host:", false},
		{"host:99999", false}, {"host:+80", false}, {"[::1", false}, {"::1", false}, {"[::1]x", false}, {"[::1]:", false},
		{"[zz]:80", false}, {"-a.example", false}, {"a..example", false}, {"a b", false}, {"user@host", false},
	} {
		if got := validHost(tc.host); got != tc.ok {
			t.Errorf("validHost(%q) = %v, want %v", tc.host, got, tc.ok)
		}
	}
}
