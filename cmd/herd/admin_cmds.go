package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/warehouse"
	"github.com/jackc/pgx/v5/pgxpool"
)

// dbFlags is embedded by every command that talks to the warehouse.
type dbFlags struct {
	url   string
	tried string // why the herd up of --data-dir gave no URL (see locate)
}

func (d *dbFlags) bind(fs *flag.FlagSet) {
	fs.Var(&dbURLValue{d}, "database-url", "warehouse Postgres URL (also $DATABASE_URL; default: the database of the herd up running on --data-dir)")
}

func (d *dbFlags) open(ctx context.Context) (*pgxpool.Pool, error) {
	if d.url == "" {
		return nil, errors.New(d.triedDB())
	}
	return warehouse.Open(ctx, d.url)
}

type sourceFlags struct {
	dbFlags
	kind      string
	writeKey  string
	origins   string
	anonymize bool
	rateLimit float64
}

func init() {
	register(&command{
		name:    "migrate",
		summary: "apply herd's schema migrations to the warehouse",
		help:    "Safe to run while other herd processes start: one applies, the others wait.",
		flags: func(fs *flag.FlagSet) any {
			var d dbFlags
			d.bind(fs)
			return &d
		},
		run: func(ctx context.Context, e *env, args []string) error {
			db, err := config[*dbFlags]("migrate").open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			done, err := schemas.Migrate(ctx, db)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "applied %d migrations %v\n", len(done), done)
			return nil
		},
	})
	register(&command{
		name:    "sources create",
		usage:   "NAME [flags]",
		summary: "create a source and print its write key",
		flags: func(fs *flag.FlagSet) any {
			var s sourceFlags
			s.bind(fs)
			fs.StringVar(&s.kind, "kind", "browser", "browser or server (server sources may set context.ip)")
			fs.StringVar(&s.writeKey, "write-key", "", "write key to use (default: random)")
			fs.StringVar(&s.origins, "allowed-origins", "", "comma-separated origins a browser source accepts (default: any)")
			fs.BoolVar(&s.anonymize, "anonymize-ip", false, "zero the last octet (IPv4) or 80 bits (IPv6) of client IPs")
			fs.Float64Var(&s.rateLimit, "rate-limit", -1, "events per second this source may send (429 past it); 0: unlimited; default: the collector's --rate-limit")
			return &s
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return usagef("want exactly one NAME")
			}
			f := config[*sourceFlags]("sources create")
			db, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			var origins []string
			for _, o := range strings.Split(f.origins, ",") {
				if o = strings.TrimSpace(o); o != "" {
					origins = append(origins, o)
				}
			}
			src := herd.Source{Name: args[0], Kind: f.kind, WriteKey: f.writeKey, AllowedOrigins: origins, AnonymizeIP: f.anonymize}
			if f.rateLimit >= 0 {
				src.RateLimit = &f.rateLimit
			}
			s, err := warehouse.CreateSource(ctx, db, src)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, s.WriteKey)
			return nil
		},
	})
	register(&command{
		name:    "sources list",
		summary: "list sources and their write keys",
		flags: func(fs *flag.FlagSet) any {
			var d dbFlags
			d.bind(fs)
			return &d
		},
		run: func(ctx context.Context, e *env, args []string) error {
			db, err := config[*dbFlags]("sources list").open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			srcs, err := warehouse.Sources(ctx, db)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tNAME\tKIND\tWRITE KEY\tSTATE\tCREATED")
			for _, s := range srcs {
				state := "active"
				if s.Revoked {
					state = "revoked"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Name, s.Kind, s.WriteKey, state, s.CreatedAt.Format("2006-01-02 15:04"))
			}
			return w.Flush()
		},
	})
	register(&command{
		name:    "sources revoke",
		usage:   "NAME",
		summary: "revoke a source's write key (collectors refuse it within a second)",
		flags: func(fs *flag.FlagSet) any {
			var d dbFlags
			d.bind(fs)
			return &d
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return usagef("want exactly one NAME")
			}
			db, err := config[*dbFlags]("sources revoke").open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := warehouse.RevokeSource(ctx, db, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "revoked %s\n", args[0])
			return nil
		},
	})
}

func init() {
	register(&command{
		name:    "sources limit",
		usage:   "NAME EVENTS_PER_SECOND|default",
		summary: "set a source's rate limit (0: unlimited; default: the collector's --rate-limit)",
		flags: func(fs *flag.FlagSet) any {
			var d dbFlags
			d.bind(fs)
			return &d
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 2 {
				return usagef("want NAME and a rate in events per second, or 'default'")
			}
			var limit *float64
			if args[1] != "default" {
				v, err := strconv.ParseFloat(args[1], 64)
				if err != nil || v < 0 {
					return usagef("rate %q: want a number of events per second >= 0, or 'default'", args[1])
				}
				limit = &v
			}
			db, err := config[*dbFlags]("sources limit").open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := warehouse.SetRateLimit(ctx, db, args[0], limit); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "rate limit of %s set to %s\n", args[0], args[1])
			return nil
		},
	})
}
