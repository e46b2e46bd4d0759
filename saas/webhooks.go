package saas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats.go/jetstream"
)

// WebhookConsumer reads the webhook bodies the collector verified and
// published on Stream.WebhookSubject(Name), through a durable pull consumer,
// and hands each to Handle. A message is acknowledged only after Handle
// returns nil, that is after the warehouse committed it; otherwise it is
// redelivered after a delay that grows with the number of attempts.
type WebhookConsumer struct {
	JetStream jetstream.JetStream
	Stream    stream.Config
	Name      string // "stripe"
	Durable   string // consumer name; default "herd_webhooks_<Name>"
	Handle    func(ctx context.Context, body []byte) error
	Log       *slog.Logger
	// AckWait is how long a message may be in Handle before JetStream
	// redelivers it; default 2 minutes (Handle may call a rate-limited API).
	AckWait time.Duration
	// MaxBackoff caps the redelivery delay after a failure; default 1 minute.
	MaxBackoff time.Duration
}

// Run consumes until ctx is done, then returns nil. It fails only if the
// consumer cannot be created.
func (w *WebhookConsumer) Run(ctx context.Context) error {
	log := w.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sc := w.Stream
	sc.Defaults()
	durable := w.Durable
	if durable == "" {
		durable = "herd_webhooks_" + w.Name
	}
	ackWait := w.AckWait
	if ackWait <= 0 {
		ackWait = 2 * time.Minute
	}
	maxBackoff := w.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = time.Minute
	}
	subject := sc.WebhookSubject(w.Name)
	cons, err := stream.CreateConsumer(ctx, w.JetStream, sc.Name, jetstream.ConsumerConfig{
		Durable:       durable,
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    -1,
		// Messages are handled one at a time (each may call a rate-limited
		// API); this bounds what one consumer holds unacknowledged.
		MaxAckPending: 256,
	}, log)
	if err != nil {
		return fmt.Errorf("create consumer %s on stream %s for %s: %w", durable, sc.Name, subject, err)
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(32))
	if err != nil {
		return fmt.Errorf("read %s through consumer %s: %w", subject, durable, err)
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		msgs.Stop()
	}()
	for {
		msg, err := msgs.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			log.Warn("webhook consumer: next message", "subject", subject, "err", err)
			// The iterator recovers by itself (reconnects, missed heartbeats);
			// pause so that a lasting failure does not spin.
			if sleep(ctx, 250*time.Millisecond) != nil {
				return nil
			}
			continue
		}
		w.handle(ctx, log, msg, maxBackoff)
	}
}

func (w *WebhookConsumer) handle(ctx context.Context, log *slog.Logger, msg jetstream.Msg, maxBackoff time.Duration) {
	err := w.Handle(ctx, msg.Data())
	if err == nil {
		if err := msg.Ack(); err != nil {
			// The change is committed; a redelivery is harmless because
			// connectors write idempotently.
			log.Warn("webhook consumer: ack", "source", w.Name, "err", err)
		}
		return
	}
	if ctx.Err() != nil {
		return // shutting down: JetStream redelivers after AckWait
	}
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	if IsPermanent(err) {
		log.Error("webhook dropped: it cannot be applied", "source", w.Name, "msg_id", id, "err", err)
		_ = msg.Term()
		return
	}
	n := uint64(1)
	if md, mdErr := msg.Metadata(); mdErr == nil {
		n = md.NumDelivered
	}
	delay := min(time.Second<<min(n-1, 16), maxBackoff)
	log.Warn("webhook failed; will retry", "source", w.Name, "msg_id", id, "attempt", n, "retry_in", delay, "err", err)
	_ = msg.NakWithDelay(delay)
}
