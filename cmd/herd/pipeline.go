package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/collector/enrich"
	"github.com/herdhq/herd/doctor"
	"github.com/herdhq/herd/instance"
	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/herdhq/herd/internal/secrets"
	"github.com/herdhq/herd/membudget"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/warehouse"
	"github.com/herdhq/herd/writer"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type writerFlags struct {
	batchEvents  int
	batchWait    time.Duration
	parallel     int
	retention    time.Duration
	partsAhead   int
	partsWindow  int
	consumerName string
	ackWait      time.Duration
}

func (w *writerFlags) bind(fs *flag.FlagSet) {
	fs.IntVar(&w.batchEvents, "batch-events", 2000, "most events in one COPY transaction")
	fs.DurationVar(&w.batchWait, "batch-wait", 25*time.Millisecond, "longest a batch waits to fill after its first event")
	fs.IntVar(&w.parallel, "writers", 2, "batches written in parallel, each on its own connection")
	fs.DurationVar(&w.retention, "retention", 0, "drop event partitions older than this (e.g. 2160h for 90 days); 0 keeps everything")
	fs.IntVar(&w.partsAhead, "partitions-ahead", 7, "days of partitions created ahead")
	fs.IntVar(&w.partsWindow, "partition-window", writer.DefaultPartitionWindow, "days before today that get a partition of herd.events each; older events go to one partition per gap of a year, so clients' timestamps cannot multiply partitions")
	fs.DurationVar(&w.ackWait, "ack-wait", 30*time.Second, "how long a crashed writer's messages wait before redelivery")
	fs.StringVar(&w.consumerName, "consumer", "herd-writer", "durable JetStream consumer name (writers sharing it split the work)")
}

func (w *writerFlags) config(sc stream.Config) writer.Config {
	window := w.partsWindow
	if window == 0 {
		window = -1 // writer.Config's zero value is its default; below zero is no window
	}
	return writer.Config{
		Stream: sc, Consumer: w.consumerName, Parallel: w.parallel, AckWait: w.ackWait, PartitionWindow: window,
		Batch: writer.BatchPolicy{MaxEvents: w.batchEvents, MaxWait: w.batchWait},
	}
}

// upFlags is everything herd up takes.
type upFlags struct {
	dbFlags
	streamFlags
	collectorFlags
	writerFlags
	admin      adminFlags
	dataDir    string
	writeKey   string
	natsListen string
	connectors map[string]connectorFlags // by connector name
	lake       upLakeFlags
	console    consoleFlags
	memory     memoryFlags
}

// bind defines herd up's flags (herd doctor takes the same, to check the
// configuration herd up would run with).
func (f *upFlags) bind(fs *flag.FlagSet) {
	f.dbFlags.bind(fs)
	f.streamFlags.bind(fs)
	f.collectorFlags.bind(fs)
	f.writerFlags.bind(fs)
	f.admin.bind(fs, "127.0.0.1:8081")
	fs.StringVar(&f.dataDir, "data-dir", "./data", "where embedded NATS and the private Postgres keep their files and herd its generated credentials")
	fs.StringVar(&f.writeKey, "write-key", "", "write key of the default source (default: generated once and kept)")
	fs.StringVar(&f.natsListen, "nats-listen", "127.0.0.1:0", "also accept NATS clients on this host:port (port 0: a free one), with the token in DATA-DIR/"+natsTokenName+"; herd status and the other commands find it through DATA-DIR/"+instance.FileName+" (empty: in-process clients only)")
	f.connectors = upConnectorFlags(fs)
	f.lake.bind(fs)
	f.console.bind(fs, true)
	f.memory.bind(fs, membudget.Format(membudget.DefaultLimit))
}

type collectFlags struct {
	streamFlags
	collectorFlags
	nats   natsFlags
	admin  adminFlags
	memory memoryFlags
}

type writeFlags struct {
	dbFlags
	streamFlags
	writerFlags
	nats   natsFlags
	admin  adminFlags
	memory memoryFlags
}

