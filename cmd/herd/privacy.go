package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/privacy"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// startSuppressionMirror keeps the collectors' bucket of suppressed ids in
// step with herd.suppressions, beside the sources mirror.
func startSuppressionMirror(e *env, g *group, db *pgxpool.Pool, js jetstream.JetStream, sc stream.Config) error {
	kv, err := stream.SuppressedKV(g.ctx, js, sc)
	if err != nil {
		return err
	}
	if err := privacy.SyncSuppressions(g.ctx, db, kv); err != nil {
		return err
	}
	g.Go("suppressions mirror", func(ctx context.Context) error {
		return privacy.MirrorSuppressions(ctx, db, kv, 30*time.Second, e.log)
	})
	return nil
}

// idList is a repeatable flag: ids may hold commas, so each --user-id
// names one.
type idList []string

func (l *idList) String() string     { return strings.Join(*l, ",") }
func (l *idList) Set(v string) error { *l = append(*l, v); return nil }

type personFlags struct {
	dbFlags
	users, anons idList
	sources      string
}

func (p *personFlags) bind(fs *flag.FlagSet) {
	p.dbFlags.bind(fs)
	fs.Var(&p.users, "user-id", "the person's user id (repeat for several)")
	fs.Var(&p.anons, "anonymous-id", "an anonymous id (repeat for several)")
	fs.StringVar(&p.sources, "source", "", "comma-separated source names or ids (default: every source)")
}

func (p *personFlags) person(ctx context.Context, db *pgxpool.Pool) (privacy.Person, error) {
	if len(p.users) == 0 && len(p.anons) == 0 {
		return privacy.Person{}, usagef("name the person: --user-id ID or --anonymous-id ID")
	}
	ids, err := sourceIDs(ctx, db, p.sources)
	if err != nil {
		return privacy.Person{}, err
	}
	return privacy.Person{UserIDs: p.users, AnonymousIDs: p.anons, Sources: ids}, nil
}

type privacyDeleteFlags struct {
	personFlags
	lakeFlags
	streamFlags
	nats      natsFlags
	noLake    bool
	emptyOK   bool
	wait      time.Duration
	consumers string

	eraseTimeout time.Duration
}

type privacyExportFlags struct {
	personFlags
	lakeFlags
	out    string
	noLake bool
}

const privacyHelp = `herd privacy acts on one person's data (GDPR and similar requests):

  herd privacy delete   removes their events from herd.events, herd.rejects, the
                        identity tables (users, identities, group memberships),
                        the sessions (views of herd.events) and the Parquet lake
  herd privacy export   writes everything herd holds about them as JSON lines
  herd privacy suppress drops their future events at the collectors
  herd privacy unsuppress

A user id brings every anonymous id linked to it: those of its identify calls
and other events, and the previous ids of its alias calls. Every request is
recorded in herd.privacy_requests (analysts cannot read it: it holds the ids),
and what a delete removed per source and hour in herd.privacy_removed.`

func init() {
	register(&command{
		name:    "privacy",
		usage:   "delete|export|suppress|unsuppress [flags]",
		summary: "delete, export or suppress one person's data (see herd help privacy)",
		help:    privacyHelp,
		run: func(ctx context.Context, e *env, args []string) error {
			return usagef("want a subcommand: delete, export, suppress or unsuppress")
		},
	})
	register(&command{
		name:    "privacy delete",
		usage:   "--user-id ID | --anonymous-id ID [flags]",
		summary: "remove a person's events from Postgres, rejects, identity tables and the lake",
		help: `First waits until the writer and the archiver have stored every event that was on
the stream when the command started (so that none lands afterwards; the archiver
acknowledges when it closes a file, up to its --file-max-age), then removes the
rows from Postgres in one transaction, then rewrites the lake's files that hold
them, printing progress (n/N files). Every file of the lake's selected sources
is read. When an archiver runs (herd up, herd archive) and answers on NATS
(subject <stream prefix>.archive.erase), it rewrites its own lake between its own
writes, so that it never writes back what was erased; with no archiver
answering, the lake at --lake is rewritten here, unless an archiver's lease on it
(_archiver.json, renewed every 20 s) says one is writing it. Before anything is
removed, the lake is checked: a directory that does not exist, or a lake with
no source= directory (unless --lake-empty-ok), is refused, so that a command run
from the wrong directory does not report a lake it never saw as rewritten; give
--data-dir (herd up's) or --lake, or --no-lake when there is no lake. Message ids of removed events stay in herd.message_ids, so neither a
redelivery nor herd replay brings them back. A run that failed half-way is safe
to run again.

` + natsHelp,
		flags: func(fs *flag.FlagSet) any {
			var f privacyDeleteFlags
			f.personFlags.bind(fs)
			f.lakeFlags.bind(fs)
			f.streamFlags.bind(fs)
			f.nats.bind(fs, "", "NATS server URL(s), to wait for the stream's events first (default: the herd up of --data-dir); none found: do not wait")
			fs.BoolVar(&f.noLake, "no-lake", false, "leave the lake alone (when there is none)")
			fs.BoolVar(&f.emptyOK, "lake-empty-ok", false, "accept a lake with no source= directory (herd's lake before anything was archived); a directory that does not exist is refused still")
			fs.DurationVar(&f.wait, "wait", 10*time.Minute, "how long to wait for the writer and archiver to store the stream's events")
			fs.StringVar(&f.consumers, "consumers", "herd-writer,herd-archiver", "durable consumers to wait for")
			fs.DurationVar(&f.eraseTimeout, "erase-timeout", 30*time.Minute, "how long the running archiver may take to rewrite its lake")
			return &f
		},
		run: runPrivacyDelete,
	})
	register(&command{
		name:    "privacy export",
		usage:   "--user-id ID | --anonymous-id ID [--out FILE] [flags]",
		summary: "write everything herd holds about a person as JSON lines",
		help: `Each line is {"store": ..., "row": {...}}: events, users (traits), identities,
group_members, rejects, suppressions, and the lake's copies of the events
("store": "lake", with the file).`,
		flags: func(fs *flag.FlagSet) any {
			var f privacyExportFlags
			f.personFlags.bind(fs)
			f.lakeFlags.bind(fs)
			fs.StringVar(&f.out, "out", "", "file to write (mode 0600); default stdout")
			fs.BoolVar(&f.noLake, "no-lake", false, "do not search the lake")
			return &f
		},
		run: runPrivacyExport,
	})
	for _, kind := range []string{"suppress", "unsuppress"} {
		help := "Collectors drop the person's future events: answered 200, counted in\nherd_collector_events_total{result=\"dropped\",reason=\"suppressed\"}, stored nowhere.\nOnly a hash of each id is kept in herd.suppressions and the NATS bucket."
		summary := "drop a person's future events at the collectors"
		if kind == "unsuppress" {
			help, summary = "Collectors store the person's events again.", "store a suppressed person's events again"
		}
		register(&command{
			name:    "privacy " + kind,
			usage:   "--user-id ID | --anonymous-id ID",
			summary: summary,
			help:    help,
			flags: func(fs *flag.FlagSet) any {
				var f personFlags
				f.bind(fs)
				return &f
			},
			run: func(ctx context.Context, e *env, args []string) error {
				return runSuppress(ctx, e, args, kind)
			},
		})
	}
}

