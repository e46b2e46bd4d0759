package salesforce

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Salesforce's hosts: the token and API endpoints are under these domains
// (login.salesforce.com, MyDomain.my.salesforce.com, na1.salesforce.com,
// MyDomain.lightning.force.com, a site's force.com host).
var salesforceDomains = []string{"salesforce.com", "force.com"}

// loopback says whether host (no port) is this machine, where plain HTTP
// is accepted (a local proxy, a test server).
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkURL parses an endpoint URL herd sends credentials to: https, or
// http on a loopback host only; no user info, path, query or fragment.
func checkURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %.200q is not a URL: %w", what, raw, err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return nil, fmt.Errorf("%s %.200q: want scheme and host only, such as https://login.salesforce.com", what, raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopback(u.Hostname()) {
			return nil, fmt.Errorf("%s %.200q: use https (Salesforce answers only https, and the client secret and tokens must not cross the network in clear)", what, raw)
		}
	default:
		return nil, fmt.Errorf("%s %.200q: use https", what, raw)
	}
	return u, nil
}

// underDomain says whether host is domain or one of its subdomains.
func underDomain(host, domain string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == domain || strings.HasSuffix(host, "."+domain)
}

// instanceChecker returns the test an instance_url named by the token
// endpoint must pass before it receives the token: a https URL under
// salesforce.com or force.com, or the host (with port) of the login URL,
// the configured instance URL or an allowed host.
func instanceChecker(loginURL, instanceURL string, allowed []string) func(string) error {
	exact := map[string]bool{}
	for _, raw := range []string{loginURL, instanceURL} {
		if u, err := url.Parse(raw); err == nil && u.Host != "" {
			exact[strings.ToLower(u.Host)] = true
		}
	}
	for _, h := range allowed {
		exact[strings.ToLower(h)] = true
	}
	return func(raw string) error {
		u, err := checkURL("instance_url", raw)
		if err != nil {
			return err
		}
		if exact[strings.ToLower(u.Host)] {
			return nil
		}
		if u.Scheme == "https" && u.Port() == "" {
			for _, d := range salesforceDomains {
				if underDomain(u.Hostname(), d) {
					return nil
				}
			}
		}
		return fmt.Errorf("not a Salesforce host (*.salesforce.com, *.force.com): set --salesforce-instance-url to the org's API host, or name this host in --salesforce-allowed-hosts")
	}
}

// jwtAudience is the JWT bearer flow's default aud for a login URL: the
// sandbox login server for test.salesforce.com and sandbox My Domains,
// else the production one.
func jwtAudience(loginURL string) string {
	u, err := url.Parse(loginURL)
	if err == nil {
		h := strings.ToLower(u.Hostname())
		if h == "test.salesforce.com" || strings.HasSuffix(h, ".sandbox.my.salesforce.com") {
			return "https://test.salesforce.com"
		}
	}
	return "https://login.salesforce.com"
}
