package collector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats.go/jetstream"
)

// Suppression: the people whose events herd must no longer store (herd
// privacy suppress). The warehouse mirrors herd.suppressions into a NATS
// bucket keyed by stream.SuppressKey, a hash of the id; the collector
// watches it and drops a suppressed person's events before they reach the
// stream: answered 200 like any accepted event (a client that sees errors
// retries), counted in herd_collector_events_total{result="dropped",
// reason="suppressed"}, stored nowhere.

// watchSuppressions loads the bucket and follows it until ctx ends; it
// returns once the current entries are loaded.
func (c *Collector) watchSuppressions(ctx context.Context) error {
	kv, err := stream.SuppressedKV(ctx, c.js, c.cfg.Stream)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", stream.DefaultSuppressedKV, err)
	}
	loaded := make(chan struct{})
	go func() {
		defer w.Stop() //nolint:errcheck
		once := false
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if !once {
						once = true
						close(loaded)
					}
					continue
				}
				c.applySuppression(e)
			}
		}
	}()
	select {
	case <-loaded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(15 * time.Second):
		return errors.New("bucket " + stream.DefaultSuppressedKV + " did not load within 15s")
	}
}

// applySuppression copies the set with the entry added or removed: the set
// is small and changes rarely, and readers never lock.
func (c *Collector) applySuppression(e jetstream.KeyValueEntry) {
	next := map[string]struct{}{}
	if old := c.suppressed.Load(); old != nil {
		for k := range *old {
			next[k] = struct{}{}
		}
	}
	if e.Operation() == jetstream.KeyValuePut {
		next[e.Key()] = struct{}{}
	} else {
		delete(next, e.Key())
	}
	c.suppressed.Store(&next)
}

// isSuppressed reports whether the event's userId or anonymousId (or, for
// an alias, previousId) is suppressed. Nothing is hashed while the set is
// empty.
func (c *Collector) isSuppressed(ev *herd.Event) bool {
	p := c.suppressed.Load()
	if p == nil || len(*p) == 0 {
		return false
	}
	set := *p
	has := func(kind, id string) bool {
		if id == "" {
			return false
		}
		_, ok := set[stream.SuppressKey(kind, id)]
		return ok
	}
	return has(stream.SuppressUserID, ev.UserID) || has(stream.SuppressAnonymousID, ev.AnonymousID) ||
		(ev.Type == herd.TypeAlias && (has(stream.SuppressUserID, ev.PreviousID) || has(stream.SuppressAnonymousID, ev.PreviousID)))
}