func init() {
	register(&command{
		name:    "up",
		summary: "run everything on one machine: embedded NATS, collector, writer, Postgres",
		help: `herd up starts JetStream in-process (stored under DATA-DIR/nats), the collector
on --listen and the writer. Postgres comes from --database-url / DATABASE_URL, or
else a private cluster is created from the system's PostgreSQL binaries under
DATA-DIR/pg and started on a free port. Migrations are applied and a source named
"default" is created; its write key, the demo page URL and the psql command that
shows the events are printed. Ctrl-C answers requests in flight, commits what the
writer holds and stops.

While it runs, herd up keeps DATA-DIR/herd.json (mode 0600): its pid, database
URL, NATS URL and token file, admin URL, stream and lake. herd status, sources,
usage, archive status and every other command run with the same --data-dir
(default ./data) use them when no flag or variable names others. Embedded NATS
accepts clients on --nats-listen, a free loopback port by default. At start herd
up warns about settings that accept work it will not finish (herd doctor prints
the same checks, with Postgres's settings, the clock and the disk).

Credentials are generated on first start and kept under DATA-DIR, mode 0600:
nats.token, the token every NATS client must present (commands on the same
data directory read it by herd.json; others give --nats-token-file
DATA-DIR/nats.token or $HERD_NATS_TOKEN); pgpass, the private Postgres's password (scram-sha-256;
the printed psql line reads it through passfile=, and a data directory made by
an older herd with trust authentication is switched over at its next start).
Nothing herd prints or logs holds a password.

` + memoryHelp + `

` + adminHelp(true),
		flags: func(fs *flag.FlagSet) any {
			var f upFlags
			f.bind(fs)
			return &f
		},
		run: runUp,
	})
	register(&command{
		name:    "collect",
		summary: "run the collector alone against an external NATS",
		help:    natsHelp + "\n\n" + memoryHelp + "\n\n" + adminHelp(false),
		flags: func(fs *flag.FlagSet) any {
			var f collectFlags
			f.streamFlags.bind(fs)
			f.collectorFlags.bind(fs)
			f.nats.bind(fs, nats.DefaultURL, "NATS server URL(s), comma-separated")
			f.admin.bind(fs, "127.0.0.1:8081")
			f.memory.bind(fs, "")
			return &f
		},
		run: runCollect,
	})
	register(&command{
		name:    "write",
		summary: "run the writer alone: external NATS into Postgres",
		help:    natsHelp + "\n\n" + memoryHelp + "\n\n" + adminHelp(false),
		flags: func(fs *flag.FlagSet) any {
			var f writeFlags
			f.dbFlags.bind(fs)
			f.streamFlags.bind(fs)
			f.writerFlags.bind(fs)
			f.nats.bind(fs, nats.DefaultURL, "NATS server URL(s), comma-separated")
			f.admin.bind(fs, "127.0.0.1:8082")
			f.memory.bind(fs, "")
			return &f
		},
		run: runWrite,
	})
}

// startCollector builds a collector, loads sources and serves it in g.
func startCollector(ctx context.Context, e *env, g *group, a *admin, nc *nats.Conn, cf *collectorFlags, sc stream.Config, demoKey string) error {
	cfg, err := cf.config(sc)
	if err != nil {
		return err
	}
	addStatic(&cfg, demoKey)
	addWebhooks(&cfg)
	a.mem.collector(&cfg, cf.byteRateGiven())
	if cf.enrich {
		en, err := enrich.New(enrich.Config{GeoIPDB: cf.geoIPDB, ASNDB: cf.asnDB}, e.log.With("component", "enrich"), a.reg)
		if err != nil {
			return err
		}
		cfg.Enricher = en
		g.Go("geo reload", func(ctx context.Context) error {
			// Run returns at once when there is nothing to reload; the group
			// stops everything when a member returns, so wait for the end.
			if err := en.Run(ctx); err != nil {
				return err
			}
			<-ctx.Done()
			return nil
		})
	}
	c, err := collector.New(cfg, nc, e.log.With("component", "collector"), a.reg)
	if err != nil {
		return err
	}
	if err := c.Start(g.ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cf.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cf.listen, err)
	}
	cf.bound = dialAddr(ln.Addr())
	a.check("nats", func(context.Context) error {
		if !c.Ready() {
			return errors.New("not connected or sources not loaded")
		}
		return nil
	})
	g.Go("collector", func(ctx context.Context) error { return serveCollector(ctx, c, ln, e.log) })
	return nil
}

