package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/warehouse"
	"github.com/herdhq/herd/writer"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// lakeFlags locate the Parquet lake.
type lakeFlags struct {
	lake string
	s3   archive.S3Config
}

func (l *lakeFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&l.lake, "lake", "./data/lake", "the Parquet lake: a directory, or s3://bucket/prefix")
	fs.StringVar(&l.s3.Endpoint, "s3-endpoint", "", "S3-compatible endpoint, host:port or URL (default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS)")
	fs.StringVar(&l.s3.Region, "s3-region", "", "S3 region (default $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1)")
	fs.StringVar(&l.s3.AccessKey, "s3-access-key", "", "S3 access key (default $AWS_ACCESS_KEY_ID, then ~/.aws/credentials, then the instance role)")
	fs.StringVar(&l.s3.SecretKey, "s3-secret-key", "", "S3 secret key (default $AWS_SECRET_ACCESS_KEY)")
	fs.BoolVar(&l.s3.PathStyle, "s3-path-style", false, "put the bucket in the URL path (MinIO and most self-hosted stores)")
	fs.BoolVar(&l.s3.Insecure, "s3-insecure", false, "plain HTTP to the S3 endpoint")
}

func (l *lakeFlags) openLake() (archive.Lake, error) { return archive.Open(l.lake, l.s3) }

// readLake opens the lake for a command that reads (or rewrites) what is
// in it: a directory lake that does not exist is an error, not an empty
// lake, so that a command run from the wrong directory says so instead of
// reporting nothing.
func (l *lakeFlags) readLake() (archive.Lake, error) {
	if l.lake != "" && !strings.HasPrefix(l.lake, "s3://") {
		st, err := os.Stat(l.lake)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("no lake at %s: tried --lake, $HERD_LAKE, then DATA-DIR/lake of --data-dir; give --lake (a directory or s3://bucket/prefix) or the --data-dir of the herd up that archives", l.lake)
		case err != nil:
			return nil, fmt.Errorf("lake %s: %w", l.lake, err)
		case !st.IsDir():
			return nil, fmt.Errorf("lake %s is not a directory: give --lake a directory or s3://bucket/prefix", l.lake)
		}
	}
	return l.openLake()
}

// archiverFlags configure how files are cut.
type archiverFlags struct {
	consumer   string
	maxRows    int
	maxBytes   int
	maxAge     time.Duration
	closeAfter time.Duration
}

func (a *archiverFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&a.consumer, "consumer", "herd-archiver", "durable JetStream consumer of the archiver")
	fs.IntVar(&a.maxRows, "file-max-rows", 100_000, "close a file at this many events")
	fs.IntVar(&a.maxBytes, "file-max-bytes", 64<<20, "close a file at this many bytes of event JSON")
	fs.DurationVar(&a.maxAge, "file-max-age", 5*time.Minute, "close a file this long after its first event")
	fs.DurationVar(&a.closeAfter, "lake-close-after", archive.DefaultCloseAfter,
		"close an hour's partition this long after the hour ends: compact it into one sorted file holding each event once (negative: never)")
}

func (a *archiverFlags) config(sc stream.Config) archive.Config {
	return archive.Config{Stream: sc, Consumer: a.consumer, FileMaxRows: a.maxRows, FileMaxBytes: a.maxBytes, FileMaxAge: a.maxAge, CloseAfter: a.closeAfter}
}

type archiveFlags struct {
	streamFlags
	lakeFlags
	archiverFlags
	db    dbFlags
	nats  natsFlags
	admin adminFlags
}

type compactFlags struct {
	streamFlags
	lakeFlags
	db         dbFlags
	before     string
	closeAfter time.Duration
}

type repairFlags struct {
	dbFlags
	streamFlags
	lakeFlags
	nats       natsFlags
	windowDays int
	closeAfter time.Duration
	since      time.Duration
	sources    string
}

type archiveStatusFlags struct {
	streamFlags
	lakeFlags
	consumer string
	nats     natsFlags
}

