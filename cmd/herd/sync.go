package main

import (
	"flag"
	"log/slog"
	"os"
	"time"

	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/saas/stripe"
	"github.com/herdhq/herd/saas/stripe/stripehook"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// stripeFlags configure the Stripe connector.
type stripeFlags struct {
	apiKey   string
	apiBase  string
	rate     float64
	interval time.Duration
}

func (f *stripeFlags) bind(fs *flag.FlagSet, up bool) {
	if up {
		// herd up has many flags: Stripe's carry its name.
		fs.StringVar(&f.apiKey, "stripe-api-key", "", "Stripe key; when set, herd up keeps stripe.* fresh (also $STRIPE_API_KEY)")
		fs.Float64Var(&f.rate, "stripe-rate", 20, "Stripe API requests per second at most")
		fs.DurationVar(&f.interval, "stripe-interval", time.Minute, "time between Stripe sync passes")
	} else {
		fs.StringVar(&f.apiKey, "api-key", "", "Stripe secret or restricted read key (also $STRIPE_API_KEY)")
		fs.Float64Var(&f.rate, "rate", 20, "Stripe API requests per second at most")
	}
	fs.StringVar(&f.apiBase, "stripe-api-base", stripe.DefaultAPIBase, "Stripe API base URL (tests point it at a fake)")
}

// key returns the API key: the flag, then $STRIPE_API_KEY, the name
// Stripe's own tools use.
func (f *stripeFlags) key() string {
	if f.apiKey != "" {
		return f.apiKey
	}
	return os.Getenv("STRIPE_API_KEY")
}

func (f *stripeFlags) missing() string {
	if f.key() != "" {
		return ""
	}
	return "--stripe-api-key or $STRIPE_API_KEY"
}

func (f *stripeFlags) every() time.Duration { return f.interval }

func (f *stripeFlags) open(db *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) (saas.Connector, error) {
	return stripe.New(stripe.Config{
		APIKey:  f.key(),
		APIBase: f.apiBase,
		Limits:  saas.Limits{RequestsPerSecond: f.rate},
	}, db, log, reg)
}

func init() {
	registerConnector(&connector{
		name:  "stripe",
		title: "Stripe",
		syncHelp: `The first run backfills customers, products, prices, subscriptions, invoices,
charges, payment intents, refunds, disputes, balance transactions and coupons
into tables under the stripe schema, logging a line per object. Later passes
read the Events API from a cursor kept in stripe.sync_state; a cursor older
than the Events API's 30-day retention triggers a full resync.`,
		checkHelp: `Lists every object in Stripe and compares it with its table: counts, ids Stripe
has that the warehouse lacks (missing), ids the warehouse has that Stripe no
longer lists (extra), and objects whose stored copy differs (changed). On a
live account, objects changed in the last moments show as changed until the
next pass.`,
		newFlags:   func() connectorFlags { return &stripeFlags{} },
		webhookEnv: "STRIPE_WEBHOOK_SECRET",
		verifier: func(secrets []string) func([]byte, func(string) string, time.Time) (string, error) {
			v := &stripehook.Verifier{Secrets: secrets, Tolerance: stripehook.DefaultTolerance}
			return v.Verify
		},
	})
}