// startWriter runs the writer, the source mirror and partition upkeep in g.
func startWriter(e *env, g *group, a *admin, db *pgxpool.Pool, js jetstream.JetStream, wf *writerFlags, sc stream.Config) error {
	kv, err := stream.SourcesKV(g.ctx, js, sc)
	if err != nil {
		return err
	}
	if err := warehouse.SyncSources(g.ctx, db, kv); err != nil {
		return err
	}
	wcfg := wf.config(sc)
	a.mem.writer(&wcfg)
	w := writer.New(wcfg, db, js, e.log.With("component", "writer"), a.reg)
	a.reg.MustRegister(stream.NewCollector(js, sc, e.log.With("component", "stream")))
	a.check("postgres", func(ctx context.Context) error { return db.Ping(ctx) })
	g.Go("writer", w.Run)
	g.Go("sources mirror", func(ctx context.Context) error {
		return warehouse.MirrorSources(ctx, db, kv, 30*time.Second, e.log)
	})
	if err := startSuppressionMirror(e, g, db, js, sc); err != nil {
		return err
	}
	g.Go("stream trim", func(ctx context.Context) error {
		return stream.TrimLoop(ctx, js, sc, 5*time.Second, e.log)
	})
	g.Go("partitions", func(ctx context.Context) error {
		return warehouse.Maintain(ctx, db, wf.partsAhead, wf.retention, e.log, w.Store().ForgetPartitions)
	})
	return nil
}

func runCollect(ctx context.Context, e *env, args []string) error {
	f := config[*collectFlags]("collect")
	nc, _, sc, err := joinStream(ctx, &f.nats, "herd-collector", &f.streamFlags)
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
	mem, err := f.memory.setup(e, a, membudget.Parts{Collector: true})
	if err != nil {
		return err
	}
	g := newGroup(ctx, e.log)
	mem.run(g)
	if err := startCollector(ctx, e, g, a, nc, &f.collectorFlags, sc, ""); err != nil {
		g.cancel()
		g.Wait() //nolint:errcheck
		return err
	}
	adm.serve(g)
	e.log.Info("collector listening", "addr", f.collectorFlags.listen, "nats", redact(f.nats.url))
	return g.Wait()
}

func runWrite(ctx context.Context, e *env, args []string) error {
	f := config[*writeFlags]("write")
	db, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := schemas.Migrate(ctx, db); err != nil {
		return err
	}
	nc, js, sc, err := joinStream(ctx, &f.nats, "herd-writer", &f.streamFlags)
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
	if _, err := f.memory.setup(e, a, membudget.Parts{Writer: true}); err != nil {
		return err
	}
	g := newGroup(ctx, e.log)
	if err := startWriter(e, g, a, db, js, &f.writerFlags, sc); err != nil {
		g.cancel()
		g.Wait() //nolint:errcheck
		return err
	}
	adm.serve(g)
	e.log.Info("writer running", "nats", redact(f.nats.url), "stream", sc.Name)
	return g.Wait()
}

// joinStream connects to NATS as name and ensures the stream: what every
// standalone component does first. Close the connection with Drain.
func joinStream(ctx context.Context, nf *natsFlags, name string, sf *streamFlags) (*nats.Conn, jetstream.JetStream, stream.Config, error) {
	sc := sf.config()
	nc, err := nf.connect(name)
	if err != nil {
		return nil, nil, sc, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		err = ensureStream(ctx, js, sc)
	}
	if err != nil {
		nc.Close()
		return nil, nil, sc, err
	}
	return nc, js, sc, nil
}

