package warehouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// MirrorSources makes the collectors' key-value bucket follow herd.sources
// (see SyncSources) now, on every change (LISTEN herd_sources) and every
// interval as a safety net, until ctx ends.
func MirrorSources(ctx context.Context, db *pgxpool.Pool, kv jetstream.KeyValue, interval time.Duration, log *slog.Logger) error {
	return Follow(ctx, db, "herd_sources", interval, log, "mirror sources into NATS", func(ctx context.Context) error {
		return SyncSources(ctx, db, kv)
	})
}

// Follow runs sync now, on every notification on channel and every
// interval as a safety net (30 s when interval is not positive), until ctx
// ends. A failed sync is logged as what failed and tried again at the next
// wake.
func Follow(ctx context.Context, db *pgxpool.Pool, channel string, interval time.Duration, log *slog.Logger, what string, sync func(context.Context) error) error {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	wake := make(chan struct{}, 1)
	go listen(ctx, db, channel, wake, log)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := sync(ctx); err != nil && ctx.Err() == nil {
			log.Warn(what, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-t.C:
		}
	}
}

// SyncSources makes kv hold exactly the live sources of herd.sources, keyed
// by stream.SourceKey: it puts every source that is not revoked and deletes
// every other entry, that of a deleted or revoked source, of a write key
// that changed, or under an older version's key form. Collectors accept
// exactly the keys in the bucket.
//
// The bucket's keys are listed before the table is read: an entry put by a
// concurrent mirror after the listing is never deleted from a snapshot that
// predates it, and a row committed after the read wakes every mirror again.
func SyncSources(ctx context.Context, db *pgxpool.Pool, kv jetstream.KeyValue) error {
	existing, err := kv.Keys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return fmt.Errorf("list keys of bucket %s: %w", kv.Bucket(), err)
	}
	srcs, err := Sources(ctx, db)
	if err != nil {
		return err
	}
	live := make(map[string]bool, len(srcs))
	for _, s := range srcs {
		if s.Revoked {
			continue
		}
		key := stream.SourceKey(s.WriteKey)
		live[key] = true
		b, _ := json.Marshal(s)
		if e, err := kv.Get(ctx, key); err == nil && string(e.Value()) == string(b) {
			continue
		}
		if _, err := kv.Put(ctx, key, b); err != nil {
			return fmt.Errorf("put source %s into bucket %s: %w", s.Name, kv.Bucket(), err)
		}
	}
	for _, key := range existing {
		if live[key] {
			continue
		}
		if err := kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("delete entry %s (no live source) from bucket %s: %w", key, kv.Bucket(), err)
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
			if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
				return err
			}
			defer conn.Exec(context.WithoutCancel(ctx), "UNLISTEN "+pgx.Identifier{channel}.Sanitize()) //nolint:errcheck
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
		log.Debug("listen for changes", "channel", channel, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
