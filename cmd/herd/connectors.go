package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/doctor"
	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// A connector is one SaaS source as the command line sees it. Each source's
// file (sync.go for Stripe, sync_intercom.go, ...) describes itself with
// registerConnector; from that description come `herd sync NAME`,
// `herd sync NAME check`, herd up's loop and flags, the collector's
// POST /webhooks/NAME and herd doctor's webhook check.
type connector struct {
	name      string // schema, webhook and command name: "stripe"
	title     string // "Stripe"
	syncHelp  string // herd help sync NAME
	checkHelp string // herd help sync NAME check
	// newFlags returns an empty set of the connector's settings.
	newFlags func() connectorFlags
	// webhook is the signing secret's variable and the verifier built from
	// its value (comma-separated secrets during a rotation); webhookEnv ""
	// means the source sends no webhooks herd accepts.
	webhookEnv string
	verifier   func(secrets []string) func(body []byte, header func(string) string, now time.Time) (string, error)
	// handshake, when set, answers the source's verified setup request
	// (collector.Webhook.Handshake).
	handshake func(secrets []string) func(body []byte, header func(string) string, now time.Time) ([]byte, bool)
	// repairHint, when set, is what check says to do about differences
	// (default: run a pass and check again).
	repairHint string
}

// connectorFlags are one connector's settings.
type connectorFlags interface {
	// bind defines the flags. In herd up (up true) their names carry the
	// connector's name as a prefix (--intercom-api-base), and the loop's
	// interval is one of them.
	bind(fs *flag.FlagSet, up bool)
	// missing is "" when the credentials are set, else what to set
	// ("$INTERCOM_ACCESS_TOKEN or --intercom-token-file").
	missing() string
	// open builds the connector.
	open(db *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) (saas.Connector, error)
	// every is the time between passes in herd up.
	every() time.Duration
}

var connectors = map[string]*connector{}