type replayFlags struct {
	dbFlags
	lakeFlags
	from, to      string
	sources       string
	into          string
	forgetMissing bool
}

type locateFlags struct {
	dbFlags
	lakeFlags
	source string
}

func init() {
	register(&command{
		name:    "archive",
		summary: "run the archiver alone: every event of the stream into the Parquet lake",
		help: `The archiver is a durable JetStream consumer of its own: it lags or fails without
holding back the Postgres writer. Files are Parquet (zstd), laid out as
source=<id>/date=YYYY-MM-DD/hour=H/part-<first-seq>-<last-seq>.parquet with a
_manifest.json per directory; a file is stored whole before the events in it are
acknowledged. Run one archiver per lake.

` + natsHelp + "\n\n" + adminHelp(false),
		flags: func(fs *flag.FlagSet) any {
			var f archiveFlags
			f.streamFlags.bind(fs)
			f.lakeFlags.bind(fs)
			f.archiverFlags.bind(fs)
			fs.StringVar(&f.db.url, "database-url", "", "warehouse Postgres URL: with it, the archiver also repairs the lake's gaps from herd.events (else they wait in _gaps.json for herd archive repair)")
			f.nats.bind(fs, nats.DefaultURL, "NATS server URL(s), comma-separated")
			f.admin.bind(fs, "127.0.0.1:8083")
			return &f
		},
		run: runArchive,
	})
	register(&command{
		name:    "archive compact",
		usage:   "[--before TIME]",
		summary: "close the lake's partitions now: one sorted file each, every event once",
		help: `Merges the files of each partition whose hour (or month bucket) ended before
--before into one file sorted by (timestamp, message_id), keeping each message id
once (its first stream sequence), and marks the partition compacted in its
manifest. The archiver does this on its own --lake-close-after an hour ends; this
command is for a lake whose archiver is stopped (it is the lake's only writer while
it runs), and it refuses while an archiver's lease on the lake is fresh. Safe to
interrupt: the new file is stored, then the manifest, then the old files are
deleted; the next open finishes or undoes an interrupted compaction.

With --database-url (or $DATABASE_URL), the warehouse is the judge: events a
privacy deletion erased (herd.privacy_erased), copies of a message id other than
the one herd.message_ids names (a retry whose timestamp fell in another hour) and
events the writer refused and never stored (herd.rejects) are left out. Without
it, each message id is kept once per partition, and those stay.`,
		flags: func(fs *flag.FlagSet) any {
			var f compactFlags
			f.db.bind(fs)
			f.streamFlags.bind(fs)
			f.lakeFlags.bind(fs)
			fs.StringVar(&f.before, "before", "", "compact partitions that ended before this time: RFC 3339 or YYYY-MM-DD (default: now minus --lake-close-after)")
			fs.DurationVar(&f.closeAfter, "lake-close-after", archive.DefaultCloseAfter, "grace after an hour ends before its partition is closed")
			return &f
		},
		run: runArchiveCompact,
	})
	register(&command{
		name:    "archive repair",
		summary: "fill the lake's recorded gaps from the stream, else from herd.events",
		help: `When the stream trims events before the archiver has them (the stream past 75 % of
--stream-max-bytes with the archiver stopped or far behind), the range is recorded
and the archiver lists it in the lake's _gaps.json. This command fills each range:
events the stream still holds (provenance 'stream'), otherwise the rows of
herd.events (provenance 'postgres'), that the lake lacks; then it compacts the
closed partitions it touched. herd up, and herd archive --database-url, repair on
their own. It refuses while an archiver's lease on the lake is fresh: stop the
archiver first.

--since DURATION first compares, per source and hour of the last DURATION, the
rows of herd.events with the lake's manifests, and records every hour where the
lake has fewer (the hours herd check names; a lake file deleted by hand) as a gap
to fill; --source limits that to some sources. The stream is read when NATS
answers at --nats-url; without it, Postgres alone is used.

` + natsHelp,
		flags: func(fs *flag.FlagSet) any {
			var f repairFlags
			f.dbFlags.bind(fs)
			f.streamFlags.bind(fs)
			f.lakeFlags.bind(fs)
			f.nats.bind(fs, nats.DefaultURL, "NATS server URL(s): the stream is the first copy asked")
			fs.IntVar(&f.windowDays, "partition-window", 35, "the archiver's window in days: older events go to month buckets")
			fs.DurationVar(&f.closeAfter, "lake-close-after", archive.DefaultCloseAfter, "grace after an hour ends before its partition is closed")
			fs.DurationVar(&f.since, "since", 0, "first record as gaps the hours of this last duration whose lake rows fall short of herd.events (e.g. 48h)")
			fs.StringVar(&f.sources, "source", "", "with --since: comma-separated source names or ids (default: every source)")
			return &f
		},
		run: runArchiveRepair,
	})
	register(&command{
		name:    "archive status",
		summary: "files, rows and bytes per day in the lake, and the archiver's lag",
		help:    natsHelp,
		flags: func(fs *flag.FlagSet) any {
			var f archiveStatusFlags
			f.streamFlags.bind(fs)
			f.lakeFlags.bind(fs)
			fs.StringVar(&f.consumer, "consumer", "herd-archiver", "durable JetStream consumer of the archiver")
			f.nats.bind(fs, nats.DefaultURL, "NATS server URL(s) for the lag (default: the herd up of --data-dir)")
			return &f
		},
		run: runArchiveStatus,
	})
	register(&command{
		name:    "archive locate",
		usage:   "MESSAGE_ID --source SOURCE",
		summary: "name the lake file holding the raw copy of an event in herd.events",
		flags: func(fs *flag.FlagSet) any {
			var f locateFlags
			f.dbFlags.bind(fs)
			f.lakeFlags.bind(fs)
			fs.StringVar(&f.source, "source", "", "source name or id (required)")
			return &f
		},
		run: runArchiveLocate,
	})
	register(&command{
		name:    "replay",
		usage:   "--from DATE [--to DATE] [--source S,...] [--into postgres]",
		summary: "load events of the lake back into herd.events (idempotent)",
		help: `Reads the lake's files for the days from --from to --to (UTC, both included) and
inserts their events into herd.events through the writer's insert path: an event
already stored is skipped, so replaying twice changes nothing. Each file's checksum
is checked against its manifest first. Use it after a retention drop, a table
rebuild, or to fill a dropped partition.

By default, ledger entries (herd.message_ids) of the replayed days whose rows are
gone from herd.events are forgotten first, so that a partition dropped by hand is
filled again; --forget-missing=false loads only events the warehouse never saw.
Re-applying today's enrichment to the raw fields (--re-enrich) is not available yet.`,
		flags: func(fs *flag.FlagSet) any {
			var f replayFlags
			f.dbFlags.bind(fs)
			f.lakeFlags.bind(fs)
			fs.StringVar(&f.from, "from", "", "first day to replay, YYYY-MM-DD (required)")
			fs.StringVar(&f.to, "to", "", "last day to replay, YYYY-MM-DD (default: --from)")
			fs.StringVar(&f.sources, "source", "", "comma-separated source names or ids (default: every source)")
			fs.StringVar(&f.into, "into", "postgres", "destination; postgres is the only one")
			fs.BoolVar(&f.forgetMissing, "forget-missing", true, "first forget ledger entries whose rows are gone, so they load again")
			return &f
		},
		run: runReplay,
	})
}

