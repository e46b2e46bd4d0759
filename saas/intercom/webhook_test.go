package intercom

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/saas/intercom/intercomhook"
	"github.com/nats-io/nats.go/jetstream"
)

func notificationBody(id, topic, itemType, itemID string, created time.Time) []byte {
	return fmt.Appendf(nil, `{"type":"notification_event","app_id":"abc","id":%q,"topic":%q,"created_at":%d,"delivery_attempts":1,"first_sent_at":%d,"data":{"type":"notification_event_data","item":{"type":%q,"id":%q}}}`,
		id, topic, created.Unix(), created.Unix(), itemType, itemID)
}

// Acceptance 4: POST /webhooks/intercom on a real collector refuses a bad,
// a stale and a missing signature with 400 and publishes nothing; a signed
// notification is on the stream before the 200, and its conversation,
// refetched whole, is in the warehouse within a second.
func TestWebhookLandsWithinASecond(t *testing.T) {
	t.Parallel()
	const secret = "client_secret_test"
	v := intercomhook.New(secret)
	p := herdtest.Start(t, herdtest.Options{NoWriter: true, Collector: func(c *collector.Config) {
		c.Webhooks = append(c.Webhooks, collector.Webhook{Path: "/webhooks/intercom", Name: "intercom", Verify: v.Verify})
	}})
	h := newHarness(t, p.DB)
	contacts, convs := h.seed(5, 3)
	h.sync()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	consumer := &saas.WebhookConsumer{JetStream: p.JS, Stream: p.Stream, Name: h.s.Name(), Handle: h.s.Webhook}
	go func() { done <- consumer.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook consumer: %v", err)
		}
	})

	post := func(body []byte, sig string) (int, string) {
		req, err := http.NewRequest("POST", p.URL+"/webhooks/intercom", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if sig != "" {
			req.Header.Set("X-Hub-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	part := h.fake.addPart(convs[1])
	body := notificationBody("notif_1", "conversation.admin.replied", "conversation", convs[1], time.Now())
	stale := notificationBody("notif_2", "conversation.admin.replied", "conversation", convs[1], time.Now().Add(-10*time.Minute))
	for _, c := range []struct {
		name string
		body []byte
		sig  string
	}{
		{"bad signature", body, intercomhook.SignatureHeader("other_secret", body)},
		{"stale", stale, intercomhook.SignatureHeader(secret, stale)},
		{"missing signature", body, ""},
	} {
		if status, msg := post(c.body, c.sig); status != 400 {
			t.Errorf("%s: %d %s, want 400", c.name, status, msg)
		}
	}
	subject := p.Stream.WebhookSubject("intercom")
	stream, err := p.JS.Stream(context.Background(), p.Stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[subject]; n != 0 {
		t.Fatalf("%d refused notifications on the stream", n)
	}
	var n int
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM intercom.conversation_parts WHERE id = $1`, part).Scan(&n); err != nil || n != 0 {
		t.Fatalf("part %s stored before any valid notification (%d, %v)", part, n, err)
	}

	start := time.Now()
	if status, msg := post(body, intercomhook.SignatureHeader(secret, body)); status != 200 {
		t.Fatalf("valid notification: %d %s", status, msg)
	}
	for {
		err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM intercom.conversation_parts WHERE id = $1 AND conversation_id = $2 AND NOT deleted`, part, convs[1]).Scan(&n)
		if err == nil && n == 1 {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("part %s not in intercom.conversation_parts %s after the notification (%v)", part, time.Since(start), err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("notification to row: %s", time.Since(start).Round(time.Millisecond))
	// Intercom redelivers: the notification id deduplicates it on the stream.
	if status, msg := post(body, intercomhook.SignatureHeader(secret, body)); status != 200 {
		t.Fatalf("notification delivered again: %d %s", status, msg)
	}
	if info, err = stream.Info(context.Background(), jetstream.WithSubjectFilter(subject)); err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[subject]; n != 1 {
		t.Errorf("%d messages on the stream for one notification delivered twice, want 1", n)
	}

	// A contact deleted in Intercom: the refetch answers 404 and the row is
	// marked deleted.
	h.fake.deleteContact(contacts[2])
	del := notificationBody("notif_3", "contact.deleted", "contact", contacts[2], time.Now())
	if status, msg := post(del, intercomhook.SignatureHeader(secret, del)); status != 200 {
		t.Fatalf("contact notification: %d %s", status, msg)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var deleted bool
		if err := h.db.QueryRow(context.Background(), `SELECT deleted FROM intercom.contacts WHERE id = $1`, contacts[2]).Scan(&deleted); err == nil && deleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("contact %s not marked deleted after its notification", contacts[2])
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.assertEqual()
}

// Notifications about objects herd does not keep are acknowledged without
// an API call; a body that is no notification is dropped, not retried.
func TestWebhookIgnoresWhatItDoesNotKeep(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	before := len(h.fake.requestLog())
	if err := h.s.Webhook(context.Background(), notificationBody("notif_9", "ping", "ping", "", time.Now())); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := h.s.Webhook(context.Background(), notificationBody("notif_10", "visitor.signed_up", "visitor", "v1", time.Now())); err != nil {
		t.Fatalf("visitor: %v", err)
	}
	if n := len(h.fake.requestLog()) - before; n != 0 {
		t.Errorf("%d API calls for ignored notifications", n)
	}
	if err := h.s.Webhook(context.Background(), []byte(`{"not":"a notification"}`)); !saas.IsPermanent(err) {
		t.Errorf("malformed body: err %v, want a permanent error", err)
	}
}
