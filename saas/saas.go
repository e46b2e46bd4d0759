// Package saas loads third-party SaaS accounts (Stripe first) into the
// warehouse. Each source is a package that implements Connector; this package
// runs connectors on a schedule, feeds them the webhooks the collector made
// durable, and gives them an HTTP transport that respects the API's limits.
//
// # Writing a connector
//
// A connector owns a Postgres schema named after it (stripe, intercom, front)
// created by migrations in schemas/migrations (versions 0200-0299), and
// implements four methods:
//
//   - Name returns that name. It is also the webhook name: the collector
//     publishes verified webhook bodies on stream.Config.WebhookSubject(Name()),
//     and `herd sync NAME` runs the connector.
//   - Sync brings the warehouse up to date once and returns. The first call
//     backfills every object; later calls are incremental (an events feed, an
//     updated_at filter, whatever the API offers). Sync keeps its cursor in the
//     warehouse, so it resumes after a crash and may be interrupted at any point:
//     every write it makes must be idempotent.
//   - Webhook applies one webhook body. The body has already been verified
//     (signature, timestamp) by a verifier that imports only the standard
//     library, so that the collector stays free of Postgres. Webhook returns
//     nil only once the change is committed: the message is acknowledged in
//     JetStream after that, and redelivered otherwise. Wrap errors that a retry
//     cannot fix with Permanent.
//   - Check compares the source's objects with the warehouse's rows, per
//     object, and reports the ids that differ.
//
// Each connector keeps its state in <schema>.sync_state, one row per object,
// with at least the columns object (text), phase ('pending', 'backfill',
// 'incremental'), synced_until (every change before it is in the warehouse),
// last_success_at and last_error: herd status and the console read them
// from every schema that has them. A backfill reports its advance with
// Progress, and a connector its freshness with Freshness (the metrics
// herd_saas_lag_seconds and herd_saas_newest_change_age_seconds).
//
// Connectors must guard every write with the source's own notion of time (an
// event's created time, an object's updated_at) so that a webhook and a sync
// pass racing on the same object, or an event delivered late, never replace
// newer data with older.
//
// HTTP requests go through a Transport, which rate-limits and retries 429s and
// 5xx with backoff; connectors give it the API's own retry hint header.
package saas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Connector is one SaaS source. See the package documentation for the
// contract of each method.
type Connector interface {
	Name() string
	Sync(ctx context.Context) error
	Webhook(ctx context.Context, body []byte) error
	Check(ctx context.Context) ([]Diff, error)
}

// Diff compares one object type between the source and the warehouse.
type Diff struct {
	Object    string   // table name, e.g. "customers"
	Source    int      // objects the source lists
	Warehouse int      // rows not marked deleted
	Missing   []string // ids the source lists that the warehouse lacks (or marks deleted)
	Extra     []string // ids the warehouse holds that the source no longer lists
	Changed   []string // ids on both sides whose stored object differs from the source's
	// Problems are what a person must resolve that no pass will (a field
	// whose type changed in the source), each saying how.
	Problems []string
}

// Clean reports whether the two sides agree.
func (d Diff) Clean() bool {
	return d.Source == d.Warehouse && len(d.Missing) == 0 && len(d.Extra) == 0 && len(d.Changed) == 0 && len(d.Problems) == 0
}

// permanent marks an error that retrying will not fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so that the webhook consumer drops the message (after
// logging it) instead of redelivering it forever.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was wrapped by Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Runner runs a connector inside a long-lived process (herd up, or herd sync
// NAME without --once): a sync pass every Interval and, when Webhooks is set,
// the webhook consumer alongside.
type Runner struct {
	Connector Connector
	Interval  time.Duration    // between the end of a pass and the next; default 1 minute
	Webhooks  *WebhookConsumer // nil: no webhooks
	Log       *slog.Logger
}

// Run returns when ctx is done, or early if the webhook consumer cannot
// start. A failing sync pass is logged and retried at the next interval: an
// API outage must not stop the process that also runs the collector.
func (r *Runner) Run(ctx context.Context) error {
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	interval := r.Interval
	if interval <= 0 {
		interval = time.Minute
	}
	name := r.Connector.Name()
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if r.Webhooks != nil {
		go func() { errc <- r.Webhooks.Run(ctx) }()
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if r.Webhooks != nil {
				<-errc
			}
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = errors.New("consumer stopped")
			}
			return fmt.Errorf("%s webhooks: %w", name, err)
		case <-t.C:
		}
		start := time.Now()
		if err := r.Connector.Sync(ctx); err != nil && ctx.Err() == nil {
			log.Error("sync pass failed; retrying at the next interval", "source", name, "err", err, "next_in", interval)
		} else if err == nil {
			log.Debug("sync pass done", "source", name, "elapsed", time.Since(start).Round(time.Millisecond))
		}
		t.Reset(interval)
	}
}
