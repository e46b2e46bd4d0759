package chaos

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Binaries are built once per test binary run, into binDir.
var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds herd and natsnode from this checkout, so the suite tests
// the code under test and needs no installed nats-server. HERD_CHAOS_BIN
// names a herd binary to test instead (a release build, say).
func binaries(t *testing.T) (herdBin, natsBin string) {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "herd-chaos-bin-"); binErr != nil {
			return
		}
		for _, b := range []struct{ out, pkg string }{
			{"herd", "github.com/herdhq/herd/cmd/herd"},
			{"natsnode", "github.com/herdhq/herd/chaos/cmd/natsnode"},
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b.out), b.pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build %s: %w: %s", b.pkg, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	herdBin = filepath.Join(binDir, "herd")
	if b := os.Getenv("HERD_CHAOS_BIN"); b != "" {
		herdBin = b
	}
	return herdBin, filepath.Join(binDir, "natsnode")
}

// privatePostgres starts a Postgres cluster of the suite's own in a
// temporary directory: the suite stops and restarts it, so it must never be
// a server anyone else uses.
func privatePostgres(t *testing.T) *pgcluster.Cluster {
	t.Helper()
	if _, err := pgcluster.FindBinDir(); err != nil {
		t.Skipf("chaos suite needs PostgreSQL server binaries: %v", err)
	}
	dir, err := os.MkdirTemp("", "herd-chaos-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c, err := pgcluster.New(filepath.Join(dir, "data"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// fsync off is safe here: the faults kill processes, not the machine, so
	// whatever reached the kernel survives, and the shared CI box is spared
	// the flushes. An immediate stop still loses what was only in shared
	// memory, which is the part of a crash the suite exercises.
	c.Config = map[string]string{"fsync": "off", "max_connections": "200", "shared_buffers": "32MB"}
	ctx := context.Background()
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c.Running(sctx) {
			_ = c.Stop(sctx, "immediate")
		}
	})
	return c
}

// labConfig shapes one scenario's deployment.
type labConfig struct {
	natsNodes      int   // 1: standalone server; 3: a JetStream cluster
	replicas       int   // stream replicas
	collectors     int   // herd collect processes
	writers        int   // herd write processes sharing the durable consumer
	streamMaxBytes int64 // 0: herd's default
}

// lab is one scenario's deployment: its own database on the shared private
// Postgres, its own NATS server(s) and herd processes, all on 127.0.0.1.
type lab struct {
	t          *testing.T
	dir        string
	herdBin    string
	pg         *pgcluster.Cluster
	dbURL      string
	db         *pgxpool.Pool
	nats       []*proc
	natsURLs   []string
	collectors []*proc
	collURLs   []string
	writers    []*proc
	writerAdm  []string
	writeKey   string
	sourceID   int64
	streamArgs []string
}

var labSeq atomic.Int64