func runPrivacyDelete(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	f := config[*privacyDeleteFlags]("privacy delete")
	db, err := f.dbFlags.openMigrated(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := f.person(ctx, db)
	if err != nil {
		return err
	}
	var opt privacy.DeleteOptions
	opt.Log, opt.LakeEmptyOK = e.log, f.emptyOK
	if !f.noLake {
		if opt.Lake, err = f.lakeFlags.openLake(); err != nil {
			return usagef("%v", err)
		}
	}
	if f.nats.url != "" {
		nc, err := f.nats.connect("herd-privacy")
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		sc := f.streamFlags.config()
		opt.Drain = func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, f.wait)
			defer cancel()
			return privacy.WaitConsumers(ctx, js, sc.Name, strings.Split(f.consumers, ","), e.log)
		}
		if !f.noLake {
			opt.Remote = func(ctx context.Context, req archive.EraseRequest) (archive.EraseResult, string, error) {
				return archive.RequestErase(ctx, nc, sc, req, f.eraseTimeout)
			}
		}
	} else {
		e.log.Warn("no --nats-url: not waiting for events still on the stream; any sent just before may be stored after this delete")
	}
	opt.Progress = func(pr archive.EraseProgress) {
		if pr.Removed > 0 || pr.Index == pr.Total || pr.Index%100 == 0 {
			fmt.Fprintf(e.stdout, "lake files %d/%d: %s, %d of %d rows removed\n", pr.Index, pr.Total, pr.Key, pr.Removed, pr.Rows)
		}
	}
	res, err := privacy.Delete(ctx, db, p, opt)
	if res.RequestID != 0 {
		fmt.Fprintf(e.stdout, "privacy request %d: linked ids %d; removed %s\n", res.RequestID, len(res.Linked), formatCounts(res.Counts))
		if res.Lake != "" {
			fmt.Fprintf(e.stdout, "lake rewritten: %s\n", redact(res.Lake))
		}
	}
	return err
}

func runPrivacyExport(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	f := config[*privacyExportFlags]("privacy export")
	db, err := f.dbFlags.openMigrated(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := f.person(ctx, db)
	if err != nil {
		return err
	}
	var opt privacy.ExportOptions
	if !f.noLake {
		if opt.Lake, err = f.lakeFlags.readLake(); err != nil {
			return usagef("%v", err)
		}
	}
	var w io.Writer = e.stdout
	if f.out != "" {
		file, err := os.OpenFile(f.out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("create %s: %w (it must not exist yet)", f.out, err)
		}
		defer file.Close()
		w = file
	}
	counts, err := privacy.Export(ctx, db, p, w, opt)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "exported %s\n", formatCounts(counts))
	return nil
}

func runSuppress(ctx context.Context, e *env, args []string, kind string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	f := config[*personFlags]("privacy " + kind)
	db, err := f.dbFlags.openMigrated(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := f.person(ctx, db)
	if err != nil {
		return err
	}
	do := privacy.Suppress
	if kind == "unsuppress" {
		do = privacy.Unsuppress
	}
	id, n, err := do(ctx, db, p)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "privacy request %d: %d ids %sed; collectors follow within seconds (herd up mirrors herd.suppressions into NATS)\n", id, n, kind)
	return nil
}

func formatCounts(c privacy.Counts) string {
	var parts []string
	for _, k := range []string{"events", "rejects", "users", "identities", "group_members", "suppressions", "lake_rows", "lake_files"} {
		if v, ok := c[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}