// ensureStream creates the stream, waiting for NATS to come up.
func ensureStream(ctx context.Context, js jetstream.JetStream, sc stream.Config) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := stream.Ensure(cctx, js, sc)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func runUp(ctx context.Context, e *env, args []string) error {
	f := config[*upFlags]("up")
	if err := privateDataDir(e, f.dataDir); err != nil {
		return err
	}
	// One herd up per data directory: the lock is taken before anything
	// (the private Postgres, the embedded NATS's store) starts, and held
	// until the process ends.
	lock, err := instance.Lock(f.dataDir)
	if err != nil {
		if in, ferr := instance.Read(f.dataDir); ferr == nil && errors.Is(err, instance.ErrRunning) {
			return fmt.Errorf("%w (pid %d, started %s)", err, in.PID, in.StartedAt.Local().Format(time.DateTime))
		}
		return err
	}
	defer lock.Close()
	setup := setupChecks(f)
	warnSetup(e, setup)
	// The admin listener's token is decided first: a listener beyond
	// loopback gets one before anything else starts.
	a := newAdmin()
	adm, err := openAdmin(e, a, &f.admin, f.dataDir)
	if err != nil {
		return err
	}
	defer adm.Close()
	mem, err := f.memory.setup(e, a, membudget.All)
	if err != nil {
		return err
	}
	dbURL := f.url
	var cluster *pgcluster.Cluster
	if dbURL == "" {
		var err error
		cluster, dbURL, err = privatePostgres(ctx, e, f.dataDir)
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := cluster.Stop(sctx, "fast"); err != nil {
				e.log.Warn("stop private Postgres", "err", err)
			}
		}()
	}
	db, err := warehouse.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := schemas.Migrate(ctx, db); err != nil {
		return err
	}
	src, err := defaultSource(ctx, db, f.writeKey)
	if err != nil {
		return err
	}

	ns, err := stream.StartEmbeddedLimited(filepath.Join(f.dataDir, "nats"), f.natsListen, filepath.Join(f.dataDir, natsTokenName), mem.nats())
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	nc, err := ns.Connect("herd-up")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	sc := f.streamFlags.config()
	if _, err := stream.Ensure(ctx, js, sc); err != nil {
		return err
	}

	g := newGroup(ctx, e.log)
	mem.run(g)
	if err := startWriter(e, g, a, db, js, &f.writerFlags, sc); err != nil {
		g.cancel()
		g.Wait() //nolint:errcheck
		return err
	}
	if err := startCollector(ctx, e, g, a, nc, &f.collectorFlags, sc, src.WriteKey); err != nil {
		g.cancel()
		g.Wait() //nolint:errcheck
		return err
	}
	if err := startExtras(e, g, a, db, js, sc, f); err != nil {
		g.cancel()
		g.Wait() //nolint:errcheck
		return err
	}
	consoleURL, err := startConsole(e, g, a.reg, &f.console, db, dbURL, nc, js, sc, archive.NewDir(filepath.Join(f.dataDir, "lake")), true)
	if err != nil {
		g.cancel()
		g.Wait() //nolint:errcheck
		return err
	}
	adm.serve(g)

	host := f.collectorFlags.listen
	if strings.HasPrefix(host, ":") {
		host = "localhost" + host
	}
	if b := f.collectorFlags.bound; b != "" && strings.HasSuffix(host, ":0") {
		host = b // port 0: the one the system chose
	}
	if err := writeInstance(f, dbURL, ns, adm, sc, setup); err != nil {
		g.cancel()
		g.Wait() //nolint:errcheck
		return err
	}
	defer func() {
		if err := instance.Remove(f.dataDir, os.Getpid()); err != nil {
			e.log.Warn("remove the connection file", "file", instance.Path(f.dataDir), "err", err)
		}
	}()
	printUp(e, f, src.WriteKey, host, dbURL, cluster != nil, ns, adm, consoleURL)
	<-g.ctx.Done()
	e.log.Info("stopping")
	return g.Wait()
}

