package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/console"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// consoleFlags are the console's settings, --console-* in herd up and
// herd console alike (so that HERD_CONSOLE_LISTEN never meets herd up's
// HERD_LISTEN).
type consoleFlags struct {
	listen         string
	secureCookies  bool
	trustedProxies string
	maxSessions    int
}

func (c *consoleFlags) bind(fs *flag.FlagSet, empty bool) {
	const prefix = "console-"
	listenUsage := "serve the console (the web workspace) on this host:port"
	if empty {
		listenUsage += " (empty: no console)"
	}
	fs.StringVar(&c.listen, prefix+"listen", defaultConsoleListen, listenUsage)
	fs.BoolVar(&c.secureCookies, prefix+"secure-cookies", false, "mark the console's session cookie Secure even on plain HTTP requests (behind a TLS proxy that sets no X-Forwarded-Proto)")
	fs.StringVar(&c.trustedProxies, prefix+"trusted-proxies", "", "comma-separated addresses or CIDRs of proxies in front of the console whose X-Forwarded-For and X-Forwarded-Proto it believes")
	fs.IntVar(&c.maxSessions, prefix+"max-sessions", 50, "most console sessions open at once; each holds one Postgres connection as its user")
}

func (c *consoleFlags) config() (console.Config, error) {
	cfg := console.Config{SecureCookies: c.secureCookies, MaxSessions: c.maxSessions}
	for _, s := range strings.Split(c.trustedProxies, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return cfg, usagef("trusted proxy %q: want an address or a CIDR", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, p)
	}
	return cfg, nil
}

// lakeLocate adapts archive.Locate for the console's trace.
func lakeLocate(lake archive.Lake) console.LocateFunc {
	return func(ctx context.Context, src int64, ts time.Time, seq uint64) (string, string, error) {
		key, _, err := archive.Locate(ctx, lake, src, ts, seq)
		return key, path.Dir(key), err
	}
}

// defaultConsoleListen is where herd up serves the console unless told.
const defaultConsoleListen = "127.0.0.1:8082"

// startConsole serves the console in g; it returns its URL, or "" when
// disabled. optional (herd up) lets it run without when the default
// address is taken.
func startConsole(e *env, g *group, reg prometheus.Registerer, cf *consoleFlags, db *pgxpool.Pool, dbURL string, nc *nats.Conn, js jetstream.JetStream, sc stream.Config, lake archive.Lake, optional bool) (string, error) {
	if cf.listen == "" {
		return "", nil
	}
	if cf.maxSessions <= 0 {
		return "", usagef("--console-max-sessions must be at least 1")
	}
	cfg, err := cf.config()
	if err != nil {
		return "", err
	}
	cfg.DB, cfg.DatabaseURL, cfg.NATS, cfg.JS, cfg.Stream = db, dbURL, nc, js, sc
	cfg.Log, cfg.Registerer = e.log.With("component", "console"), reg
	if lake != nil {
		cfg.Locate = lakeLocate(lake)
	}
	srv, err := console.New(cfg)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", cf.listen)
	if err != nil && cf.listen == defaultConsoleListen && errors.Is(err, syscall.EADDRINUSE) && optional {
		// Another herd (or anything) holds the default port: herd up
		// runs without its console rather than not at all, and says so.
		srv.Close()
		e.log.Warn("console not served: its default address is in use; set --console-listen to a free host:port (or empty for no console)", "addr", cf.listen)
		return "", nil
	}
	if err != nil {
		srv.Close()
		return "", fmt.Errorf("console: listen on %s: %w (set --console-listen to a free address, or empty to run no console)", cf.listen, err)
	}
	g.Go("console", func(ctx context.Context) error { return srv.Serve(ctx, ln) })
	return "http://" + dialAddr(ln.Addr()), nil
}

type consoleCmdFlags struct {
	dbFlags
	streamFlags
	console consoleFlags
	nats    natsFlags
	lake    lakeFlags
}

func init() {
	register(&command{
		name:    "console",
		summary: "serve the web console alone (herd up serves it too, on --console-listen)",
		help: `The console is a web workspace on the warehouse: people sign in with the login
herd analysts add printed, and every query runs as their own Postgres role.
Members of the herd_admin role (GRANT herd_admin TO NAME) also see the
operator pages: live events and trace (these need NATS: --nats-url, or the
herd up of --data-dir), pipeline, rollups, usage, loaders and sources.

Postgres must check passwords: when it trusts local connections (pg_hba
trust), herd checks them against pg_authid itself, which needs herd to
connect as a superuser; otherwise sign-in is refused with what to change.`,
		flags: func(fs *flag.FlagSet) any {
			var f consoleCmdFlags
			f.dbFlags.bind(fs)
			f.streamFlags.bind(fs)
			f.console.bind(fs, false)
			f.nats.bind(fs, "", "NATS server URL(s) for live events, trace and stream depth")
			f.lake.bind(fs)
			return &f
		},
		run: runConsole,
	})
}

func runConsole(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("herd console takes no arguments")
	}
	f := config[*consoleCmdFlags]("console")
	if f.console.listen == "" {
		return usagef("--console-listen is empty: give the host:port to serve the console on")
	}
	db, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := schemas.Migrate(ctx, db); err != nil {
		return err
	}
	sc := f.streamFlags.config()
	var nc *nats.Conn
	var js jetstream.JetStream
	if f.nats.url != "" {
		nc, err = f.nats.connect("herd-console")
		if err != nil {
			return err
		}
		defer nc.Drain() //nolint:errcheck
		if js, err = jetstream.New(nc); err != nil {
			return err
		}
	} else {
		e.log.Warn("no NATS given: the console's live events, trace stream times and stream depth are off (set --nats-url)")
	}
	var lake archive.Lake
	if f.lake.lake != "" {
		if lake, err = f.lake.openLake(); err != nil {
			e.log.Warn("the console's trace will not name lake files", "lake", f.lake.lake, "err", err)
			lake = nil
		}
	}
	g := newGroup(ctx, e.log)
	url, err := startConsole(e, g, nil, &f.console, db, f.url, nc, js, sc, lake, false)
	if err != nil {
		g.cancel()
		g.Wait() //nolint:errcheck
		return err
	}
	fmt.Fprintf(e.stdout, "herd console on %s\n", url)
	return g.Wait()
}
