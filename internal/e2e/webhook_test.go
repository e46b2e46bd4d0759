package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/saas/stripe/stripehook"
	"github.com/nats-io/nats.go/jetstream"
)

// TestStripeWebhookHTTP: POST /webhooks/stripe on the collector refuses a bad
// signature and a stale timestamp with 400, and answers 200 to a valid one
// only once it is on the stream, once per Stripe event id. (The loader's
// consumer turning it into a row within a second is
// saas/stripe.TestWebhookLandsWithinASecond.)
func TestStripeWebhookHTTP(t *testing.T) {
	t.Parallel()
	const secret = "whsec_test"
	v := stripehook.New(secret)
	p := herdtest.Start(t, herdtest.Options{Collector: func(c *collector.Config) {
		c.Webhooks = append(c.Webhooks, collector.Webhook{Path: "/webhooks/stripe", Name: "stripe", Verify: v.Verify})
	}})
	body := []byte(`{"id":"evt_1","object":"event","type":"customer.updated","created":1767268800,"data":{"object":{"id":"cus_1","object":"customer"}}}`)
	url := p.URL + "/webhooks/stripe"
	cases := []struct {
		name   string
		header string
		status int
	}{
		{"bad signature", stripehook.SignatureHeader("whsec_other", body, time.Now()), 400},
		{"stale timestamp", stripehook.SignatureHeader(secret, body, time.Now().Add(-time.Hour)), 400},
		{"no signature", "", 400},
		{"valid", stripehook.SignatureHeader(secret, body, time.Now()), 200},
		{"valid, delivered again", stripehook.SignatureHeader(secret, body, time.Now()), 200},
	}
	for _, c := range cases {
		r := post(t, url, body, map[string]string{"Stripe-Signature": c.header, "Content-Type": "application/json"})
		if r.Status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.Status, r.RawBody, c.status)
		}
	}
	s, err := p.JS.Stream(context.Background(), p.Stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(p.Stream.WebhookSubject("stripe")))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[p.Stream.WebhookSubject("stripe")]; n != 1 {
		t.Fatalf("webhook messages on the stream: %d, want 1 (refused ones never, the repeat deduplicated)", n)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), p.Stream.WebhookSubject("stripe"))
	if err != nil || string(m.Data) != string(body) {
		t.Fatalf("stored webhook body %q (%v)", m.Data, err)
	}
}
