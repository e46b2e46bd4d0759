package main

import (
	"context"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"time"

	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/check"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type checkFlags struct {
	dbFlags
	streamFlags
	lakeFlags
	nats      natsFlags
	since     time.Duration
	sources   string
	noLake    bool
	writer    string
	archiver  string
	retention time.Duration
	timeout   time.Duration
}

func init() {
	register(&command{
		name:    "check",
		summary: "compare accepted events, herd.events and the lake per source and hour; exit 1 when they differ",
		usage:   "[--since DURATION] [--source NAME]",
		help: `herd check counts, per source and hour of event time (UTC), the events herd
accepted (its message-id ledger, herd.message_ids), the rows of herd.events and
the rows of the lake (every *.parquet file, as DuckDB reads them), beside the
rejects received in that hour. It prints one line per hour on which the stores
differ, notes and a summary, stores the result in herd.check_runs (herd status
shows the newest), and exits 1 when anything differs, 2 on a usage error.

The lake holds each accepted event exactly once in closed (compacted) hours,
which are compared exactly. An hour still open (its partition not compacted
until --lake-close-after past its end, or reopened by a late event or a gap
repair) may hold a retried event twice until then: there only missing lake rows
are a difference, and a note says how many hours were left open.

Only events both the writer and the archiver have acknowledged are compared:
the check reads their consumers' acknowledgement floors first and leaves later
stream sequences (events in flight, open lake files) for the next run. herd up
runs this check every 10 minutes over the last 48 hours and exports
herd_check_differences and herd_check_last_run_timestamp_seconds.

` + natsHelp,
		flags: func(fs *flag.FlagSet) any {
			var f checkFlags
			f.dbFlags.bind(fs)
			f.streamFlags.bind(fs)
			f.lakeFlags.bind(fs)
			f.nats.bind(fs, nats.DefaultURL, "NATS server URL(s), comma-separated")
			fs.DurationVar(&f.since, "since", check.DefaultSince, "compare the hours of event time from this long ago until now")
			fs.StringVar(&f.sources, "source", "", "only these sources (names, comma-separated)")
			fs.BoolVar(&f.noLake, "no-lake", false, "compare the ledger with herd.events only")
			fs.StringVar(&f.writer, "consumer", "herd-writer", "the writer's durable consumer")
			fs.StringVar(&f.archiver, "archiver-consumer", "herd-archiver", "the archiver's durable consumer")
			fs.DurationVar(&f.retention, "retention", 0, "the writer's --retention: older hours are not compared")
			fs.DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up after this long")
			return &f
		},
		run: runCheck,
	})
}

// errDiffer makes herd check exit 1 after printing the differences.
var errDiffer = errors.New("the stores differ (see the lines above)")

func runCheck(ctx context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return usagef("check takes no arguments (use --source NAME)")
	}
	f := config[*checkFlags]("check")
	if f.since <= 0 {
		return usagef("--since must be positive, e.g. 24h")
	}
	if f.since > 400*24*time.Hour {
		return usagef("--since %s: at most 400 days (9600h) a run", f.since)
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var lake check.LakeCounter
	if !f.noLake {
		l, err := f.lakeFlags.readLake()
		if err != nil {
			return usagef("%v", err)
		}
		lake = check.ManifestCounter{Lake: l}
	}
	nc, err := f.nats.connectOnce("herd-check", 5*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	db, err := f.dbFlags.open(dctx)
	dcancel()
	if err != nil {
		return err
	}
	defer db.Close()
	cfg := check.Config{Since: f.since, Stream: f.streamFlags.config(), WriterConsumer: f.writer, ArchiverConsumer: f.archiver, Retention: f.retention}
	for _, s := range strings.Split(f.sources, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Sources = append(cfg.Sources, s)
		}
	}
	r, err := check.Check(ctx, db, js, lake, cfg)
	var unknown *check.UnknownSourceError
	if errors.As(err, &unknown) {
		return usagef("--source: %v", err)
	}
	if rerr := check.Record(ctx, db, r, err); rerr != nil {
		e.log.Warn("could not store the result for herd status", "err", rerr)
	}
	if err != nil {
		return err
	}
	if err := r.Write(e.stdout); err != nil {
		return err
	}
	if r.Differences > 0 {
		return errDiffer
	}
	return nil
}

// startCheck runs herd check inside herd up every 10 minutes over the last
// 48 hours, against the lake herd up archives into.
func startCheck(e *env, g *group, a *admin, db *pgxpool.Pool, js jetstream.JetStream, sc stream.Config, f *upFlags) {
	s := &check.Scheduler{
		DB: db, JS: js, Lake: check.ManifestCounter{Lake: archive.NewDir(filepath.Join(f.dataDir, "lake"))},
		Config:  check.Config{Since: 48 * time.Hour, Stream: sc, WriterConsumer: f.consumerName, Retention: f.retention},
		Every:   10 * time.Minute,
		Metrics: check.NewMetrics(a.reg),
		Log:     e.log.With("component", "check"),
	}
	g.Go("check", s.Run)
}