// writeInstance writes DATA-DIR/herd.json, through which every other
// command finds this herd up's database, NATS, stream and lake.
func writeInstance(f *upFlags, dbURL string, ns *stream.Embedded, adm *adminListener, sc stream.Config, setup []doctor.Result) error {
	dir, err := filepath.Abs(f.dataDir)
	if err != nil {
		return err
	}
	in := instance.Info{
		PID: os.Getpid(), StartedAt: time.Now().UTC().Truncate(time.Second), DataDir: dir, DatabaseURL: dbURL,
		AdminURL: "http://" + dialAddr(adm.ln.Addr()), AdminTokenFile: adm.tokenFile,
		Lake: filepath.Join(dir, "lake"), Stream: sc.Name, SubjectPrefix: sc.Prefix, SourcesBucket: sc.SourcesKV,
	}
	for _, r := range setup {
		in.Setup = append(in.Setup, instance.Check{Level: r.Level.String(), Name: r.Check, Message: r.Message, Fix: r.Fix})
	}
	if f.natsListen != "" {
		in.NATSURL = "nats://" + dialAddr(ns.Server.Addr())
		if in.NATSTokenFile, err = filepath.Abs(ns.TokenFile); err != nil {
			return err
		}
	}
	if in.AdminTokenFile != "" {
		if in.AdminTokenFile, err = filepath.Abs(in.AdminTokenFile); err != nil {
			return err
		}
	}
	return instance.Write(f.dataDir, in)
}

// dialAddr is the address a local client dials to reach a listener: a
// listener on every interface is reached on loopback.
func dialAddr(a net.Addr) string {
	t, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if t.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(t.Port))
	}
	return t.String()
}

// defaultSource returns the source named "default", creating it (with key,
// when given) or updating its key to key.
func defaultSource(ctx context.Context, db *pgxpool.Pool, key string) (herd.Source, error) {
	src, _, err := warehouse.EnsureSource(ctx, db, herd.Source{Name: "default", Kind: herd.KindBrowser, WriteKey: key})
	if err != nil {
		return src, err
	}
	if key != "" && src.WriteKey != key {
		if _, err := db.Exec(ctx, "UPDATE herd.sources SET write_key = $1, revoked_at = NULL WHERE id = $2", key, src.ID); err != nil {
			return src, fmt.Errorf("set the default source's write key: %w", err)
		}
		src.WriteKey = key
	}
	return src, nil
}

// printUp prints what a newcomer needs once herd up runs. Nothing in it is
// a password: the private cluster's URL names its password file, and a
// URL given by the operator is shown with its password masked.
func printUp(e *env, f *upFlags, writeKey, host, dbURL string, private bool, ns *stream.Embedded, adm *adminListener, consoleURL string) {
	psql := fmt.Sprintf("psql %q", redact(dbURL))
	where := ""
	switch {
	case private:
		where = fmt.Sprintf("  postgres    password in %s (the psql line reads it through passfile=)\n", filepath.Join(f.dataDir, pgPassName))
	case hasUserinfo(dbURL) || redact(dbURL) != dbURL:
		// Never a URL with user info on the screen, even one redact would
		// not change: its parsing is the one thing that could go wrong.
		psql = `psql "$DATABASE_URL"`
		set := "psql reads the URL from $DATABASE_URL"
		if os.Getenv("DATABASE_URL") != dbURL {
			set = "set DATABASE_URL to the URL given to --database-url (or $HERD_DATABASE_URL) for the psql line"
		}
		where = fmt.Sprintf("  postgres    %s (password masked; %s)\n", redact(dbURL), set)
	}
	natsLine := ""
	if f.natsListen != "" {
		natsLine = fmt.Sprintf("  nats        nats://%s, token in %s (--nats-token-file)\n", ns.Server.Addr().String(), ns.TokenFile)
	}
	adminAddr := f.admin.listen
	if adm.ln != nil {
		adminAddr = dialAddr(adm.ln.Addr())
	}
	metricsNote := ""
	if adm.token != "" {
		metricsNote = " (Authorization: Bearer TOKEN, " + adm.token + ")"
	}
	if consoleURL != "" {
		natsLine += fmt.Sprintf("  console     %s (sign in with a login from herd analysts add)\n", consoleURL)
	}
	fmt.Fprintf(e.stdout, `
herd is running.

  write key   %s
  demo page   http://%s/demo
  send        curl -u %s: -H 'Content-Type: application/json' http://%s/v1/track -d '{"userId":"u1","event":"Signed Up"}'
  see events  %s -c 'select received_at, type, event, path from herd.events order by received_at desc limit 20'
%s%s  metrics     http://%s/metrics%s

Ctrl-C stops (requests in flight are answered, the writer commits what it holds).
`, writeKey, host, writeKey, host, psql, where, natsLine, adminAddr, metricsNote)
}

