package main

import (
	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// addStatic serves the browser SDK and the demo page from the collector.
func addStatic(cfg *collector.Config) {}

// addWebhooks accepts third-party callbacks on the collector.
func addWebhooks(cfg *collector.Config) {}

// startExtras runs the loaders and schedulers herd up carries.
func startExtras(e *env, g *group, a *admin, db *pgxpool.Pool, js jetstream.JetStream, sc stream.Config) {
}
