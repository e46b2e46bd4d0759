package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/herdhq/herd/doctor"
	"github.com/herdhq/herd/instance"
	"github.com/herdhq/herd/warehouse"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

type doctorFlags struct {
	upFlags
	strict bool
}

func init() {
	register(&command{
		name:    "doctor",
		summary: "check herd up's configuration, Postgres settings, clock and disk; exit 1 on a failure",
		usage:   "[herd up's flags]",
		help: `herd doctor takes herd up's flags and variables and prints, for each check, ok,
warn or FAIL with what to do:

  - the settings herd up warns about at start, because they accept work it will
    not finish: a Stripe webhook secret without the API key (webhooks are stored
    and wait), a --geoip-db or --asn-db that cannot be read, a lake directory
    herd cannot write, an admin listener reachable beyond this machine; given
    no flag or variable (but --data-dir) while herd up runs there, the results
    of these checks herd up recorded in DATA-DIR/herd.json at its start, that
    is for the settings it runs with;
  - the herd up running on --data-dir (from DATA-DIR/herd.json) and its NATS
    (a stale herd.json warns, one herd refuses to read fails);
  - Postgres (the database of --database-url, $DATABASE_URL, else that herd
    up's): max_connections against the pools' size (pool_max_conns), whether
    pg_stat_statements is loaded for herd usage, the clock skew between this
    machine and the server (warn past 2 s, fail past 1 min), and wal_level on
    the source of every logical replication (herd replicate);
  - the free disk of the data directory (fail under 1 GiB, warn under
    --stream-max-bytes, which the stream may fill).

It exits 1 when a check fails, 0 when there are only warnings (1 with --strict),
2 on a usage error.`,
		flags: func(fs *flag.FlagSet) any {
			var f doctorFlags
			f.upFlags.bind(fs)
			fs.BoolVar(&f.strict, "strict", false, "exit 1 on warnings too")
			return &f
		},
		run: runDoctor,
	})
}

// minFreeDisk is the free space below which herd doctor fails: NATS stops
// accepting writes to its store near a full disk, and the collector answers
// 503.
const minFreeDisk = 1 << 30

// setupChecks are the checks herd up runs at start: configurations that
// accept work herd will not finish.
func setupChecks(f *upFlags) []doctor.Result {
	rs := webhookChecks(f.connectors)
	if f.enrich {
		rs = append(rs, doctor.File("geoip-db", f.geoIPDB), doctor.File("asn-db", f.asnDB))
	}
	rs = append(rs, doctor.Writable("lake", filepath.Join(f.dataDir, "lake")))
	where := ""
	switch {
	case f.admin.tokenFile != "":
		where = "the one in " + f.admin.tokenFile
	case f.admin.token != "":
		where = "the one in $HERD_ADMIN_TOKEN"
	default:
		where = "generated into " + filepath.Join(f.dataDir, adminTokenName)
	}
	rs = append(rs, doctor.AdminListener(f.admin.listen, where))
	rs = append(rs, doctor.FreeDisk(existingParent(f.dataDir), uint64(max(f.maxBytes, 0)), minFreeDisk))
	return rs
}

// existingParent is dir, or its nearest parent that exists.
func existingParent(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			return dir
		}
		dir = filepath.Dir(dir)
	}
}

// warnSetup logs every problem of setupChecks.
func warnSetup(e *env, rs []doctor.Result) {
	for _, r := range rs {
		if r.Level != doctor.OK {
			e.log.Warn(r.Check+": "+r.Message, "fix", r.Fix)
		}
	}
}

func runDoctor(ctx context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return usagef("doctor takes no arguments")
	}
	f := config[*doctorFlags]("doctor")
	// With no flag or variable, the settings to check are those of the herd
	// up running on --data-dir, as it checked them at its start; the
	// defaults describe a herd nobody runs.
	in, found := instance.Find(f.dataDir)
	var rs []doctor.Result
	if found == nil && !e.configured && in.Setup != nil {
		rs = recordedSetup(f, in)
	} else {
		rs = setupChecks(&f.upFlags)
	}
	rs = append(rs, runningChecks(ctx, f, in, found)...)
	rs = append(rs, postgresChecks(ctx, f)...)
	if err := doctor.Write(e.stdout, rs); err != nil {
		return err
	}
	n := 0
	w := doctor.Worst(rs)
	for _, r := range rs {
		if r.Level == w {
			n++
		}
	}
	switch {
	case w == doctor.Fail:
		return fmt.Errorf("%d checks failed (see FAIL above)", n)
	case w == doctor.Warn && f.strict:
		return fmt.Errorf("%d warnings, and --strict", n)
	}
	return nil
}

// recordedSetup is what herd up's setup checks found at its start, with
// the free disk measured now.
func recordedSetup(f *doctorFlags, in instance.Info) []doctor.Result {
	disk := doctor.FreeDisk(existingParent(f.dataDir), uint64(max(f.maxBytes, 0)), minFreeDisk)
	rs := []doctor.Result{{Check: "setup", Message: fmt.Sprintf("the settings of the herd up running on %s (pid %d), as it checked them at its start; give herd doctor flags to check others", f.dataDir, in.PID)}}
	for _, c := range in.Setup {
		if c.Name == disk.Check {
			continue
		}
		rs = append(rs, doctor.Result{Check: c.Name, Level: doctor.ParseLevel(c.Level), Message: c.Message, Fix: c.Fix})
	}
	return append(rs, disk)
}

