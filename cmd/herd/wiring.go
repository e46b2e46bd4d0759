package main

import (
	"context"
	"flag"
	"time"

	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/queries"
	"github.com/herdhq/herd/replicate"
	"github.com/herdhq/herd/rollups"
	sdkjs "github.com/herdhq/herd/sdk-js"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/views"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// addStatic serves the browser SDK, and the demo page when a write key is
// known (herd up's default source). The collector serves the page only
// while that key is a live browser source's: it shows the key to anyone
// who reaches the listener.
func addStatic(cfg *collector.Config, writeKey string) {
	if cfg.Static == nil {
		cfg.Static = map[string]collector.Static{}
	}
	sdk := collector.Static{ContentType: "application/javascript; charset=utf-8", CacheControl: "public, max-age=3600", Body: sdkjs.Script}
	cfg.Static["/sdk.js"] = sdk
	cfg.Static["/v1/sdk.js"] = sdk
	if writeKey == "" {
		return
	}
	demo := collector.Static{ContentType: "text/html; charset=utf-8", CacheControl: "no-store", WriteKey: writeKey, Render: func(host, scheme string) []byte {
		return sdkjs.DemoPage(writeKey, scheme+"://"+host)
	}}
	cfg.Static["/demo"] = demo
	cfg.Static["/"] = demo
}

// startExtras runs what herd up carries beside the event path: the rollup
// and saved-query scheduler, the replication watcher, and the Stripe loop
// when a key is configured.
func startExtras(e *env, g *group, a *admin, db *pgxpool.Pool, js jetstream.JetStream, sc stream.Config, f *upFlags) error {
	sched := rollups.NewScheduler(db, e.log.With("component", "rollups"), rollups.Config{})
	g.Go("scheduler", sched.Run)
	// Saved queries run on a tick of their own: a slow one never delays
	// a rollup.
	saved := queries.New(db, e.log.With("component", "queries"), queries.Config{})
	g.Go("saved queries", func(ctx context.Context) error { return saved.RunScheduled(ctx, time.Minute) })
	a.mux.Handle("/q/", queries.Handler(db, e.log))

	w, err := replicate.NewWatcher(db, replicate.WatchConfig{Log: e.log.With("component", "replicate"), Registerer: a.reg})
	if err != nil {
		return err
	}
	g.Go("replication watcher", w.Run)
	a.reg.MustRegister(replicate.NewCollector(db, e.log))

	startArchiver(e, g, a, db, js, sc, f.dataDir, f.consumerName, f.partsWindow, f.lake.closeAfter)
	startCheck(e, g, a, db, js, sc, f)
	viewMetrics := views.NewMetrics(a.reg)
	g.Go("event views", func(ctx context.Context) error {
		t := time.NewTicker(10 * time.Minute)
		defer t.Stop()
		// A refresh reads every track event of the window: at start it runs
		// only when no view exists yet (a new install), so that a restart
		// does not put that scan beside the backlog it comes back to.
		var made bool
		if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM herd.event_views)`).Scan(&made); err != nil {
			e.log.Warn("read event views", "err", err)
		}
		for refresh := !made; ; refresh = true {
			if refresh {
				if _, err := views.Refresh(ctx, db, views.Config{Metrics: viewMetrics}, e.log.With("component", "views")); err != nil && ctx.Err() == nil {
					e.log.Warn("refresh event views", "err", err)
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	})

	return startConnectors(e, g, a, db, js, sc, f.connectors)
}

// upLakeFlags are herd up's settings of its archiver.
type upLakeFlags struct {
	closeAfter time.Duration
}

func (l *upLakeFlags) bind(fs *flag.FlagSet) {
	fs.DurationVar(&l.closeAfter, "lake-close-after", archive.DefaultCloseAfter,
		"close an hour's lake partition this long after the hour ends: compact it into one sorted file holding each event once (negative: never)")
}
