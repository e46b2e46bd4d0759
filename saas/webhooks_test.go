package saas

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A message is acknowledged only once Handle succeeds; a transient failure
// is redelivered, a permanent one dropped.
func TestWebhookConsumerAcksAfterHandle(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	sc := natstest.StreamConfig(t)
	js := natstest.JetStream(t, srv, sc)
	ctx := context.Background()

	var transient, permanentCalls, ok atomic.Int32
	handle := func(_ context.Context, body []byte) error {
		switch string(body) {
		case "flaky":
			if transient.Add(1) < 3 {
				return errors.New("warehouse unavailable")
			}
			return nil
		case "poison":
			permanentCalls.Add(1)
			return Permanent(errors.New("not an event"))
		default:
			ok.Add(1)
			return nil
		}
	}
	for i, body := range []string{"flaky", "poison", "fine"} {
		m := nats.NewMsg(sc.WebhookSubject("test"))
		m.Data = []byte(body)
		m.Header.Set(jetstream.MsgIDHeader, body+string(rune('0'+i)))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// Another source's webhooks are not ours.
	if _, err := js.Publish(ctx, sc.WebhookSubject("other"), []byte("not for us")); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	w := &WebhookConsumer{JetStream: js, Stream: sc, Name: "test", Handle: handle, MaxBackoff: 20 * time.Millisecond}
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := js.Consumer(ctx, sc.Name, "herd_webhooks_test")
		if err == nil {
			info, err := c.Info(ctx)
			if err == nil && info.NumAckPending == 0 && info.NumPending == 0 && transient.Load() >= 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages not all settled: flaky tried %d times", transient.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if transient.Load() != 3 || permanentCalls.Load() != 1 || ok.Load() != 1 {
		t.Errorf("flaky handled %d times (want 3), poison %d (want 1), fine %d (want 1)", transient.Load(), permanentCalls.Load(), ok.Load())
	}
}
