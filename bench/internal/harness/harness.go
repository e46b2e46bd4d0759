// Package harness is the end-to-end benchmark behind `make bench`: it starts
// herd against a private Postgres cluster, drives it with the load generator
// in a separate process, measures the same figures for the ceilings (raw COPY)
// and the baseline (one INSERT per event), and reports them side by side.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/bench/internal/load"
	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/herdhq/herd/internal/secrets"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/warehouse"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options shape a run. The zero value, after defaults, is the full run.
type Options struct {
	// WorkDir holds the cluster, herd's data, binaries and logs; default a
	// temporary directory removed at the end (unless Keep).
	WorkDir string
	Keep    bool
	// BinDir holds prebuilt herd, loadgen and naive binaries; default: built
	// from ModuleDir into WorkDir/bin.
	BinDir    string
	ModuleDir string

	Backlog int // events published to the stream before the writer starts
	// BacklogFrame is how many events share one stream message of the
	// backlog, as the collector packs concurrent requests; default 16.
	BacklogFrame int
	Phase        time.Duration // length of each load phase
	Rates        []float64     // open-loop offered rates, events/s

	SingleConns int // closed loop, single-event requests
	BatchConns  int // closed loop, 50-event batches
	OpenConns   int // open loop: most connections
	BatchSize   int // events per batch request; default 50
	NaiveConns  int // Postgres connections of the naive baseline

	// The writer's settings; default herd's own: 2 writers, batches of
	// 2,000 events or 25ms.
	Writers     int           // herd --writers
	BatchEvents int           // herd --batch-events
	BatchWait   time.Duration // herd --batch-wait

	// ProfileDir, when set, receives CPU profiles of herd under each load.
	ProfileDir string

	// OnlyCgroup runs the cgroup phase alone: a small backlog drained,
	// then the batch closed loop against herd up under a 512 MB cgroup
	// limit, and the check that nothing accepted was lost.
	OnlyCgroup bool

	Log *slog.Logger
}

// Quick returns options for a run of about two minutes.
func Quick() Options {
	return Options{Backlog: 100_000, Phase: 4 * time.Second}
}

func (o *Options) defaults() {
	if o.Backlog <= 0 {
		o.Backlog = 500_000
	}
	if o.BacklogFrame <= 0 {
		o.BacklogFrame = 16
	}
	if o.Phase <= 0 {
		o.Phase = 8 * time.Second
	}
	if len(o.Rates) == 0 {
		o.Rates = []float64{5000, 10000, 20000}
	}
	if o.SingleConns <= 0 {
		o.SingleConns = 64
	}
	if o.BatchConns <= 0 {
		o.BatchConns = 16
	}
	if o.OpenConns <= 0 {
		o.OpenConns = 256
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 50
	}
	if o.NaiveConns <= 0 {
		o.NaiveConns = 16
	}
	if o.Writers <= 0 {
		o.Writers = 2
	}
	if o.BatchEvents <= 0 {
		o.BatchEvents = 2000
	}
	if o.BatchWait <= 0 {
		o.BatchWait = 25 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
}

// writeKey is the default source's key in the benchmark's warehouse.
const writeKey = "herdbench-write-key"

// bench is one run's state.
type bench struct {
	o        Options
	log      *slog.Logger
	bin      string
	logs     string
	cluster  *pgcluster.Cluster
	herdURL  string // warehouse database
	naiveURL string
	sourceID int64
	pgPID    int
	runID    string

	herd      *child
	starts    int    // herd up processes started
	enrich    bool   // whether the running herd up enriches
	collector string // http://host:port
	adminURL  string
	natsAddr  string // herd up's embedded NATS, for a separate collector
	// vacuumedRows is how many rows the writers had stored at the last
	// vacuum between phases.
	vacuumedRows float64
	// accepted counts events accepted by collectors other than the running
	// herd up's (herd collect, and herd up processes stopped since), and
	// priorRows the rows written by herd up processes stopped since.
	accepted, priorRows float64
	// wrap is a command the next start runs the program under
	// (systemd-run), and afterStart what is done with its pid at once (put
	// in a cgroup): both for the cgroup phase (memory.go).
	wrap       []string
	afterStart func(pid int) error

	rep *Report
}

// Run performs the whole benchmark and returns its report.
func Run(ctx context.Context, o Options) (_ *Report, err error) {
	o.defaults()
	b := &bench{o: o, log: o.Log, runID: strconv.FormatInt(time.Now().Unix()%1e6, 36)}
	b.rep = newReport(o)
	if b.o.WorkDir == "" {
		dir, err := os.MkdirTemp("", "herdbench-")
		if err != nil {
			return nil, fmt.Errorf("create a work directory: %w", err)
		}
		b.o.WorkDir = dir
		if !o.Keep {
			defer os.RemoveAll(dir)
		}
	}
	b.logs = filepath.Join(b.o.WorkDir, "logs")
	if err := os.MkdirAll(b.logs, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", b.logs, err)
	}
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("create profile directory %s: %w", o.ProfileDir, err)
		}
	}
	if err := b.build(ctx); err != nil {
		return nil, err
	}
	if err := b.startPostgres(ctx); err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if serr := b.cluster.Stop(sctx, "fast"); serr != nil {
			b.log.Warn("stop the benchmark's Postgres", "err", serr)
		}
	}()
	if err := b.publishBacklog(ctx); err != nil {
		return nil, err
	}
	// The herd up that drains the backlog runs without enrichment, which
	// only the collector does: the drain exercises the writer alone. The
	// same process then takes the first half of the enrichment-off closed
	// loops.
	if err := b.startHerd(ctx, false); err != nil {
		return nil, err
	}
	defer func() { b.herd.stop() }()
	if err := b.drain(ctx); err != nil {
		return nil, err
	}
	// herd up's archiver archives the same backlog into the lake, standing
	// aside while the writer is far behind; the ceiling is measured once it
	// has everything.
	if o.OnlyCgroup {
		if err := b.cgroupPhase(ctx); err != nil {
			return nil, err
		}
		lost, err := b.verify(ctx)
		if err != nil {
			return nil, err
		}
		b.rep.finish()
		return b.rep, lost
	}
	b.settle(ctx, 2*time.Minute)
	if err := b.rawCopy(ctx); err != nil {
		return nil, err
	}
	if err := b.herdPhases(ctx); err != nil {
		return nil, err
	}
	lost, err := b.verify(ctx)
	if err != nil {
		return nil, err
	}
	b.herd.stop()
	if err := b.naivePhases(ctx); err != nil {
		return nil, err
	}
	b.rep.finish()
	// A run that lost or duplicated events still reports, and fails.
	return b.rep, lost
}

