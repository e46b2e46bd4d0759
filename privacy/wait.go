package privacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WaitConsumers returns once each of the durable consumers has acknowledged
// every message the stream held when it was called: then every event sent
// before a deletion is stored, in Postgres (the writer's consumer) and in
// the lake (the archiver's), and the deletion removes it. A consumer that
// does not exist is skipped. The archiver acknowledges when it closes a
// file, so this can take up to its --file-max-age. ctx bounds the wait.
func WaitConsumers(ctx context.Context, js jetstream.JetStream, streamName string, consumers []string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := js.Stream(ctx, streamName)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", streamName, err)
	}
	last := s.CachedInfo().State.LastSeq
	lastLog := time.Now()
	for _, name := range consumers {
		for {
			c, err := js.Consumer(ctx, streamName, name)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				log.Info("privacy: no such consumer, not waited for", "consumer", name)
				break
			}
			if err != nil {
				return fmt.Errorf("read consumer %s: %w", name, err)
			}
			info := c.CachedInfo()
			// Past the sequence, or nothing left at all (the floor of a
			// filtered consumer stops at its last matching message).
			if info.AckFloor.Stream >= last || (info.NumPending == 0 && info.NumAckPending == 0) {
				break
			}
			if time.Since(lastLog) > 10*time.Second {
				lastLog = time.Now()
				log.Info("privacy: waiting for a consumer to store the events sent before the request",
					"consumer", name, "acked_through", info.AckFloor.Stream, "stream_seq", last,
					"pending", info.NumPending, "ack_pending", info.NumAckPending)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("consumer %s has not stored the events sent before the request (acknowledged through stream sequence %d of %d): %w; "+
					"start the writer and the archiver (herd up) or wait longer (--wait)", name, info.AckFloor.Stream, last, ctx.Err())
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}
