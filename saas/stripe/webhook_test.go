package stripe

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/natstest"
	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/saas/stripe/stripehook"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Acceptance 3: a verified webhook, made durable in JetStream the way the
// collector does it, is in its table within a second; a bad signature or a
// stale timestamp is refused before anything is published.
func TestWebhookLandsWithinASecond(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	srv := natstest.Run(t)
	sc := natstest.StreamConfig(t)
	js := natstest.JetStream(t, srv, sc)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	consumer := &saas.WebhookConsumer{JetStream: js, Stream: sc, Name: h.s.Name(), Handle: h.s.Webhook}
	go func() { done <- consumer.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook consumer: %v", err)
		}
	})

	const secret = "whsec_herd_test"
	verifier := &stripehook.Verifier{Secrets: []string{secret}, Tolerance: 5 * time.Minute}

	// What the collector does with POST /webhooks/stripe.
	deliver := func(body []byte, sig string) error {
		hdr := http.Header{}
		hdr.Set("Stripe-Signature", sig)
		msgID, err := verifier.Verify(body, hdr.Get, time.Now())
		if err != nil {
			return err // the collector answers 400 {"error": err.Error()}
		}
		msg := nats.NewMsg(sc.WebhookSubject("stripe"))
		msg.Data = body
		msg.Header.Set(jetstream.MsgIDHeader, msgID)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("publish webhook: %v", err)
		}
		return nil // the collector answers 200 only now, after the PubAck
	}

	f := h.fake
	id := f.create("customers", map[string]any{"email": "hook@example.com", "name": "Hook"})
	evID := f.update("customers", id, map[string]any{"name": "Hooked"}, false)
	body := f.event(evID)

	if err := deliver(body, stripehook.SignatureHeader("whsec_wrong", body, time.Now())); err == nil {
		t.Fatal("a webhook signed with the wrong secret was accepted")
	}
	if err := deliver(body, stripehook.SignatureHeader(secret, body, time.Now().Add(-10*time.Minute))); err == nil {
		t.Fatal("a webhook with a stale timestamp was accepted")
	}
	start := time.Now()
	if err := deliver(body, stripehook.SignatureHeader(secret, body, time.Now())); err != nil {
		t.Fatalf("valid webhook refused: %v", err)
	}
	for {
		var name string
		err := h.db.QueryRow(context.Background(), "SELECT name FROM stripe.customers WHERE id = $1", id).Scan(&name)
		if err == nil && name == "Hooked" {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("webhook not in stripe.customers after %s (name %q, err %v)", time.Since(start), name, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("webhook to row: %s", time.Since(start).Round(time.Millisecond))

	// Acknowledged after the commit: nothing stays pending on the consumer.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := js.Consumer(context.Background(), sc.Name, "herd_webhooks_stripe")
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && info.NumPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer still holds %d unacknowledged, %d pending", info.NumAckPending, info.NumPending)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var via, outcome string
	if err := h.db.QueryRow(context.Background(), "SELECT via, outcome FROM stripe.events WHERE id = $1", evID).Scan(&via, &outcome); err != nil {
		t.Fatal(err)
	}
	if via != "webhook" || outcome != "applied" {
		t.Errorf("stripe.events: via %q outcome %q, want webhook applied", via, outcome)
	}
}

// A webhook the warehouse cannot take yet (Stripe unreachable) is redelivered
// until it can, not lost.
func TestWebhookRetriedUntilApplied(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	srv := natstest.Run(t)
	sc := natstest.StreamConfig(t)
	js := natstest.JetStream(t, srv, sc)

	f := h.fake
	id := f.create("customers", map[string]any{"name": "Before"})
	evID := f.update("customers", id, map[string]any{"name": "After"}, false)
	f.mu.Lock()
	f.key = "sk_test_rotated" // herd's key is refused for now
	f.mu.Unlock()

	msg := nats.NewMsg(sc.WebhookSubject("stripe"))
	msg.Data = f.event(evID)
	msg.Header.Set(jetstream.MsgIDHeader, evID)
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	consumer := &saas.WebhookConsumer{JetStream: js, Stream: sc, Name: "stripe", Handle: h.s.Webhook, MaxBackoff: 100 * time.Millisecond}
	go func() { done <- consumer.Run(ctx) }()
	defer func() { cancel(); <-done }()

	time.Sleep(300 * time.Millisecond)
	var n int
	_ = h.db.QueryRow(context.Background(), "SELECT count(*) FROM stripe.customers WHERE id = $1", id).Scan(&n)
	if n != 0 {
		t.Fatal("applied although Stripe refused the key")
	}
	f.mu.Lock()
	f.key = "sk_test_fake"
	f.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var name string
		if err := h.db.QueryRow(context.Background(), "SELECT name FROM stripe.customers WHERE id = $1", id).Scan(&name); err == nil && name == "After" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("webhook never applied after Stripe accepted the key again")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Events about objects herd does not keep, or about a connected account's
// objects, are logged as ignored without touching Stripe or the tables.
func TestWebhookIgnoresWhatItDoesNotKeep(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	cases := []struct{ id, body string }{
		{"evt_plan", `{"id":"evt_plan","object":"event","type":"plan.created","created":1700000000,"data":{"object":{"id":"plan_1","object":"plan"}}}`},
		{"evt_connect", `{"id":"evt_connect","object":"event","account":"acct_1","type":"customer.updated","created":1700000000,"data":{"object":{"id":"cus_connected","object":"customer"}}}`},
	}
	for _, c := range cases {
		if err := h.s.Webhook(ctx, []byte(c.body)); err != nil {
			t.Fatalf("%s: %v", c.id, err)
		}
		var outcome string
		if err := h.db.QueryRow(ctx, "SELECT outcome FROM stripe.events WHERE id = $1", c.id).Scan(&outcome); err != nil || outcome != "ignored" {
			t.Errorf("%s: outcome %q (%v), want ignored", c.id, outcome, err)
		}
	}
	if n := h.fake.getCount("cus_connected") + h.fake.getCount("plan_1"); n != 0 {
		t.Errorf("%d API calls for ignored events", n)
	}
	if err := h.s.Webhook(ctx, []byte(`{"not":"an event"}`)); !saas.IsPermanent(err) {
		t.Errorf("malformed body: err %v, want a permanent error", err)
	}
}
