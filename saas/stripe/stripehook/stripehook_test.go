package stripehook

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// Acceptance 3, the refusals: each of these makes the collector answer 400.
func TestVerify(t *testing.T) {
	t.Parallel()
	const secret = "whsec_test_secret"
	body := []byte(`{"id":"evt_123","object":"event","type":"customer.updated","created":1700000000,"data":{"object":{"id":"cus_1","object":"customer"}}}`)
	now := time.Unix(1_700_000_000, 0)
	cases := []struct {
		name    string
		v       *Verifier
		body    []byte
		header  string
		wantErr string
	}{
		{name: "valid", v: New(secret), body: body, header: SignatureHeader(secret, body, now)},
		{name: "valid among several signatures", v: New(secret), body: body,
			header: "t=1700000000,v1=" + strings.Repeat("ab", 32) + "," + strings.TrimPrefix(SignatureHeader(secret, body, now), "t=1700000000,") + ",v0=00"},
		{name: "rolled secret", v: &Verifier{Secrets: []string{"whsec_new", secret}}, body: body, header: SignatureHeader(secret, body, now)},
		{name: "within tolerance", v: New(secret), body: body, header: SignatureHeader(secret, body, now.Add(-4*time.Minute))},
		{name: "wrong secret", v: New(secret), body: body, header: SignatureHeader("whsec_other", body, now), wantErr: "does not match"},
		{name: "altered body", v: New(secret), body: []byte(strings.Replace(string(body), "cus_1", "cus_2", 1)),
			header: SignatureHeader(secret, body, now), wantErr: "does not match"},
		{name: "stale timestamp", v: New(secret), body: body, header: SignatureHeader(secret, body, now.Add(-6*time.Minute)), wantErr: "tolerance"},
		{name: "future timestamp", v: New(secret), body: body, header: SignatureHeader(secret, body, now.Add(10*time.Minute)), wantErr: "tolerance"},
		{name: "custom tolerance", v: &Verifier{Secrets: []string{secret}, Tolerance: time.Minute}, body: body,
			header: SignatureHeader(secret, body, now.Add(-2*time.Minute)), wantErr: "tolerance"},
		{name: "missing header", v: New(secret), body: body, header: "", wantErr: "missing Stripe-Signature"},
		{name: "no timestamp", v: New(secret), body: body, header: "v1=abcd", wantErr: "no timestamp"},
		{name: "bad timestamp", v: New(secret), body: body, header: "t=soon,v1=abcd", wantErr: "not a number"},
		{name: "no v1", v: New(secret), body: body, header: "t=1700000000,v0=abcd", wantErr: "no v1"},
		{name: "no secret configured", v: &Verifier{}, body: body, header: SignatureHeader(secret, body, now), wantErr: "no signing secret"},
		{name: "signed but not an event", v: New(secret), body: []byte(`{"id":"cus_1","object":"customer"}`),
			header: SignatureHeader(secret, []byte(`{"id":"cus_1","object":"customer"}`), now), wantErr: "not an event"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.header != "" {
				h.Set("Stripe-Signature", c.header)
			}
			id, err := c.v.Verify(c.body, h.Get, now)
			if c.wantErr == "" {
				if err != nil || id != "evt_123" {
					t.Fatalf("Verify = %q, %v; want evt_123", id, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Verify error = %v; want one containing %q", err, c.wantErr)
			}
		})
	}
}

// An empty secret among the configured ones (STRIPE_WEBHOOK_SECRET="whsec_x,")
// must not accept a body signed with "".
func TestEmptySecretNeverMatches(t *testing.T) {
	body := []byte(`{"id":"evt_forged","object":"event","type":"customer.updated","created":1700000000,"data":{"object":{"id":"cus_1","object":"customer"}}}`)
	now := time.Unix(1_700_000_000, 0)
	h := http.Header{}
	h.Set("Stripe-Signature", SignatureHeader("", body, now))
	v := &Verifier{Secrets: []string{"whsec_x", ""}}
	if id, err := v.Verify(body, h.Get, now); err == nil {
		t.Fatalf("a body signed with the empty secret was accepted as %q", id)
	}
}