// connectorNames lists the registered connectors in name order.
func connectorNames() []string {
	names := make([]string, 0, len(connectors))
	for n := range connectors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// syncFlags are herd sync NAME's settings: the connector's, the database,
// --once, --interval and where to consume webhooks from.
type syncFlags struct {
	dbFlags
	conn     connectorFlags
	once     bool
	interval time.Duration
	nats     natsFlags
}

// syncCheckFlags are herd sync NAME check's settings.
type syncCheckFlags struct {
	dbFlags
	conn connectorFlags
}

func registerConnector(c *connector) {
	if _, dup := connectors[c.name]; dup {
		panic("herd: connector registered twice: " + c.name)
	}
	connectors[c.name] = c
	webhookHelp := ""
	if c.webhookEnv != "" {
		webhookHelp = fmt.Sprintf(`

Without --once, a pass runs every --interval until interrupted; with
--nats-url, the webhooks the collector received at POST /webhooks/%s (signed
with $%s) are applied as they arrive.`, c.name, c.webhookEnv) + "\n\n" + natsHelp
	}
	register(&command{
		name:    "sync " + c.name,
		summary: fmt.Sprintf("load %s into the warehouse (%s.*), then keep it fresh", c.title, c.name),
		usage:   "[--once] [flags]",
		help:    c.syncHelp + webhookHelp,
		flags: func(fs *flag.FlagSet) any {
			f := &syncFlags{conn: c.newFlags()}
			f.dbFlags.bind(fs)
			bindConnectorFlags(fs, c.name, f.conn)
			fs.BoolVar(&f.once, "once", false, "run one pass and exit")
			fs.DurationVar(&f.interval, "interval", time.Minute, "time between passes")
			// herd up applies webhooks itself when it has the credentials:
			// this loop consumes them only when told where.
			if c.webhookEnv != "" { // a source without webhooks has no use for NATS
				f.nats.explicit = true
				f.nats.bind(fs, "", fmt.Sprintf("NATS server to consume %s webhooks from (default: no webhooks)", c.title))
			}
			return f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 0 {
				return usagef("unexpected arguments %q", args)
			}
			f := config[*syncFlags]("sync " + c.name)
			if m := f.conn.missing(); m != "" {
				return usagef("no %s credentials: set %s", c.title, m)
			}
			db, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if _, err := schemas.Migrate(ctx, db); err != nil {
				return err
			}
			s, err := f.conn.open(db, e.log, nil)
			if err != nil {
				return err
			}
			if f.once {
				return s.Sync(ctx)
			}
			r := &saas.Runner{Connector: s, Interval: f.interval, Log: e.log}
			if f.nats.url != "" && c.webhookEnv != "" {
				nc, err := f.nats.connect("herd sync " + c.name)
				if err != nil {
					return err
				}
				defer nc.Close()
				js, err := jetstream.New(nc)
				if err != nil {
					return fmt.Errorf("JetStream at %s: %w", redact(f.nats.url), err)
				}
				r.Webhooks = webhookConsumer(js, stream.Config{}, s, e.log)
			}
			return r.Run(ctx)
		},
	})
	register(&command{
		name:    "sync " + c.name + " check",
		summary: fmt.Sprintf("compare %s with the warehouse, per object", c.title),
		help:    c.checkHelp + "\n\nExits with status 1 when anything differs.",
		flags: func(fs *flag.FlagSet) any {
			f := &syncCheckFlags{conn: c.newFlags()}
			f.dbFlags.bind(fs)
			bindConnectorFlags(fs, c.name, f.conn)
			return f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 0 {
				return usagef("unexpected arguments %q", args)
			}
			f := config[*syncCheckFlags]("sync " + c.name + " check")
			if m := f.conn.missing(); m != "" {
				return usagef("no %s credentials: set %s", c.title, m)
			}
			db, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			s, err := f.conn.open(db, e.log, nil)
			if err != nil {
				return err
			}
			diffs, err := s.Check(ctx)
			if err != nil {
				return err
			}
			return printDiffs(e, c, diffs)
		},
	})
}

// upConnectorFlags binds every connector's herd up flags.
func upConnectorFlags(fs *flag.FlagSet) map[string]connectorFlags {
	m := map[string]connectorFlags{}
	for _, n := range connectorNames() {
		m[n] = connectors[n].newFlags()
		m[n].bind(fs, true)
	}
	return m
}

// startConnectors runs, in herd up, the loop of every connector whose
// credentials are set, with its webhook consumer.
func startConnectors(e *env, g *group, a *admin, db *pgxpool.Pool, js jetstream.JetStream, sc stream.Config, flags map[string]connectorFlags) error {
	for _, n := range connectorNames() {
		c, f := connectors[n], flags[n]
		if f == nil || f.missing() != "" {
			continue
		}
		log := e.log.With("component", n)
		s, err := f.open(db, log, a.reg)
		if err != nil {
			return fmt.Errorf("%s: %w", c.title, err)
		}
		r := &saas.Runner{Connector: s, Interval: f.every(), Log: log}
		if js != nil && c.webhookEnv != "" {
			r.Webhooks = webhookConsumer(js, sc, s, log)
		}
		g.Go(n, func(ctx context.Context) error { return r.Run(ctx) })
	}
	return nil
}

// addWebhooks accepts on the collector each connector's signed callbacks,
// at POST /webhooks/NAME, when its signing secret is set (comma-separated
// during a rotation).
func addWebhooks(cfg *collector.Config) {
	for _, n := range connectorNames() {
		c := connectors[n]
		if c.webhookEnv == "" {
			continue
		}
		secrets := webhookSecrets(os.Getenv(c.webhookEnv))
		if len(secrets) == 0 {
			continue
		}
		w := collector.Webhook{Path: "/webhooks/" + n, Name: n, Verify: c.verifier(secrets)}
		if c.handshake != nil {
			w.Handshake = c.handshake(secrets)
		}
		cfg.Webhooks = append(cfg.Webhooks, w)
	}
}

// webhookSecrets splits a signing-secret variable at commas (several during
// a rotation), without the blanks around them and without empty ones: an
// empty secret ("s3cret," by a slip) would let anyone sign with "".
func webhookSecrets(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// webhookChecks are herd doctor's: a signing secret without the credentials
// that apply what it lets in.
func webhookChecks(flags map[string]connectorFlags) []doctor.Result {
	var rs []doctor.Result
	for _, n := range connectorNames() {
		c, f := connectors[n], flags[n]
		if c.webhookEnv == "" || f == nil {
			continue
		}
		m := f.missing()
		rs = append(rs, doctor.Webhooks(c.title, c.webhookEnv, os.Getenv(c.webhookEnv) != "", m, m == ""))
	}
	return rs
}

// webhookConsumer applies the webhooks the collector published on sc's
// webhook subject for s.
func webhookConsumer(js jetstream.JetStream, sc stream.Config, s saas.Connector, log *slog.Logger) *saas.WebhookConsumer {
	return &saas.WebhookConsumer{JetStream: js, Stream: sc, Name: s.Name(), Handle: s.Webhook, Log: log}
}

func printDiffs(e *env, c *connector, diffs []saas.Diff) error {
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "OBJECT\t%s\tWAREHOUSE\tMISSING\tEXTRA\tCHANGED\n", strings.ToUpper(c.name))
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
		for _, p := range d.Problems {
			fmt.Fprintf(e.stdout, "%s: %s\n", d.Object, p)
		}
	}
	if bad > 0 {
		if c.repairHint != "" {
			return fmt.Errorf("%d of %d %s objects differ from the warehouse; %s", bad, len(diffs), c.title, c.repairHint)
		}
		return fmt.Errorf("%d of %d %s objects differ from the warehouse; run 'herd sync %s --once' and check again", bad, len(diffs), c.title, c.name)
	}
	return nil
}
