package salesforce

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The token endpoint's instance_url receives the token only when it is a
// Salesforce host (or one configured): a token endpoint naming another host
// fails the pass and the other host sees nothing.
func TestInstanceURLMustBeSalesforce(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(0, 0, 5)
	h.cfg.Objects = []string{"Lead"}
	var mu sync.Mutex
	var seen []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer other.Close()
	for _, instance := range []string{other.URL + "/internal", "http://na1.salesforce.com", "https://salesforce.com.example.net"} {
		tok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			resp, err := http.Post(h.fake.URL()+"/services/oauth2/token", "application/x-www-form-urlencoded", r.Body)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var m map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&m)
			m["instance_url"] = instance
			_ = json.NewEncoder(w).Encode(m)
		}))
		h.cfg.LoginURL = tok.URL
		h.cfg.Limits.MaxRetries = 1
		err := h.syncer(nil).Sync(context.Background())
		tok.Close()
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("instance_url %s: pass err %v, want a refusal", instance, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) > 0 {
		t.Errorf("the host named in instance_url received %q", seen)
	}
	// Named in AllowedHosts, the same host is used.
	h.cfg.LoginURL = h.fake.URL()
	if err := instanceChecker(h.cfg.LoginURL, "", []string{strings.TrimPrefix(other.URL, "http://")})(other.URL); err != nil {
		t.Errorf("allowed host refused: %v", err)
	}
	for _, ok := range []string{"https://acme.my.salesforce.com", "https://na123.salesforce.com", "https://acme.lightning.force.com"} {
		if err := instanceChecker(DefaultLoginURL, "", nil)(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
}

// Login and instance URLs are https, except on a loopback host.
func TestPlainHTTPRefused(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct{ login, instance string }{
		{"http://login.salesforce.com", ""},
		{"http://10.0.0.5:8080", ""},
		{"ftp://login.salesforce.com", ""},
		{DefaultLoginURL, "http://acme.my.salesforce.com"},
		{"https://user:pw@login.salesforce.com", ""},
	} {
		cfg := h.cfg
		cfg.LoginURL, cfg.InstanceURL = c.login, c.instance
		if _, err := New(cfg, h.db, nil, nil); err == nil {
			t.Errorf("login %q instance %q accepted", c.login, c.instance)
		}
	}
	for _, ok := range []string{"http://127.0.0.1:8080", "http://localhost:1", "https://test.salesforce.com", "https://acme.my.salesforce.com/"} {
		cfg := h.cfg
		cfg.LoginURL = ok
		if _, err := New(cfg, h.db, nil, nil); err != nil {
			t.Errorf("login %q refused: %v", ok, err)
		}
	}
}

// The JWT audience is the authorization server, not the login URL: the
// fake (like Salesforce) accepts only login.salesforce.com,
// test.salesforce.com for a sandbox, or a community URL.
func TestJWTAudience(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(0, 0, 5)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	h.fake.JWTKey = &key.PublicKey
	path := filepath.Join(t.TempDir(), "salesforce.key")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cfg.Objects = []string{"Lead"}
	h.cfg.Credentials = Credentials{ClientID: h.fake.ClientID, Username: h.fake.Username, JWTKeyFile: path}
	if err := h.syncer(nil).Sync(context.Background()); err != nil {
		t.Fatalf("production org, default audience: %v", err)
	}
	h.fake.Sandbox = true
	h.fake.ExpireTokens()
	if err := h.syncer(nil).Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "audience") {
		t.Errorf("sandbox org with the production audience: %v, want the audience refused", err)
	}
	h.cfg.JWTAudience = "https://test.salesforce.com"
	if err := h.syncer(nil).Sync(context.Background()); err != nil {
		t.Errorf("sandbox org, test audience: %v", err)
	}
	for login, want := range map[string]string{
		"https://test.salesforce.com":                 "https://test.salesforce.com",
		"https://acme--dev.sandbox.my.salesforce.com": "https://test.salesforce.com",
		"https://acme.my.salesforce.com":              "https://login.salesforce.com",
		"https://login.salesforce.com":                "https://login.salesforce.com",
	} {
		if got := jwtAudience(login); got != want {
			t.Errorf("jwtAudience(%s) = %s, want %s", login, got, want)
		}
	}
}

// A version or share that is not one is refused, not replaced.
func TestBadSettingsRefused(t *testing.T) {
	h := newHarness(t)
	for _, v := range []string{"NaN", "Inf", "59", "1e2", "59.0.1", "-59.0"} {
		cfg := h.cfg
		cfg.APIVersion = v
		if _, err := New(cfg, h.db, nil, nil); err == nil {
			t.Errorf("API version %q accepted", v)
		}
	}
	for _, share := range []float64{5, -0.1, 1.01, math.NaN()} {
		cfg := h.cfg
		cfg.APIShare = share
		if _, err := New(cfg, h.db, nil, nil); err == nil {
			t.Errorf("API share %v accepted", share)
		}
	}
}

// SOQL datetime literals are YYYY-MM-DDThh:mm:ssZ: the fake, like
// Salesforce, refuses one with a fraction, and herd sends none.
func TestSOQLDatetimeLiteral(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(0, 0, 5)
	h.cfg.Objects = []string{"Lead"}
	s := h.syncer(nil)
	ctx := context.Background()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil { // incremental: bounds on both sides
		t.Fatal(err)
	}
	for _, r := range h.requests("/query") {
		if strings.Contains(r, ".000Z") || strings.Contains(r, "%2E000Z") || strings.Contains(r, ".000%2B") {
			t.Errorf("query with a fractional datetime: %s", r)
		}
	}
	err := s.api.query(ctx, "SELECT Id FROM Lead WHERE SystemModstamp > 2026-01-02T03:04:05.000Z", false, 0, func(*queryPage) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "MALFORMED_QUERY") {
		t.Errorf("fractional literal: %v, want MALFORMED_QUERY", err)
	}
	if got := soqlTime(time.Date(2026, 1, 2, 3, 4, 5, 600e6, time.UTC)); got != "2026-01-02T03:04:05Z" {
		t.Errorf("soqlTime = %s", got)
	}
}