func newLab(t *testing.T, pg *pgcluster.Cluster, cfg labConfig) *lab {
	t.Helper()
	herdBin, natsBin := binaries(t)
	n := labSeq.Add(1)
	l := &lab{t: t, dir: t.TempDir(), herdBin: herdBin, pg: pg}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Cleanup runs in reverse order of registration; this one is registered
	// first so that it runs last, after every process is gone.
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range l.all() {
				t.Logf("log of %s (tail):\n%s", p.name, p.tail(3000))
			}
		}
	})
	t.Cleanup(func() {
		for _, p := range l.all() {
			_ = p.kill()
		}
	})

	dbName := fmt.Sprintf("chaos_%d", n)
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{dbName}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", dbName, err)
	}
	conn.Close(ctx)
	l.dbURL = pg.URL(dbName)
	l.writeKey = fmt.Sprintf("chaos-key-%d", n)
	l.herd(ctx, "migrate", "--database-url", l.dbURL)
	l.herd(ctx, "sources", "create", "chaos", "--kind", "server", "--write-key", l.writeKey, "--database-url", l.dbURL)
	if l.db, err = pgxpool.New(ctx, l.dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.db.Close)
	if err := l.db.QueryRow(ctx, "SELECT id FROM herd.sources WHERE name = 'chaos'").Scan(&l.sourceID); err != nil {
		t.Fatalf("read the chaos source: %v", err)
	}

	// NATS: every member knows the route ports of the others up front, so a
	// restarted member rejoins with the same command line.
	clientPorts := make([]int, cfg.natsNodes)
	routePorts := make([]int, cfg.natsNodes)
	for i := range cfg.natsNodes {
		clientPorts[i], routePorts[i] = freePort(t), freePort(t)
		l.natsURLs = append(l.natsURLs, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	for i := range cfg.natsNodes {
		args := []string{"-name", fmt.Sprintf("n%d", i+1), "-port", strconv.Itoa(clientPorts[i]), "-store", filepath.Join(l.dir, fmt.Sprintf("nats-%d", i+1))}
		if cfg.natsNodes > 1 {
			var routes []string
			for j := range cfg.natsNodes {
				if j != i {
					routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[j]))
				}
			}
			args = append(args, "-cluster", "chaos", "-cluster-port", strconv.Itoa(routePorts[i]), "-routes", strings.Join(routes, ","))
		}
		p := &proc{name: fmt.Sprintf("nats-%d", i+1), bin: natsBin, args: args, log: filepath.Join(l.dir, fmt.Sprintf("nats-%d.log", i+1))}
		l.nats = append(l.nats, p)
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range l.nats {
		if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", clientPorts[i]), 30*time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", l.nats[i].name, err, l.nats[i].tail(2000))
		}
	}

	if cfg.replicas > 0 {
		l.streamArgs = append(l.streamArgs, "--stream-replicas", strconv.Itoa(cfg.replicas))
	}
	// herd's default limit (10 GiB) is more than a test server reserves for
	// JetStream; a small explicit limit is what operators of small machines
	// set too.
	if cfg.streamMaxBytes == 0 {
		cfg.streamMaxBytes = 256 << 20
	}
	l.streamArgs = append(l.streamArgs, "--stream-max-bytes", strconv.FormatInt(cfg.streamMaxBytes, 10))
	natsURL := strings.Join(l.natsURLs, ",")

	// Writers first: they mirror the sources table into NATS, which the
	// collectors need before they accept the write key.
	for i := range cfg.writers {
		adm := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		args := append([]string{"write", "--nats-url", natsURL, "--database-url", l.dbURL, "--admin-listen", adm, "--batch-wait", "10ms", "--batch-events", "500", "--ack-wait", "3s"}, l.streamArgs...)
		p := &proc{name: fmt.Sprintf("writer-%d", i+1), bin: herdBin, args: args, log: filepath.Join(l.dir, fmt.Sprintf("writer-%d.log", i+1))}
		l.writers = append(l.writers, p)
		l.writerAdm = append(l.writerAdm, adm)
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range l.writers {
		l.waitWriter(i)
	}
	for i := range cfg.collectors {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		adm := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		args := append([]string{"collect", "--nats-url", natsURL, "--listen", addr, "--admin-listen", adm, "--publish-timeout", "2s"}, l.streamArgs...)
		p := &proc{name: fmt.Sprintf("collector-%d", i+1), bin: herdBin, args: args, log: filepath.Join(l.dir, fmt.Sprintf("collector-%d.log", i+1))}
		l.collectors = append(l.collectors, p)
		l.collURLs = append(l.collURLs, "http://"+addr)
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range l.collectors {
		l.waitCollector(i)
	}
	return l
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (l *lab) all() []*proc {
	var ps []*proc
	ps = append(ps, l.collectors...)
	ps = append(ps, l.writers...)
	ps = append(ps, l.nats...)
	return ps
}

// herd runs a one-shot herd command and fails the test if it fails.
func (l *lab) herd(ctx context.Context, args ...string) string {
	l.t.Helper()
	cmd := exec.CommandContext(ctx, l.herdBin, args...)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("herd %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitWriter waits until writer i answers ready (Postgres reachable).
func (l *lab) waitWriter(i int) {
	l.t.Helper()
	l.waitHTTP(l.writers[i], "http://"+l.writerAdm[i]+"/readyz", 60*time.Second)
}

// waitCollector waits until collector i knows the write key, which is when
// it would accept events.
func (l *lab) waitCollector(i int) {
	l.t.Helper()
	l.waitHTTP(l.collectors[i], l.collURLs[i]+"/v1/projects/"+l.writeKey+"/settings", 60*time.Second)
}

func (l *lab) waitHTTP(p *proc, url string, timeout time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if !p.running() {
			l.t.Fatalf("%s exited while waiting for %s: %v\n%s", p.name, url, p.exitErr(), p.tail(3000))
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s not ready at %s after %v (last error %v)\n%s", p.name, url, timeout, err, p.tail(3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restart SIGKILLs p and starts it again with the same command line.
func (l *lab) crash(p *proc) {
	l.t.Helper()
	if err := p.kill(); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lab) start(p *proc) {
	l.t.Helper()
	if err := p.start(); err != nil {
		l.t.Fatal(err)
	}
}

// requireAlive fails unless every herd process is still running: the
// faults must be survived, not ended by a process giving up.
func (l *lab) requireAlive(ps ...*proc) {
	l.t.Helper()
	for _, p := range ps {
		if !p.running() {
			l.t.Fatalf("%s exited on its own (%v); it must ride out the fault:\n%s", p.name, p.exitErr(), p.tail(3000))
		}
	}
}

// consumerBacklog is the durable consumer's view of the stream: messages not
// yet delivered and messages delivered but not acknowledged.
func (l *lab) consumerBacklog(ctx context.Context) (pending uint64, ackPending int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nc, err := nats.Connect(strings.Join(l.liveNATS(), ","), nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, err
	}
	c, err := js.Consumer(ctx, "HERD_EVENTS", "herd-writer")
	if err != nil {
		return 0, 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return info.NumPending, info.NumAckPending, nil
}

// streamState describes the stream and the writers' consumer, for failure
// messages.
func (l *lab) streamState() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := nats.Connect(strings.Join(l.liveNATS(), ","), nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return err.Error()
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	if s, err := js.Stream(ctx, "HERD_EVENTS"); err != nil {
		fmt.Fprintf(&b, "stream: %v; ", err)
	} else {
		si := s.CachedInfo()
		fmt.Fprintf(&b, "stream msgs=%d bytes=%d max_bytes=%d first_seq=%d last_seq=%d", si.State.Msgs, si.State.Bytes, si.Config.MaxBytes, si.State.FirstSeq, si.State.LastSeq)
		if si.Cluster != nil {
			fmt.Fprintf(&b, " leader=%s", si.Cluster.Leader)
		}
		b.WriteString("; ")
	}
	if c, err := js.Consumer(ctx, "HERD_EVENTS", "herd-writer"); err != nil {
		fmt.Fprintf(&b, "consumer: %v", err)
	} else {
		ci := c.CachedInfo()
		fmt.Fprintf(&b, "consumer pending=%d ack_pending=%d ack_floor=%d delivered=%d waiting=%d", ci.NumPending, ci.NumAckPending, ci.AckFloor.Stream, ci.Delivered.Stream, ci.NumWaiting)
		if ci.Cluster != nil {
			fmt.Fprintf(&b, " leader=%s", ci.Cluster.Leader)
		}
	}
	return b.String()
}

// liveNATS lists the URLs of the NATS members that are running.
func (l *lab) liveNATS() []string {
	var urls []string
	for i, p := range l.nats {
		if p.running() {
			urls = append(urls, l.natsURLs[i])
		}
	}
	return urls
}
