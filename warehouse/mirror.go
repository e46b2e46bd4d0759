package warehouse

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// MirrorSources copies herd.sources into the collectors' key-value bucket now,
// on every change (LISTEN herd_sources) and every interval as a safety net,
// until ctx ends.
func MirrorSources(ctx context.Context, db *pgxpool.Pool, kv jetstream.KeyValue, interval time.Duration, log *slog.Logger) error {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	wake := make(chan struct{}, 1)
	go listen(ctx, db, "herd_sources", wake, log)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := SyncSources(ctx, db, kv); err != nil && ctx.Err() == nil {
			log.Warn("mirror sources into NATS", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-t.C:
		}
	}
}

// SyncSources writes every source into kv, keyed by write key.
func SyncSources(ctx context.Context, db *pgxpool.Pool, kv jetstream.KeyValue) error {
	srcs, err := Sources(ctx, db)
	if err != nil {
		return err
	}
	for _, s := range srcs {
		key := stream.SourceKey(s.WriteKey)
		b, _ := json.Marshal(s)
		if e, err := kv.Get(ctx, key); err == nil && string(e.Value()) == string(b) {
			continue
		}
		if _, err := kv.Put(ctx, key, b); err != nil {
			return fmt.Errorf("put source %s into bucket %s: %w", s.Name, kv.Bucket(), err)
		}
	}
	return nil
}

// listen signals wake on every notification on channel, reconnecting on
// error, until ctx ends.
func listen(ctx context.Context, db *pgxpool.Pool, channel string, wake chan<- struct{}, log *slog.Logger) {
	for ctx.Err() == nil {
		err := func() error {
			conn, err := db.Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
				return err
			}
			defer conn.Exec(context.WithoutCancel(ctx), "UNLISTEN "+channel) //nolint:errcheck
			for {
				if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
					return err
				}
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}()
		if ctx.Err() != nil {
			return
		}
		log.Debug("listen for source changes", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