// ErrLost is returned, with the report, when the rows in Postgres differ
// from the events herd accepted.
var ErrLost = errors.New("the rows in Postgres differ from the events herd accepted")

// build compiles the three programs the run starts, unless given.
func (b *bench) build(ctx context.Context) error {
	if b.o.BinDir != "" {
		b.bin = b.o.BinDir
		return nil
	}
	b.bin = filepath.Join(b.o.WorkDir, "bin")
	mod := b.o.ModuleDir
	if mod == "" {
		out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
			return fmt.Errorf("find the herd module to build (run from inside it or pass --bin-dir): %v", err)
		}
		mod = filepath.Dir(strings.TrimSpace(string(out)))
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.bin+"/", "./cmd/herd", "./bench/cmd/loadgen", "./bench/cmd/naive")
	cmd.Dir = mod
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build herd, loadgen and naive in %s: %w\n%s", mod, err, out)
	}
	b.log.Info("built", "dir", b.bin, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// startPostgres creates the private cluster with the warehouse and the
// baseline's database, and the default source.
func (b *bench) startPostgres(ctx context.Context) error {
	c, err := pgcluster.New(filepath.Join(b.o.WorkDir, "pg"), 0)
	if err != nil {
		return err
	}
	// Room for the backlog's WAL without a checkpoint storm in the middle of
	// a measurement, and no autovacuum: the phases insert millions of rows,
	// and a vacuum of the ledger's index starting inside one phase took up to
	// a core from it and not from the next. herdbench vacuums between phases
	// instead (settle). Otherwise the server's defaults, durable commits
	// included.
	c.Config = map[string]string{
		"shared_buffers":     "512MB",
		"max_wal_size":       "8GB",
		"checkpoint_timeout": "30min",
		"max_connections":    "200",
		"autovacuum":         "off",
	}
	if err := c.Init(ctx); err != nil {
		return err
	}
	// Init, run as root, widens the data directory to 0711 while making its
	// parents traversable, and the server refuses to start on it.
	if err := os.Chmod(c.Dir, 0o700); err != nil {
		return fmt.Errorf("restrict %s to its owner: %w", c.Dir, err)
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	b.cluster = c
	if b.pgPID, err = postmasterPID(c.Dir); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to the benchmark's Postgres on port %d: %w", c.Port, err)
	}
	defer conn.Close(ctx)
	for _, db := range []string{"herd", "naive"} {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			return fmt.Errorf("create database %s: %w", db, err)
		}
	}
	_ = conn.QueryRow(ctx, "SELECT version()").Scan(&b.rep.Machine.Postgres)
	b.herdURL, b.naiveURL = c.URL("herd"), c.URL("naive")
	db, err := warehouse.Open(ctx, b.herdURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := schemas.Migrate(ctx, db); err != nil {
		return err
	}
	src, _, err := warehouse.EnsureSource(ctx, db, herd.Source{Name: "default", Kind: herd.KindBrowser, WriteKey: writeKey})
	if err != nil {
		return err
	}
	b.sourceID = src.ID
	b.log.Info("private Postgres running", "port", c.Port, "dir", c.Dir)
	return nil
}

// child is a process the run started.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// start runs the program bin under the name its log takes.
func (b *bench) start(ctx context.Context, name, bin string, args ...string) (*child, error) {
	logf, err := os.Create(filepath.Join(b.logs, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(b.bin, bin), args...)
	if len(b.wrap) > 0 {
		cmd = exec.Command(b.wrap[0], append(append(b.wrap[1:], "--", filepath.Join(b.bin, bin)), args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if b.afterStart != nil {
		if err := b.afterStart(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logf.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop asks the process to finish (SIGTERM), then kills it after 15s.
func (c *child) stop() {
	if c == nil || c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// waitReady polls url until it answers 200.
func waitReady(ctx context.Context, c *child, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if c.exited() {
			return fmt.Errorf("%s exited before it was ready (%v); see its log", c.name, c.err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s within %s", c.name, url, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitListening waits until addr accepts TCP connections.
func waitListening(ctx context.Context, c *child, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if c.exited() {
			return fmt.Errorf("%s exited before it was ready (%v); see its log", c.name, c.err)
		}
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s within %s", c.name, addr, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func freeAddr() (string, error) {
	p, err := pgcluster.FreePort()
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}

// natsTokenFile is where herd up keeps its embedded NATS server's token
// (the data directory's nats.token): herd up --nats-listen requires it of
// every client.
func (b *bench) natsTokenFile() string {
	return filepath.Join(b.o.WorkDir, "herd", "nats.token")
}

// startHerd starts `herd up` on the warehouse, with embedded NATS on the
// data directory the backlog was published into, with or without the
// collector's enrichment.
func (b *bench) startHerd(ctx context.Context, enrich bool) error {
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	admin, err := freeAddr()
	if err != nil {
		return err
	}
	if b.natsAddr, err = freeAddr(); err != nil {
		return err
	}
	b.collector, b.adminURL = "http://"+listen, "http://"+admin
	b.starts++
	b.enrich = enrich
	b.herd, err = b.start(ctx, "herd-"+strconv.Itoa(b.starts), "herd", "up",
		"--listen", listen, "--admin-listen", admin, "--nats-listen", b.natsAddr,
		"--data-dir", filepath.Join(b.o.WorkDir, "herd"),
		"--database-url", b.herdURL, "--write-key", writeKey,
		"--enrich="+strconv.FormatBool(enrich),
		// The benchmark measures throughput through one browser source.
		"--browser-byte-rate", "0",
		"--writers", strconv.Itoa(b.o.Writers), "--batch-events", strconv.Itoa(b.o.BatchEvents),
		"--batch-wait", b.o.BatchWait.String())
	return err
}

// restartHerd stops herd up once the writer has stored everything its
// collector accepted, and starts it again with or without enrichment.
func (b *bench) restartHerd(ctx context.Context, enrich bool) error {
	start := time.Now()
	b.settle(ctx, 60*time.Second)
	v, err := metrics(ctx, b.adminURL, acceptedMetric, rowsMetric)
	if err != nil {
		return err
	}
	b.herd.stop()
	b.accepted += v[0]
	b.priorRows += v[1]
	if err := b.startHerd(ctx, enrich); err != nil {
		return err
	}
	if err := waitReady(ctx, b.herd, b.adminURL+"/readyz", time.Minute); err != nil {
		return err
	}
	if err := waitListening(ctx, b.herd, strings.TrimPrefix(b.collector, "http://"), time.Minute); err != nil {
		return err
	}
	b.log.Info("herd up restarted", "enrich", enrich, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// metric reads one sample of herd's /metrics: the first line starting with
// prefix (the name and, in braces, the labels in the order Prometheus
// prints them).
func (b *bench) metric(ctx context.Context, prefix string) (float64, error) {
	return metric(ctx, b.adminURL, prefix)
}

func metric(ctx context.Context, adminURL, prefix string) (float64, error) {
	v, err := metrics(ctx, adminURL, prefix)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// metrics reads several samples from one fetch of /metrics, as metric
// does; a sample that is absent reads 0.
func metrics(ctx context.Context, adminURL string, prefixes ...string) ([]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read herd's metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read herd's metrics: %w", err)
	}
	v := make([]float64, len(prefixes))
	found := make([]bool, len(prefixes))
	for line := range bytes.Lines(body) {
		for i, prefix := range prefixes {
			if rest, ok := bytes.CutPrefix(line, []byte(prefix)); ok && !found[i] && (len(rest) == 0 || rest[0] == ' ') {
				if v[i], err = strconv.ParseFloat(strings.TrimSpace(string(rest)), 64); err != nil {
					return nil, err
				}
				found[i] = true
			}
		}
	}
	return v, nil
}

const (
	frameSumMetric   = `herd_collector_frame_events_sum`
	frameCountMetric = `herd_collector_frame_events_count`
	rowsMetric       = `herd_writer_rows_total{table="events"}`
	yieldingMetric   = `herd_archive_yielding`
	acceptedMetric   = `herd_collector_events_total{reason="",result="accepted"}`
)

// settle waits until the writer has stored every event the collector
// accepted, and the archiver has been delivered every message, so that one
// phase's backlog does not slow the next. (What the archiver holds in open
// files it writes when they fill, at its own pace, as in production.)
func (b *bench) settle(ctx context.Context, timeout time.Duration) {
	start := time.Now()
	deadline := start.Add(timeout)
	writer := false
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !writer {
			v, err := metrics(ctx, b.adminURL, rowsMetric, acceptedMetric)
			writer = err == nil && b.priorRows+v[0] >= v[1]+b.accepted+float64(b.o.Backlog)
		}
		if writer {
			pending, err := b.archiverPending(ctx)
			if err == nil && pending == 0 {
				b.log.Info("writer and archiver caught up", "took", time.Since(start).Round(time.Millisecond))
				b.vacuumBetween(ctx)
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.log.Warn("writer or archiver did not catch up before the next phase", "waited", timeout, "writer_caught_up", writer)
}

// vacuumBetween does, between two phases, what autovacuum would do during
// them (it is off): VACUUM (ANALYZE) of the tables the phases fill, when
// rows were added since the last one.
func (b *bench) vacuumBetween(ctx context.Context) {
	start := time.Now()
	rows, err := b.metric(ctx, rowsMetric)
	if err == nil && b.priorRows+rows == b.vacuumedRows {
		return
	}
	b.vacuumedRows = b.priorRows + rows
	conn, err := pgx.Connect(ctx, b.herdURL)
	if err != nil {
		b.log.Warn("vacuum between phases", "err", err)
		return
	}
	_, err = conn.Exec(ctx, "VACUUM (ANALYZE) herd.events, herd.message_ids")
	closeAndReap(ctx, conn)
	if err != nil {
		b.log.Warn("vacuum between phases", "err", err)
		return
	}
	b.rep.VacuumBetweenS += time.Since(start).Seconds()
}

// closeAndReap closes conn and waits until the server has reaped its
// backend: an exited backend's CPU time reaches the server's child times only
// then, and would otherwise count in the next phase's "Postgres beside it".
func closeAndReap(ctx context.Context, conn *pgx.Conn) {
	pid := conn.PgConn().PID()
	conn.Close(ctx)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			return
		}
	}
}

// archiverPending is how many stream messages herd's archiver has yet to
// be delivered.
func (b *bench) archiverPending(ctx context.Context) (uint64, error) {
	tok, err := secrets.Read(b.natsTokenFile())
	if err != nil {
		return 0, fmt.Errorf("herd's NATS token: %w", err)
	}
	nc, err := nats.Connect("nats://"+b.natsAddr, nats.Timeout(2*time.Second), nats.Token(tok))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	var sc stream.Config
	sc.Defaults()
	c, err := js.Consumer(ctx, sc.Name, "herd-archiver")
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending, nil
}

// profile fetches a CPU profile of the herd process serving admin over the
// next seconds into the profile directory, in the background; the returned
// channel closes when done.
func (b *bench) profile(ctx context.Context, admin, name string, seconds int) <-chan struct{} {
	done := make(chan struct{})
	if b.o.ProfileDir == "" {
		close(done)
		return done
	}
	seconds = max(seconds, 1)
	go func() {
		defer close(done)
		path := filepath.Join(b.o.ProfileDir, "herd-"+name+".pprof")
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, seconds), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.log.Warn("fetch CPU profile", "phase", name, "err", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(path)
		if err != nil {
			b.log.Warn("write CPU profile", "path", path, "err", err)
			return
		}
		defer f.Close()
		if _, err := io.Copy(f, resp.Body); err != nil {
			b.log.Warn("write CPU profile", "path", path, "err", err)
			return
		}
		b.rep.Profiles = append(b.rep.Profiles, path)
	}()
	return done
}

// meter measures a phase's CPU and memory of the process under test and of
// Postgres.
type meter struct {
	pid, pgPID     int
	start          time.Time
	cpu0, pgCPU0   float64
	loadgenCPUSecs float64
}

func (b *bench) startMeter(pid int) *meter {
	if err := resetPeakRSS(pid); err != nil {
		b.log.Warn("reset peak RSS; the figure covers the process's whole life", "pid", pid, "err", err)
	}
	return &meter{pid: pid, pgPID: b.pgPID, start: time.Now(), cpu0: processCPU(pid), pgCPU0: treeCPU(b.pgPID)}
}

func (m *meter) stop(p *Phase) {
	wall := time.Since(m.start).Seconds()
	p.WallS = wall
	p.CPUSeconds = processCPU(m.pid) - m.cpu0
	p.Cores = p.CPUSeconds / wall
	p.PostgresCPUSeconds = treeCPU(m.pgPID) - m.pgCPU0
	p.PostgresCores = p.PostgresCPUSeconds / wall
	if rss, err := peakRSS(m.pid); err == nil {
		p.PeakRSSMB = float64(rss) / (1 << 20)
	}
}

// loadgen runs the load generator as its own process and returns its result
// and the CPU it used.
func (b *bench) loadgen(ctx context.Context, name string, dur time.Duration, args ...string) (*load.Result, float64, error) {
	ctx, cancel := context.WithTimeout(ctx, dur+2*time.Minute)
	defer cancel()
	logf, err := os.Create(filepath.Join(b.logs, "loadgen-"+name+".log"))
	if err != nil {
		return nil, 0, err
	}
	defer logf.Close()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(b.bin, "loadgen"), args...)
	cmd.Stdout, cmd.Stderr = &out, logf
	if err := cmd.Run(); err != nil {
		return nil, 0, fmt.Errorf("load generator, phase %s (%s): %w; see %s", name, strings.Join(args, " "), err, logf.Name())
	}
	var res load.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, 0, fmt.Errorf("load generator, phase %s: read its result: %w", name, err)
	}
	if res.Failed > 0 {
		b.log.Warn("requests failed", "phase", name, "failed", res.Failed, "status", res.Status, "first", res.FirstError)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return &res, cpu.Seconds(), nil
}

// verify checks that every accepted event reached Postgres exactly once.
// verify counts herd.events against the events accepted. The first error
// is ErrLost when they differ; the second, when counting failed.
func (b *bench) verify(ctx context.Context) (lost, err error) {
	b.settle(ctx, 60*time.Second)
	acc, err := b.metric(ctx, acceptedMetric)
	if err != nil {
		return nil, err
	}
	db, err := pgxpool.New(ctx, b.herdURL)
	if err != nil {
		return nil, fmt.Errorf("connect to the warehouse: %w", err)
	}
	defer db.Close()
	var rows, distinct int64
	if err := db.QueryRow(ctx, "SELECT count(*), count(DISTINCT message_id) FROM herd.events").Scan(&rows, &distinct); err != nil {
		return nil, fmt.Errorf("count herd.events: %w", err)
	}
	want := int64(acc+b.accepted) + int64(b.o.Backlog)
	b.rep.Check = Check{Accepted: want, Rows: rows, Distinct: distinct}
	if rows != want || distinct != rows {
		b.log.Error("rows in Postgres differ from the events accepted", "accepted", want, "rows", rows, "distinct", distinct)
		return fmt.Errorf("%w: %d accepted, %d rows, %d distinct", ErrLost, want, rows, distinct), nil
	}
	return nil, nil
}
