package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/saas/stripe"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// stripeFlags configure the Stripe connector.
type stripeFlags struct {
	dbFlags
	apiKey   string
	apiBase  string
	rate     float64
	once     bool
	interval time.Duration
	nats     natsFlags
}

func (f *stripeFlags) bind(fs *flag.FlagSet) {
	f.dbFlags.bind(fs)
	fs.StringVar(&f.apiKey, "api-key", "", "Stripe secret or restricted read key (also $STRIPE_API_KEY)")
	fs.StringVar(&f.apiBase, "stripe-api-base", stripe.DefaultAPIBase, "Stripe API base URL (tests point it at a fake)")
	fs.Float64Var(&f.rate, "rate", 20, "Stripe API requests per second at most")
}

// bindUp adds the Stripe flags to herd up, prefixed because up has many.
// The loop runs when a key is set (--stripe-api-key or $STRIPE_API_KEY).
func (f *stripeFlags) bindUp(fs *flag.FlagSet) {
	fs.StringVar(&f.apiKey, "stripe-api-key", "", "Stripe key; when set, herd up keeps stripe.* fresh (also $STRIPE_API_KEY)")
	fs.StringVar(&f.apiBase, "stripe-api-base", stripe.DefaultAPIBase, "Stripe API base URL (tests point it at a fake)")
	fs.Float64Var(&f.rate, "stripe-rate", 20, "Stripe API requests per second at most")
	fs.DurationVar(&f.interval, "stripe-interval", time.Minute, "time between Stripe sync passes")
}

// key returns the API key: the flag, $HERD_API_KEY, then $STRIPE_API_KEY,
// the name Stripe's own tools use.
func (f *stripeFlags) key() string {
	if f.apiKey != "" {
		return f.apiKey
	}
	return os.Getenv("STRIPE_API_KEY")
}

func (f *stripeFlags) syncer(db *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) (*stripe.Syncer, error) {
	return stripe.New(stripe.Config{
		APIKey:  f.key(),
		APIBase: f.apiBase,
		Limits:  saas.Limits{RequestsPerSecond: f.rate},
	}, db, log, reg)
}

func init() {
	register(&command{
		name:    "sync stripe",
		summary: "load Stripe into the warehouse (stripe.*), then keep it fresh",
		usage:   "[--once] [flags]",
		help: `The first run backfills customers, products, prices, subscriptions, invoices,
charges, payment intents, refunds, disputes, balance transactions and coupons
into tables under the stripe schema, logging a line per object. Later passes
read the Events API from a cursor kept in stripe.sync_state; a cursor older
than the Events API's 30-day retention triggers a full resync.

Without --once, a pass runs every --interval until interrupted; with
--nats-url, webhooks the collector received at POST /webhooks/stripe are
applied as they arrive.

` + natsHelp,
		flags: func(fs *flag.FlagSet) any {
			var f stripeFlags
			f.bind(fs)
			fs.BoolVar(&f.once, "once", false, "run one pass and exit")
			fs.DurationVar(&f.interval, "interval", time.Minute, "time between passes")
			// herd up applies Stripe's webhooks itself when it has the key:
			// this loop consumes them only when told where.
			f.nats.explicit = true
			f.nats.bind(fs, "", "NATS server to consume Stripe webhooks from (default: no webhooks)")
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 0 {
				return usagef("unexpected arguments %q", args)
			}
			f := config[*stripeFlags]("sync stripe")
			if f.key() == "" {
				return usagef("no Stripe API key: set STRIPE_API_KEY or --api-key")
			}
			db, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if _, err := schemas.Migrate(ctx, db); err != nil {
				return err
			}
			s, err := f.syncer(db, e.log, nil)
			if err != nil {
				return err
			}
			if f.once {
				return s.Sync(ctx)
			}
			r := &saas.Runner{Connector: s, Interval: f.interval, Log: e.log}
			if f.nats.url != "" {
				nc, err := f.nats.connect("herd sync stripe")
				if err != nil {
					return err
				}
				defer nc.Close()
				js, err := jetstream.New(nc)
				if err != nil {
					return fmt.Errorf("JetStream at %s: %w", redact(f.nats.url), err)
				}
				r.Webhooks = stripeWebhooks(js, stream.Config{}, s, e.log)
			}
			return r.Run(ctx)
		},
	})
	register(&command{
		name:    "sync stripe check",
		summary: "compare Stripe with the warehouse, per object",
		help: `Lists every object in Stripe and compares it with its table: counts, ids Stripe
has that the warehouse lacks (missing), ids the warehouse has that Stripe no
longer lists (extra), and objects whose stored copy differs (changed). On a
live account, objects changed in the last moments show as changed until the
next pass. Exits with status 1 when anything differs.`,
		flags: func(fs *flag.FlagSet) any {
			var f stripeFlags
			f.bind(fs)
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 0 {
				return usagef("unexpected arguments %q", args)
			}
			f := config[*stripeFlags]("sync stripe check")
			if f.key() == "" {
				return usagef("no Stripe API key: set STRIPE_API_KEY or --api-key")
			}
			db, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			s, err := f.syncer(db, e.log, nil)
			if err != nil {
				return err
			}
			diffs, err := s.Check(ctx)
			if err != nil {
				return err
			}
			return printDiffs(e, diffs)
		},
	})
}

func printDiffs(e *env, diffs []saas.Diff) error {
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "OBJECT\tSTRIPE\tWAREHOUSE\tMISSING\tEXTRA\tCHANGED")
	bad := 0
	for _, d := range diffs {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\n", d.Object, d.Source, d.Warehouse, len(d.Missing), len(d.Extra), len(d.Changed))
		if !d.Clean() {
			bad++
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, d := range diffs {
		for _, l := range []struct {
			what string
			ids  []string
		}{{"missing", d.Missing}, {"extra", d.Extra}, {"changed", d.Changed}} {
			if len(l.ids) == 0 {
				continue
			}
			shown := l.ids[:min(len(l.ids), 50)]
			more := ""
			if len(l.ids) > len(shown) {
				more = fmt.Sprintf(" (and %d more)", len(l.ids)-len(shown))
			}
			fmt.Fprintf(e.stdout, "%s %s: %s%s\n", d.Object, l.what, strings.Join(shown, " "), more)
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d Stripe objects differ from the warehouse; run 'herd sync stripe --once' and check again", bad, len(diffs))
	}
	return nil
}

// stripeWebhooks is the consumer that applies the Stripe webhooks the
// collector published on sc's webhook subject.
func stripeWebhooks(js jetstream.JetStream, sc stream.Config, s *stripe.Syncer, log *slog.Logger) *saas.WebhookConsumer {
	return &saas.WebhookConsumer{JetStream: js, Stream: sc, Name: s.Name(), Handle: s.Webhook, Log: log}
}

// stripeRunner is what herd up runs when a Stripe API key is configured:
// a pass every minute and the webhook consumer. It returns nil, nil when no
// key is set.
func stripeRunner(f *stripeFlags, db *pgxpool.Pool, js jetstream.JetStream, sc stream.Config, log *slog.Logger, reg prometheus.Registerer) (*saas.Runner, error) {
	if f.key() == "" {
		return nil, nil
	}
	s, err := f.syncer(db, log, reg)
	if err != nil {
		return nil, err
	}
	interval := f.interval
	if interval <= 0 {
		interval = time.Minute
	}
	r := &saas.Runner{Connector: s, Interval: interval, Log: log}
	if js != nil {
		r.Webhooks = stripeWebhooks(js, sc, s, log)
	}
	return r, nil
}