// startArchiver runs the archiver in herd up, into DATA-DIR/lake; with db
// it repairs the lake's gaps from herd.events. It stands
// aside while the writer's consumer (writerConsumer) is far behind: the
// rows reach Postgres first, and the lake catches up after. windowDays is
// the writer's --partition-window, so that the lake's month folders begin
// where the warehouse's coarse partitions do (0: no window); closeAfter is
// --lake-close-after.
func startArchiver(e *env, g *group, a *admin, db *pgxpool.Pool, js jetstream.JetStream, sc stream.Config, dataDir, writerConsumer string, windowDays int, closeAfter time.Duration) {
	lake := archive.NewDir(filepath.Join(dataDir, "lake"))
	window := time.Duration(windowDays) * 24 * time.Hour
	if windowDays <= 0 {
		window = 100 * 365 * 24 * time.Hour
	}
	cfg := archive.Config{Stream: sc, Yield: writerBehind(js, sc.Name, writerConsumer), Window: window, DB: db, CloseAfter: closeAfter}
	a.mem.archiver(&cfg)
	ar := archive.New(cfg, lake, js, e.log.With("component", "archiver"), a.reg)
	g.Go("archiver", ar.Run)
}

// Thresholds of writerBehind, in stream messages not yet delivered to the
// writer (a message holds one event or a frame of them): at the writer's
// pace a few seconds of work, against the few it holds in normal running.
const (
	writerBehindAbove = 5000
	writerCaughtUp    = 500
)