// runningChecks reports on the herd up running on --data-dir (in, or the
// error of finding it): that its NATS answers and holds the stream. A
// stale connection file is a warning, one herd cannot read a failure.
func runningChecks(ctx context.Context, f *doctorFlags, in instance.Info, err error) []doctor.Result {
	const check = "herd up"
	switch {
	case errors.Is(err, instance.ErrNone):
		return []doctor.Result{{Check: check, Message: err.Error()}}
	case errors.Is(err, instance.ErrStale):
		return []doctor.Result{{Check: check, Level: doctor.Warn, Message: err.Error(),
			Fix: "start herd up on " + f.dataDir + ", or delete " + instance.Path(f.dataDir)}}
	case err != nil:
		return []doctor.Result{{Check: check, Level: doctor.Fail, Message: err.Error(),
			Fix: "see the message; herd commands will not use " + instance.Path(f.dataDir)}}
	}
	r := doctor.Result{Check: check, Message: fmt.Sprintf("pid %d on %s since %s", in.PID, f.dataDir, in.StartedAt.Local().Format(time.DateTime))}
	if in.NATSURL == "" {
		return []doctor.Result{r, {Check: "nats", Level: doctor.Warn, Message: "herd up accepts NATS clients in its process only: herd status and the other commands cannot reach it",
			Fix: "restart herd up without --nats-listen= (empty)"}}
	}
	n := natsFlags{url: in.NATSURL, tokenFile: in.NATSTokenFile}
	nc, err := n.connectOnce("herd-doctor", 3*time.Second)
	if err != nil {
		return []doctor.Result{r, {Check: "nats", Level: doctor.Fail, Message: err.Error(), Fix: "restart herd up; see its log"}}
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = js.Stream(cctx, in.Stream)
		cancel()
	}
	if err != nil {
		return []doctor.Result{r, {Check: "nats", Level: doctor.Fail, Message: fmt.Sprintf("stream %s at %s: %v", in.Stream, in.NATSURL, err), Fix: "restart herd up; see its log"}}
	}
	return []doctor.Result{r, {Check: "nats", Message: fmt.Sprintf("%s answers, stream %s", in.NATSURL, in.Stream)}}
}

// postgresChecks reports on the warehouse's settings, and on the sources
// of its logical replications.
func postgresChecks(ctx context.Context, f *doctorFlags) []doctor.Result {
	const check = "postgres"
	if f.url == "" {
		return []doctor.Result{{Check: check, Level: doctor.Warn, Message: "not checked: " + f.dbFlags.triedDB(),
			Fix: "run herd doctor with herd up's DATABASE_URL, or while herd up runs"}}
	}
	cfg, err := pgxpool.ParseConfig(f.url)
	if err != nil {
		return []doctor.Result{{Check: check, Level: doctor.Fail, Message: "parse the database URL: " + err.Error(), Fix: "give a postgres:// URL"}}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	db, err := warehouse.Open(cctx, f.url)
	if err != nil {
		return []doctor.Result{{Check: check, Level: doctor.Fail, Message: err.Error(), Fix: "start Postgres, or correct the database URL"}}
	}
	defer db.Close()
	// herd up holds one pool, and each connector a connection of its own
	// for its pass lock (saas.TryPassLock); each command run beside it
	// opens its own.
	need := int(cfg.MaxConns) + len(connectors) + 2
	rs := []doctor.Result{
		doctor.Connections(cctx, db, need),
		doctor.StatStatements(cctx, db),
		doctor.ClockSkew(cctx, db, time.Now),
	}
	return append(rs, replicationChecks(cctx, db)...)
}

// replicationChecks checks wal_level on the source of each logical
// replication the warehouse runs.
func replicationChecks(ctx context.Context, db *pgxpool.Pool) []doctor.Result {
	const check = "wal_level"
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('herd.replicate_subscriptions') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return []doctor.Result{{Check: check, Message: "no logical replication configured"}}
	}
	rows, err := db.Query(ctx, `SELECT name, source_url FROM herd.replicate_subscriptions WHERE mode = 'logical' ORDER BY name`)
	if err != nil {
		return []doctor.Result{{Check: check, Level: doctor.Fail, Message: "read herd.replicate_subscriptions: " + err.Error(), Fix: "run herd migrate"}}
	}
	type sub struct{ name, url string }
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sub, error) {
		var s sub
		return s, r.Scan(&s.name, &s.url)
	})
	if err != nil {
		return []doctor.Result{{Check: check, Level: doctor.Fail, Message: "read herd.replicate_subscriptions: " + err.Error(), Fix: "run herd migrate"}}
	}
	if len(subs) == 0 {
		return []doctor.Result{{Check: check, Message: "no logical replication configured"}}
	}
	var rs []doctor.Result
	for _, s := range subs {
		what := "of replication " + s.name
		conn, err := pgx.Connect(ctx, s.url)
		if err != nil {
			rs = append(rs, doctor.Result{Check: check + " " + what, Level: doctor.Fail, Message: "connect to its source: " + redact(err.Error()),
				Fix: "check that the source is up (herd replicate status " + s.name + ")"})
			continue
		}
		rs = append(rs, doctor.WALLevel(ctx, conn, what))
		conn.Close(ctx)
	}
	return rs
}
