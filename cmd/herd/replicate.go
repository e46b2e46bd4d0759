package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herdhq/herd/replicate"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type replicateFlags struct {
	dbFlags
	name string
}

func (r *replicateFlags) bind(fs *flag.FlagSet) {
	r.dbFlags.bind(fs)
	fs.StringVar(&r.name, "name", "", "replication name (needed only when the warehouse has several)")
}

type replicateAddFlags struct {
	dbFlags
	name, from, fromWarehouse, tables, into, mode string
	all                                           bool
	every                                         time.Duration
}

type replicateCheckFlags struct {
	replicateFlags
	wait time.Duration
}

type replicateResyncFlags struct {
	replicateFlags
	all bool
}

type replicateWatchFlags struct {
	dbFlags
	interval    time.Duration
	metricsAddr string
}

func init() {
	register(&command{
		name:    "replicate add",
		usage:   "--from postgres://app-db/... (--tables a,b | --all) [flags]",
		summary: "load an app database into the warehouse (logical replication or postgres_fdw)",
		help: `Checks the source first and refuses, with the command that fixes each problem, when
replication would fail or would break the app (for example a table without a primary key, whose
UPDATEs and DELETEs fail once published). Then creates the publication on the source, the tables
on the warehouse and the subscription, and prints the initial copy's progress until every table is
ready. Logical replication keeps each table's schema (public.users lands in public.users).

--mode fdw instead imports the tables as postgres_fdw foreign tables into --into-schema (default
app): nothing is copied, queries read the source. Run 'herd replicate refresh' after each migration
of the source.`,
		flags: func(fs *flag.FlagSet) any {
			var f replicateAddFlags
			f.bind(fs)
			fs.StringVar(&f.name, "name", "herd", "name of the publication, subscription and slot")
			fs.StringVar(&f.from, "from", "", "source (app) database URL")
			fs.StringVar(&f.fromWarehouse, "from-warehouse", "", "source URL as the warehouse server reaches it, when different (default --from)")
			fs.StringVar(&f.tables, "tables", "", "comma-separated tables (table or schema.table)")
			fs.BoolVar(&f.all, "all", false, "every table, and tables created later")
			fs.StringVar(&f.into, "into-schema", "", "fdw mode: schema for the foreign tables (default app); logical mode: must match the source's schema")
			fs.StringVar(&f.mode, "mode", replicate.ModeLogical, "logical or fdw")
			durationFlag(fs, &f.every, "progress-every", 2*time.Second, "how often to print copy progress")
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			f := config[*replicateAddFlags]("replicate add")
			if len(args) > 0 {
				return usagef("unexpected arguments %v", args)
			}
			var tables []string
			for _, t := range strings.Split(f.tables, ",") {
				if t = strings.TrimSpace(t); t != "" {
					tables = append(tables, t)
				}
			}
			if f.from == "" {
				return usagef("--from is required")
			}
			if f.all == (len(tables) > 0) {
				return usagef("give --tables a,b or --all")
			}
			db, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			err = replicate.Add(ctx, db, replicate.Config{
				Name: f.name, SourceURL: f.from, SourceURLFromWarehouse: f.fromWarehouse,
				Tables: tables, All: f.all, IntoSchema: f.into, Mode: f.mode,
				Progress: e.stdout, ProgressEvery: f.every, Log: e.log,
			})
			var pe *replicate.PreflightError
			if errors.As(err, &pe) {
				// Print every problem on its own lines; the one-line error
				// summary would lose the fixes.
				fmt.Fprintln(e.stderr, pe.Error())
				return fmt.Errorf("refused: fix the problems above and run again")
			}
			return err
		},
	})
	register(&command{
		name:    "replicate status",
		summary: "state, lag, slot health and errors of each replication and table",
		flags: func(fs *flag.FlagSet) any {
			var f replicateFlags
			f.bind(fs)
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			f := config[*replicateFlags]("replicate status")
			db, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			sts, err := replicate.Status(ctx, db, f.name)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			for _, s := range sts {
				fmt.Fprintf(w, "%s (%s): %s\n", s.Name, s.Mode, s.Health)
				if s.Problem != "" {
					fmt.Fprintf(w, "  problem: %s\n", s.Problem)
				}
				if s.Fix != "" {
					fmt.Fprintf(w, "  fix: %s\n", s.Fix)
				}
				if s.Mode == replicate.ModeFDW {
					continue
				}
				safe := "unlimited"
				if s.SafeWALSize != nil {
					safe = fmt.Sprintf("%d bytes", *s.SafeWALSize)
				}
				fmt.Fprintf(w, "  slot %s: wal_status %s, safe_wal_size %s, active %t\n", s.Slot, s.WALStatus, safe, s.SlotActive)
				fmt.Fprintf(w, "  lag: %d bytes, %.1f s; apply errors %d, sync errors %d\n", s.LagBytes, s.LagSeconds, s.ApplyErrors, s.SyncErrors)
				if s.LastError != "" {
					fmt.Fprintf(w, "  last error: %s\n", s.LastError)
				}
				fmt.Fprintf(w, "  TABLE\tSTATE\n")
				for _, t := range s.Tables {
					fmt.Fprintf(w, "  %s\t%s\n", t.Table, t.State)
				}
				for _, d := range s.Drift {
					if d.State == "reported" || d.State == "pending" {
						fmt.Fprintf(w, "  drift %s %s: %s\n    fix: %s\n", d.Table, d.Kind, d.Detail, d.Fix)
					}
				}
			}
			return w.Flush()
		},
	})
	register(&command{
		name:    "replicate check",
		summary: "compare row counts and checksums per table, source against warehouse",
		flags: func(fs *flag.FlagSet) any {
			var f replicateCheckFlags
			f.bind(fs)
			durationFlag(fs, &f.wait, "wait", time.Minute, "how long to wait for the warehouse to apply what the source committed before the check")
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			f := config[*replicateCheckFlags]("replicate check")
			db, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			res, err := replicate.Check(ctx, db, f.name, f.wait)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "TABLE\tSOURCE ROWS\tWAREHOUSE ROWS\tSOURCE SUM\tWAREHOUSE SUM\tRESULT")
			bad := 0
			for _, r := range res {
				result := "equal"
				if !r.Equal {
					result, bad = "DIFFERENT", bad+1
				}
				fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\t%s\n", r.Table, r.SourceRows, r.TargetRows, r.SourceSum, r.TargetSum, result)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d tables differ (herd replicate resync TABLE copies one again)", bad, len(res))
			}
			return nil
		},
	})
	register(&command{
		name:    "replicate refresh",
		summary: "fdw mode: re-import foreign tables and recreate dependent views (run after each migration)",
		help: `Meant for the app's deploy script, after its migrations: re-imports the foreign tables so
they show new columns and types, and recreates every view that depends on them, recursively and in
dependency order, with their options, owners, grants and comments, in one transaction. If a view no
longer fits the source, nothing changes and the command fails naming the view.`,
		flags: func(fs *flag.FlagSet) any {
			var f replicateFlags
			f.bind(fs)
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			f := config[*replicateFlags]("replicate refresh")
			db, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			_, err = replicate.Refresh(ctx, db, f.name, e.stdout)
			return err
		},
	})
	register(&command{
		name:    "replicate resync",
		usage:   "TABLE... | --all",
		summary: "copy tables again; --all recreates the subscription and slot (after a lost slot)",
		flags: func(fs *flag.FlagSet) any {
			var f replicateResyncFlags
			f.bind(fs)
			fs.BoolVar(&f.all, "all", false, "recreate the subscription and its slot, copy every table again")
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			f := config[*replicateResyncFlags]("replicate resync")
			if f.all == (len(args) > 0) {
				return usagef("name the tables, or --all")
			}
			db, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			return replicate.Resync(ctx, db, replicate.ResyncConfig{Name: f.name, Tables: args, All: f.all, Progress: e.stdout, Log: e.log})
		},
	})
	register(&command{
		name:    "replicate watch",
		summary: "follow source schema changes (new tables with --all) and report health until stopped",
		flags: func(fs *flag.FlagSet) any {
			var f replicateWatchFlags
			f.bind(fs)
			durationFlag(fs, &f.interval, "interval", 5*time.Second, "time between passes")
			fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address, e.g. :9464")
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			f := config[*replicateWatchFlags]("replicate watch")
			db, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			reg := prometheus.NewRegistry()
			w, err := replicate.NewWatcher(db, replicate.WatchConfig{Interval: f.interval, Log: e.log, Registerer: reg})
			if err != nil {
				return err
			}
			if err := reg.Register(replicate.NewCollector(db, e.log)); err != nil {
				return err
			}
			if f.metricsAddr != "" {
				l, err := net.Listen("tcp", f.metricsAddr)
				if err != nil {
					return fmt.Errorf("listen for metrics on %s: %w", f.metricsAddr, err)
				}
				srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
				go srv.Serve(l)                                //nolint:errcheck // ends with Shutdown below
				defer srv.Shutdown(context.WithoutCancel(ctx)) //nolint:errcheck
				e.log.Info("replicate watch: metrics", "addr", l.Addr().String())
			}
			return w.Run(ctx)
		},
	})
}