// writerBehind reports whether the Postgres writer has more than
// writerBehindAbove messages waiting, until it is down to writerCaughtUp.
func writerBehind(js jetstream.JetStream, streamName, consumer string) func(context.Context) bool {
	behind := false
	return func(ctx context.Context) bool {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, streamName, consumer) // fetches its info
		if err != nil {
			return false
		}
		info := c.CachedInfo()
		switch {
		case info.NumPending > writerBehindAbove:
			behind = true
		case info.NumPending < writerCaughtUp:
			behind = false
		}
		return behind
	}
}

func runArchive(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	f := config[*archiveFlags]("archive")
	lake, err := f.lakeFlags.openLake()
	if err != nil {
		return usagef("%v", err)
	}
	nc, js, sc, err := joinStream(ctx, &f.nats, "herd-archiver", &f.streamFlags)
	if err != nil {
		return err
	}
	defer nc.Drain() //nolint:errcheck
	a := newAdmin()
	adm, err := openAdmin(e, a, &f.admin, "")
	if err != nil {
		return err
	}
	defer adm.Close()
	cfg := f.archiverFlags.config(sc)
	if f.db.url != "" {
		db, err := f.db.open(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		cfg.DB = db
	}
	g := newGroup(ctx, e.log)
	ar := archive.New(cfg, lake, js, e.log.With("component", "archiver"), a.reg)
	g.Go("archiver", ar.Run)
	adm.serve(g)
	e.log.Info("archiver running", "nats", redact(f.nats.url), "stream", sc.Name, "lake", redact(lake.String()))
	return g.Wait()
}

func runArchiveStatus(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	f := config[*archiveStatusFlags]("archive status")
	lake, err := f.lakeFlags.readLake()
	if err != nil {
		return usagef("%v", err)
	}
	days, err := archive.LakeStatus(ctx, lake)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(e.stdout, "lake %s\n", redact(lake.String()))
	fmt.Fprintln(w, "DATE\tFILES\tROWS\tBYTES\t")
	var files int
	var rows, bytes int64
	for _, d := range days {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t\n", d.Date, d.Files, d.Rows, d.Bytes)
		files, rows, bytes = files+d.Files, rows+d.Rows, bytes+d.Bytes
	}
	fmt.Fprintf(w, "total\t%d\t%d\t%d\t\n", files, rows, bytes)
	if err := w.Flush(); err != nil {
		return err
	}
	gaps, err := archive.ReadGaps(ctx, lake)
	if err != nil {
		return err
	}
	if len(gaps.Ranges) > 0 {
		var seqs uint64
		for _, r := range gaps.Ranges {
			seqs += r.Last - r.First + 1
		}
		fmt.Fprintf(e.stdout, "gaps awaiting repair: %d ranges over %d stream sequences (first %d-%d); run herd archive repair, or let herd up do it\n",
			len(gaps.Ranges), seqs, gaps.Ranges[0].First, gaps.Ranges[0].Last)
	}

	// Status must answer even when NATS is down, so no reconnect loop here.
	nc, err := f.nats.connectOnce("herd-archive-status", 3*time.Second)
	if err != nil {
		fmt.Fprintf(e.stdout, "consumer lag: unknown (%v)\n", err)
		return nil
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := archive.Lag(cctx, js, archive.Config{Stream: f.streamFlags.config(), Consumer: f.consumer})
	if err != nil {
		fmt.Fprintf(e.stdout, "consumer lag: unknown (%v)\n", err)
		return nil
	}
	fmt.Fprintf(e.stdout, "consumer %s: lag %d stream messages (%d not yet delivered, %d in open files); archived through stream sequence %d of %d\n",
		st.Consumer, st.Lag, st.Pending, st.AckPending, st.AckFloor, st.StreamLast)
	return nil
}

// sourceIDs turns "web,3" into source ids, looking names up in herd.sources.
func sourceIDs(ctx context.Context, db *pgxpool.Pool, list string) ([]int64, error) {
	var ids []int64
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if id, err := strconv.ParseInt(s, 10, 64); err == nil {
			ids = append(ids, id)
			continue
		}
		srcs, err := warehouse.Sources(ctx, db)
		if err != nil {
			return nil, err
		}
		found := false
		for _, src := range srcs {
			if src.Name == s {
				ids, found = append(ids, src.ID), true
			}
		}
		if !found {
			return nil, usagef("no source named %q (see herd sources list)", s)
		}
	}
	return ids, nil
}

func runReplay(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	f := config[*replayFlags]("replay")
	if f.into != "postgres" {
		return usagef("--into %q: only postgres is supported", f.into)
	}
	if f.from == "" {
		return usagef("--from DATE is required")
	}
	from, err := time.Parse(time.DateOnly, f.from)
	if err != nil {
		return usagef("--from %q: want YYYY-MM-DD", f.from)
	}
	to := from
	if f.to != "" {
		if to, err = time.Parse(time.DateOnly, f.to); err != nil {
			return usagef("--to %q: want YYYY-MM-DD", f.to)
		}
	}
	if to.Before(from) {
		return usagef("--to %s is before --from %s", f.to, f.from)
	}
	lake, err := f.lakeFlags.readLake()
	if err != nil {
		return usagef("%v", err)
	}
	db, err := f.dbFlags.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	ids, err := sourceIDs(ctx, db, f.sources)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := archive.Replay(ctx, lake, db, writer.NewStore(db), archive.ReplayOptions{
		From: from, To: to, Sources: ids, ForgetMissing: f.forgetMissing,
		Progress: func(p archive.FileProgress) {
			fmt.Fprintf(e.stdout, "[%d/%d] %s: %d rows, %d inserted, %d already stored, %d rejected\n",
				p.Index, p.Total, p.Key, p.Rows, p.Inserted, p.Duplicates, p.Rejected)
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "replayed %d files from %s in %s: %d rows, %d inserted, %d already stored, %d rejected",
		res.Files, lake, time.Since(start).Round(time.Millisecond), res.Rows, res.Inserted, res.Duplicates, res.Rejected)
	if res.Forgotten > 0 {
		fmt.Fprintf(e.stdout, " (%d ledger entries of missing rows forgotten first)", res.Forgotten)
	}
	fmt.Fprintln(e.stdout)
	return nil
}

func runArchiveLocate(ctx context.Context, e *env, args []string) error {
	f := config[*locateFlags]("archive locate")
	if len(args) != 1 || f.source == "" {
		return usagef("want MESSAGE_ID and --source")
	}
	lake, err := f.lakeFlags.readLake()
	if err != nil {
		return usagef("%v", err)
	}
	db, err := f.dbFlags.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	ids, err := sourceIDs(ctx, db, f.source)
	if err != nil {
		return err
	}
	var (
		ts  time.Time
		seq *int64
	)
	err = db.QueryRow(ctx, `SELECT "timestamp", stream_seq FROM herd.events WHERE source_id = $1 AND message_id = $2`, ids[0], args[0]).Scan(&ts, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("no event %q of source %s in herd.events", args[0], f.source)
	}
	if err != nil {
		return fmt.Errorf("look up event %q: %w", args[0], err)
	}
	if seq == nil {
		return fmt.Errorf("event %q has no stream sequence (it was not loaded from the stream)", args[0])
	}
	key, entry, err := archive.Locate(ctx, lake, ids[0], ts, uint64(*seq))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\n  stream %s sequences %d-%d, %d rows, %d bytes, sha256 %s, written %s\n",
		key, entry.Stream, entry.FirstSeq, entry.LastSeq, entry.Rows, entry.Bytes, entry.SHA256, entry.WrittenAt.Format(time.RFC3339))
	return nil
}

func parseWhen(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, s)
}

func runArchiveCompact(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	f := config[*compactFlags]("archive compact")
	before := time.Now().Add(-f.closeAfter)
	if f.before != "" {
		t, err := parseWhen(f.before)
		if err != nil {
			return usagef("--before %q: want RFC 3339 (2026-11-26T10:00:00Z) or YYYY-MM-DD", f.before)
		}
		before = t
	}
	lake, err := f.lakeFlags.readLake()
	if err != nil {
		return usagef("%v", err)
	}
	opt := archive.CompactOptions{Before: before, Stream: f.streamFlags.config().Name, Log: e.log}
	if f.db.url != "" {
		db, err := f.db.open(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		opt.DB = db
	} else {
		fmt.Fprintln(e.stdout, "no --database-url: erased, refused and cross-hour copies are not checked against the warehouse")
	}
	start := time.Now()
	res, err := archive.Compact(ctx, lake, opt)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "compacted %d partitions of %s that ended before %s in %s: %d files into one each, %d rows, %d duplicates dropped, %d erased, %d other copies, %d refused left out\n",
		res.Partitions, redact(lake.String()), before.UTC().Format(time.RFC3339), time.Since(start).Round(time.Millisecond), res.FilesIn, res.Rows, res.Duplicates,
		res.Dropped["erased"], res.Dropped["ledger"], res.Dropped["rejected"])
	return nil
}

func runArchiveRepair(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	f := config[*repairFlags]("archive repair")
	lake, err := f.lakeFlags.readLake()
	if err != nil {
		return usagef("%v", err)
	}
	db, err := f.dbFlags.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	sc := f.streamFlags.config()
	if f.since > 0 {
		ids, err := sourceIDs(ctx, db, f.sources)
		if err != nil {
			return err
		}
		hours, err := archive.RecordHourGaps(ctx, lake, db, sc.Name, time.Now().Add(-f.since), ids)
		if err != nil {
			return err
		}
		for _, h := range hours {
			fmt.Fprintf(e.stdout, "source %d hour %s: %d rows in herd.events, %d in the lake; recorded stream sequences %d-%d\n",
				h.Source, h.Hour.Format(time.RFC3339), h.Events, h.Lake, h.FirstSeq, h.Last)
		}
	} else if f.sources != "" {
		return usagef("--source needs --since")
	}
	gaps, err := archive.ReadGaps(ctx, lake)
	if err != nil {
		return err
	}
	if len(gaps.Ranges) == 0 {
		fmt.Fprintf(e.stdout, "no gaps recorded in %s\n", redact(lake.String()))
		return nil
	}
	var js jetstream.JetStream
	if nc, err := f.nats.connectOnce("herd-archive-repair", 3*time.Second); err != nil {
		fmt.Fprintf(e.stdout, "stream not reachable (%v): repairing from Postgres alone\n", err)
	} else {
		defer nc.Close()
		if js, err = jetstream.New(nc); err != nil {
			return err
		}
	}
	window := time.Duration(f.windowDays) * 24 * time.Hour
	if f.windowDays <= 0 {
		window = 100 * 365 * 24 * time.Hour
	}
	res, err := archive.Repair(ctx, lake, js, db, archive.RepairOptions{Stream: sc, Window: window, CloseAfter: f.closeAfter, Log: e.log})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "repaired %d gaps of %s: %d rows from the stream, %d from herd.events, in %d partitions\n",
		res.Ranges, redact(lake.String()), res.FromStream, res.FromPostgres, res.Partitions)
	return nil
}
