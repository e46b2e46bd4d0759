package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herdhq/herd/analysts"
	"github.com/herdhq/herd/queries"
	"github.com/herdhq/herd/rollups"
	"github.com/herdhq/herd/schemas"
	"github.com/jackc/pgx/v5/pgxpool"
)

// openMigrated opens the warehouse and applies pending migrations, since
// the managing commands need herd's tables and are often the first thing
// run against a new warehouse. Migrating is idempotent and lock-protected.
func (d *dbFlags) openMigrated(ctx context.Context) (*pgxpool.Pool, error) {
	db, err := d.open(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := schemas.Migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

type rollupFlags struct {
	dbFlags
	cfg  rollups.Config
	all  bool
	loop bool
}

func (f *rollupFlags) bind(fs *flag.FlagSet) {
	f.dbFlags.bind(fs)
	fs.StringVar(&f.cfg.Dir, "dir", "rollups", "directory of rollup SQL files (subdirectories are ignored)")
	fs.StringVar(&f.cfg.Schema, "schema", "rollups", "schema of rollups whose name is not schema-qualified")
	durationFlag(fs, &f.cfg.DefaultEvery, "default-every", time.Hour, "refresh interval of a materialized view without a '-- refresh:' header")
	durationFlag(fs, &f.cfg.RefreshTimeout, "refresh-timeout", 30*time.Minute, "statement timeout of one refresh")
}

type analystFlags struct {
	dbFlags
	cfg         analysts.Config
	schemas     string
	dropObjects bool
}

type queryFlags struct {
	dbFlags
	file  string
	every time.Duration
	as    string
}

func dbOnly(fs *flag.FlagSet) any {
	var d dbFlags
	d.bind(fs)
	return &d
}

func printResults(e *env, res []rollups.Result) error {
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ROLLUP\tACTION\tSTATUS\tROWS\tDURATION\tDETAIL")
	failed := 0
	for _, r := range res {
		rows := ""
		if r.Status == "ok" {
			rows = fmt.Sprint(r.Rows)
		}
		detail := r.Error
		if r.Concurrent {
			detail = "concurrently"
		}
		if r.Status == "error" {
			failed++
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Action, r.Status, rows, r.Duration.Round(time.Millisecond), oneLine(detail))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d rollups failed; fix their SQL and run the command again (details in herd.rollup_runs)", failed)
	}
	return nil
}

func init() {
	register(&command{
		name:    "rollups apply",
		summary: "create or replace the rollups in --dir, in dependency order",
		help: `Each *.sql file holds one CREATE VIEW or CREATE MATERIALIZED VIEW (unqualified names go
to the rollups schema), optionally followed by CREATE UNIQUE INDEX so that refreshes can run
concurrently. A header comment sets the refresh interval of a materialized view:

  -- refresh: 15m        (also 1h, 1d)

Only changed rollups are rebuilt, together with the rollups that read them, in one
transaction each. A failing rollup keeps its previous definition; its dependents are skipped.`,
		flags: func(fs *flag.FlagSet) any {
			var f rollupFlags
			f.bind(fs)
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 0 {
				return usagef("takes no arguments")
			}
			f := config[*rollupFlags]("rollups apply")
			rs, err := rollups.LoadDir(f.cfg)
			if err != nil {
				return err
			}
			db, err := f.openMigrated(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			res, err := rollups.Apply(ctx, db, e.log, f.cfg, rs)
			if err != nil {
				return err
			}
			return printResults(e, res)
		},
	})
	register(&command{
		name:    "rollups run",
		summary: "refresh the materialized rollups that are due, in dependency order",
		help:    "herd up runs the same scheduler; use --loop to run it on its own.",
		flags: func(fs *flag.FlagSet) any {
			var f rollupFlags
			f.bind(fs)
			fs.BoolVar(&f.all, "all", false, "refresh every materialized rollup, due or not")
			fs.BoolVar(&f.loop, "loop", false, "keep running: refresh rollups and scheduled queries as they fall due")
			durationFlag(fs, &f.cfg.Tick, "tick", 30*time.Second, "with --loop, how often to look for due work")
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 0 {
				return usagef("takes no arguments")
			}
			f := config[*rollupFlags]("rollups run")
			db, err := f.openMigrated(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if f.loop {
				s := rollups.NewScheduler(db, e.log, f.cfg)
				saved := queries.New(db, e.log, queries.Config{})
				go saved.RunScheduled(ctx, time.Minute) //nolint:errcheck // returns nil when ctx ends
				return s.Run(ctx)
			}
			res, err := rollups.Refresh(ctx, db, e.log, f.cfg, time.Now(), f.all)
			if err != nil {
				return err
			}
			return printResults(e, res)
		},
	})
	register(&command{
		name:    "rollups status",
		summary: "show each rollup's last run and when it is next due",
		flags:   dbOnly,
		run: func(ctx context.Context, e *env, args []string) error {
			db, err := config[*dbFlags]("rollups status").openMigrated(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			st, err := rollups.Statuses(ctx, db)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "ROLLUP\tKIND\tEVERY\tLAST RUN\tSTATUS\tROWS\tDURATION\tNEXT DUE\tERROR")
			for _, s := range st {
				last, every, next, rows := "never", "-", "-", ""
				if !s.LastStarted.IsZero() {
					last = s.LastAction + " " + s.LastStarted.Local().Format("2006-01-02 15:04:05")
				}
				if s.Kind == rollups.Materialized {
					every = s.Every.String()
					next = s.NextDue.Local().Format("2006-01-02 15:04:05")
				}
				if s.LastRows != nil {
					rows = fmt.Sprint(*s.LastRows)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Kind, every, last, s.LastStatus, rows,
					s.LastDuration.Round(time.Millisecond), next, oneLine(s.LastError))
			}
			return w.Flush()
		},
	})

	register(&command{
		name:    "analysts add",
		usage:   "NAME [flags]",
		summary: "create an analyst's login role and schema, and print the connection string",
		help: `NAME is a lowercase SQL identifier (letters, digits, _; at most 63 bytes). The analyst
owns schema NAME, can read the warehouse schemas (including tables created there later) and
runs with a statement timeout. The password is printed once, in the connection string.`,
		flags: func(fs *flag.FlagSet) any {
			var f analystFlags
			f.bind(fs)
			fs.StringVar(&f.schemas, "schemas", "herd,app,stripe,intercom,front,salesforce,rollups", "comma-separated schemas the analyst may read")
			durationFlag(fs, &f.cfg.StatementTimeout, "statement-timeout", 5*time.Minute, "statement timeout of the analyst's sessions")
			fs.StringVar(&f.cfg.Host, "public-host", "", "host to put in the connection string (default: the one herd connects to)")
			fs.IntVar(&f.cfg.Port, "public-port", 0, "port to put in the connection string (default: the one herd connects to)")
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return usagef("want exactly one NAME")
			}
			if err := analysts.ValidName(args[0]); err != nil {
				return usageError{err.Error()}
			}
			f := config[*analystFlags]("analysts add")
			for _, s := range strings.Split(f.schemas, ",") {
				if s = strings.TrimSpace(s); s != "" {
					f.cfg.Schemas = append(f.cfg.Schemas, s)
				}
			}
			db, err := f.openMigrated(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			a, err := analysts.Add(ctx, db, e.log, f.cfg, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, a.URL)
			return nil
		},
	})
	register(&command{
		name:    "analysts remove",
		usage:   "NAME [flags]",
		summary: "drop an analyst's role, keeping its schema and tables unless --drop-objects",
		flags: func(fs *flag.FlagSet) any {
			var f analystFlags
			f.bind(fs)
			fs.BoolVar(&f.dropObjects, "drop-objects", false, "drop the analyst's schema and tables instead of keeping them, owned by herd_retired_analysts_<database> (a role that cannot log in and is granted nothing; every grant on them is revoked)")
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return usagef("want exactly one NAME")
			}
			f := config[*analystFlags]("analysts remove")
			db, err := f.openMigrated(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := analysts.Remove(ctx, db, e.log, args[0], f.dropObjects); err != nil {
				return err
			}
			if f.dropObjects {
				fmt.Fprintf(e.stdout, "removed %s and dropped its objects\n", args[0])
			} else {
				fmt.Fprintf(e.stdout, "removed %s; its schema and tables are kept, owned by %s (it cannot log in; nobody may read them until herd's role grants it)\n", args[0], analysts.RetiredName(db.Config().ConnConfig.Database))
			}
			return nil
		},
	})
	register(&command{
		name:    "analysts list",
		summary: "list analysts and the size of their schemas",
		flags:   dbOnly,
		run: func(ctx context.Context, e *env, args []string) error {
			db, err := config[*dbFlags]("analysts list").openMigrated(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			as, err := analysts.List(ctx, db)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSCHEMA BYTES\tCREATED\tBY\tROLE")
			for _, a := range as {
				state := "ok"
				if !a.RoleExists {
					state = "missing (dropped outside herd)"
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", a.Name, a.SchemaBytes, a.CreatedAt.Local().Format("2006-01-02 15:04"), a.CreatedBy, state)
			}
			return w.Flush()
		},
	})
	register(&command{
		name:    "usage",
		summary: "show the size of each schema and query time per role",
		help:    "Query time comes from pg_stat_statements; without it, herd usage says how to enable it.",
		flags:   dbOnly,
		run: func(ctx context.Context, e *env, args []string) error {
			db, err := config[*dbFlags]("usage").openMigrated(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			u, err := analysts.Report(ctx, db)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "SCHEMA\tOWNER\tRELATIONS\tSIZE\tBYTES")
			for _, s := range u.Schemas {
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%d\n", s.Schema, s.Owner, s.Relations, s.Size, s.Bytes)
			}
			fmt.Fprintln(w)
			if u.Note != "" {
				fmt.Fprintf(w, "Query time per role: %s\n", u.Note)
			} else {
				fmt.Fprintln(w, "ROLE\tCALLS\tTOTAL MS\tMEAN MS")
				for _, q := range u.Queries {
					fmt.Fprintf(w, "%s\t%d\t%.1f\t%.2f\n", q.Role, q.Calls, q.TotalMS, q.MeanMS)
				}
			}
			return w.Flush()
		},
	})

	register(&command{
		name:    "queries save",
		usage:   "NAME --file q.sql [flags]",
		summary: "save a named SQL query (its results are served at /q/NAME on the admin listener)",
		flags: func(fs *flag.FlagSet) any {
			var f queryFlags
			f.bind(fs)
			fs.StringVar(&f.file, "file", "", "file holding the query's SQL (- for stdin)")
			durationFlag(fs, &f.every, "every", 0, "run it on this schedule inside herd up (0: only on demand)")
			fs.StringVar(&f.as, "as", "", "role (an analyst) whose privileges every run uses; default: herd's own role, whose results only herd's admins may see")
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return usagef("want exactly one NAME")
			}
			f := config[*queryFlags]("queries save")
			if f.file == "" {
				return usagef("--file is required")
			}
			var b []byte
			var err error
			if f.file == "-" {
				b, err = io.ReadAll(os.Stdin)
			} else {
				b, err = os.ReadFile(f.file)
			}
			if err != nil {
				return fmt.Errorf("read query %s from %s: %w", args[0], f.file, err)
			}
			db, err := f.openMigrated(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := queries.New(db, e.log, queries.Config{}).SaveAs(ctx, args[0], string(b), f.every, f.as); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "saved %s; run it with herd queries run %s, then open /q/%s on the admin listener\n", args[0], args[0], args[0])
			return nil
		},
	})
	register(&command{
		name:    "queries run",
		usage:   "NAME",
		summary: "run a saved query now and store its result as a snapshot",
		flags:   dbOnly,
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return usagef("want exactly one NAME")
			}
			db, err := config[*dbFlags]("queries run").openMigrated(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			r, err := queries.New(db, e.log, queries.Config{}).Run(ctx, args[0])
			if err != nil {
				return err
			}
			if r.Error != "" {
				return fmt.Errorf("query %s failed (stored as run %d): %s", args[0], r.ID, r.Error)
			}
			fmt.Fprintf(e.stdout, "run %d of %s: %d rows in %s; see /q/%s\n", r.ID, args[0], r.RowCount, r.Duration.Round(time.Millisecond), args[0])
			return nil
		},
	})
}
