package stream

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// CreateConsumer creates or updates a durable consumer of the named stream.
// A JetStream that does not answer in time (busy, or still starting after a
// restart) is asked again, with backoff from 100 ms to 5 s, until ctx ends;
// any other error is returned at once. log, when set, hears of each retry.
func CreateConsumer(ctx context.Context, js jetstream.JetStream, streamName string, cfg jetstream.ConsumerConfig, log *slog.Logger) (jetstream.Consumer, error) {
	delay := 100 * time.Millisecond
	for {
		cons, err := js.CreateOrUpdateConsumer(ctx, streamName, cfg)
		transient := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)
		if err == nil || !transient || ctx.Err() != nil {
			return cons, err
		}
		if log != nil {
			log.Warn("create consumer; will retry", "consumer", cfg.Durable, "stream", streamName, "retry_in", delay, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}