// privateDataDir makes sure herd up's data directory is its own: created
// 0700, refused when another user owns it or may write to it (they could
// have planted a NATS token or a pgpass they know), and closed to others
// when an older herd made it 0755. The lake and NATS directories in it are
// made 0700 too, so that the events in them stay private whatever the
// modes of the files below (the lake's are 0644).
func privateDataDir(e *env, dir string) error {
	if err := secrets.CheckDir(dir); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "lake"), filepath.Join(dir, "nats")} {
		if d != dir {
			if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("create %s: %w", d, err)
			}
			if err := secrets.CheckDir(d); err != nil {
				return err
			}
		}
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		// Others keep only the right to traverse the data directory itself:
		// run as root, the private Postgres runs as the postgres user, which
		// must reach DATA-DIR/pg (pgcluster grants it o+x).
		keep := os.FileMode(0o700)
		if d == dir && os.Geteuid() == 0 {
			keep = 0o711
		}
		if perm := st.Mode().Perm(); perm&^keep != 0 {
			if err := os.Chmod(d, perm&keep); err != nil {
				return fmt.Errorf("make %s private (chmod %#o): %w", d, perm&keep, err)
			}
			e.log.Info("closed a data directory to other users", "dir", d, "mode_was", fmt.Sprintf("%#o", perm), "mode", fmt.Sprintf("%#o", perm&keep))
		}
	}
	return nil
}

// hasUserinfo reports whether a connection URL names a user (and so maybe
// a password): postgres://user[:pass]@host.
func hasUserinfo(dbURL string) bool {
	_, rest, ok := strings.Cut(dbURL, "://")
	if !ok {
		return strings.Contains(dbURL, "=") // key=value: user=, password=
	}
	return strings.Contains(rest, "@")
}

// privatePostgres starts (creating on first use) a cluster under
// dataDir/pg whose superuser's password is kept in dataDir/pgpass, and
// returns the URL of its herd database. A cluster an older herd made with
// trust authentication gets its password now.
func privatePostgres(ctx context.Context, e *env, dataDir string) (*pgcluster.Cluster, string, error) {
	dir := filepath.Join(dataDir, "pg")
	portFile := filepath.Join(dataDir, "pg.port")
	port := 0
	if b, err := os.ReadFile(portFile); err == nil {
		port, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	c, err := pgcluster.New(dir, port)
	if err != nil {
		return nil, "", err
	}
	c.PassFile = filepath.Join(dataDir, pgPassName)
	if !c.Initialized() {
		e.log.Info("creating a private Postgres cluster", "dir", c.Dir, "password_file", c.PassFile)
		if err := c.Init(ctx); err != nil {
			return nil, "", err
		}
	}
	c.Logger = e.log
	if c.Running(ctx) {
		_ = c.Stop(ctx, "fast")
	}
	if trusting, err := c.Trusting(); err == nil && trusting {
		e.log.Warn("the private Postgres trusted every local user; setting a password before it listens on TCP", "dir", c.Dir, "password_file", c.PassFile)
	}
	// Start sets the password of a trusting cluster on a server without
	// TCP; Secure then checks that the password file is there.
	if err := c.Start(ctx); err != nil {
		return nil, "", err
	}
	if err := c.Secure(ctx); err != nil {
		_ = c.Stop(ctx, "fast")
		return nil, "", err
	}
	_ = os.WriteFile(portFile, []byte(strconv.Itoa(c.Port)), 0o600)
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		_ = c.Stop(ctx, "fast")
		return nil, "", fmt.Errorf("connect to the private Postgres in %s: %w", c.Dir, err)
	}
	defer conn.Close(ctx)
	var exists bool
	_ = conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'herd')").Scan(&exists)
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE herd"); err != nil {
			return nil, "", fmt.Errorf("create database herd: %w", err)
		}
	}
	e.log.Info("private Postgres running", "dir", c.Dir, "port", c.Port, "password_file", c.PassFile)
	return c, c.URL("herd"), nil
}
