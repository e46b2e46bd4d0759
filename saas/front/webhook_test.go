package front

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/saas/front/fronthook"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Acceptance 4: POST /webhooks/front on a real collector. A bad signature,
// a stale timestamp and a missing signature get 400 and store nothing (not
// on the stream, not in a table); a signed delivery is made durable and
// lands in front.messages within a second, applied by refetching the
// conversation it names; a repeat is stored once.
func TestWebhookThroughTheCollector(t *testing.T) {
	t.Parallel()
	const secret = "front-app-secret"
	v := fronthook.New(secret)
	p := herdtest.Start(t, herdtest.Options{NoWriter: true, Collector: func(c *collector.Config) {
		c.Webhooks = append(c.Webhooks, collector.Webhook{Path: "/webhooks/front", Name: "front", Verify: v.Verify, Handshake: v.Handshake})
	}})
	fake := newFakeFront(t)
	s, err := New(testConfig(fake), p.DB, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	consumer := &saas.WebhookConsumer{JetStream: p.JS, Stream: p.Stream, Name: s.Name(), Handle: s.Webhook}
	go func() { done <- consumer.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook consumer: %v", err)
		}
	})

	conv := fake.conversation(1, 0)
	msg, ev := fake.addMessage(conv, false)
	body := fake.webhookBody(ev)
	post := func(sig, ts string) (int, string) { return postBody(t, p.URL, body, sig, ts, "") }
	nowTS := fronthook.Timestamp(time.Now())
	staleTS := fronthook.Timestamp(time.Now().Add(-10 * time.Minute))
	for _, c := range []struct{ name, sig, ts, says string }{
		{"bad signature", fronthook.Sign("another-secret", nowTS, body), nowTS, "does not match"},
		{"stale", fronthook.Sign(secret, staleTS, body), staleTS, "tolerance"},
		{"missing signature", "", nowTS, "missing X-Front-Signature"},
		{"missing timestamp", fronthook.Sign(secret, nowTS, body), "", "missing X-Front-Request-Timestamp"},
	} {
		status, reply := post(c.sig, c.ts)
		if status != http.StatusBadRequest || !strings.Contains(reply, c.says) {
			t.Errorf("%s: %d %s, want 400 saying %q", c.name, status, reply, c.says)
		}
	}
	// Front's subscription check when the app's webhook is saved: answered
	// with the challenge when signed, refused when not; never stored.
	sync := []byte(`{"type":"sync","authorization":{"id":"cmp_1"}}`)
	if status, reply := postBody(t, p.URL, sync, fronthook.Sign(secret, nowTS, sync), nowTS, "ch4llenge"); status != 200 || reply != `{"challenge":"ch4llenge"}` {
		t.Errorf("signed subscription check: %d %s, want 200 with the challenge", status, reply)
	}
	if status, reply := postBody(t, p.URL, sync, fronthook.Sign("another-secret", nowTS, sync), nowTS, "ch4llenge"); status != 400 {
		t.Errorf("subscription check signed with another secret: %d %s, want 400", status, reply)
	}
	time.Sleep(200 * time.Millisecond) // were anything stored, the consumer would have applied it by now
	if n := stored(t, p, "front"); n != 0 {
		t.Fatalf("%d webhook messages on the stream after refused deliveries", n)
	}
	var rows int
	if err := p.DB.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM front.messages) + (SELECT count(*) FROM front.events)`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d rows stored after refused deliveries (%v)", rows, err)
	}

	start := time.Now()
	if status, reply := post(fronthook.Sign(secret, nowTS, body), nowTS); status != http.StatusOK {
		t.Fatalf("signed delivery: %d %s", status, reply)
	}
	for {
		var n int
		err := p.DB.QueryRow(context.Background(), `SELECT count(*) FROM front.messages WHERE conversation_id = $1 AND NOT deleted`, conv).Scan(&n)
		if err == nil && n == 2 {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("webhook not in front.messages after %s (%d messages, err %v)", time.Since(start), n, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("webhook to row: %s", time.Since(start).Round(time.Millisecond))
	var got string
	if err := p.DB.QueryRow(context.Background(), `SELECT id FROM front.messages WHERE id = $1`, msg).Scan(&got); err != nil {
		t.Fatalf("message %s named by the event: %v", msg, err)
	}
	if status, _ := post(fronthook.Sign(secret, nowTS, body), nowTS); status != http.StatusOK {
		t.Fatalf("repeated delivery: %d", status)
	}
	if n := stored(t, p, "front"); n != 1 {
		t.Fatalf("%d webhook messages on the stream, want 1 (the repeat deduplicated by event id)", n)
	}
	var via, outcome string
	if err := p.DB.QueryRow(context.Background(), "SELECT via, outcome FROM front.events WHERE id = $1", ev).Scan(&via, &outcome); err != nil {
		t.Fatal(err)
	}
	if via != "webhook" || outcome != "applied" {
		t.Errorf("front.events: via %q outcome %q, want webhook applied", via, outcome)
	}
}

func postBody(t *testing.T, base string, body []byte, sig, ts, challenge string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/front", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range map[string]string{fronthook.SignatureHeader: sig, fronthook.TimestampHeader: ts, fronthook.ChallengeHeader: challenge} {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func stored(t *testing.T, p *herdtest.Pipeline, name string) uint64 {
	t.Helper()
	st, err := p.JS.Stream(context.Background(), p.Stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	subj := p.Stream.WebhookSubject(name)
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subj]
}

// A body that is not an event cannot be applied by retrying: the consumer
// drops it rather than redeliver it forever.
func TestWebhookMalformedIsPermanent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, b := range []string{`{"not":"an event"}`, `nope`, `{"id":"evt_1","type":"inbound","emitted_at":"soon"}`} {
		if err := h.s.Webhook(context.Background(), []byte(b)); !saas.IsPermanent(err) {
			t.Errorf("%s: err %v, want a permanent error", b, err)
		}
	}
	// An event about no conversation is recorded as ignored, without a call.
	before := len(h.fake.requests())
	if err := h.s.Webhook(context.Background(), []byte(`{"id":"evt_x","type":"teammate_updated","emitted_at":1767268800.5}`)); err != nil {
		t.Fatal(err)
	}
	if got := h.one(`SELECT outcome FROM front.events WHERE id = 'evt_x'`); got != "ignored" {
		t.Errorf("outcome %q, want ignored", got)
	}
	if n := len(h.fake.requests()) - before; n != 0 {
		t.Errorf("%d API calls for an event about no conversation", n)
	}
}
