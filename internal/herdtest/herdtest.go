// Package herdtest runs the whole event path inside a test: a real embedded
// JetStream server, a fresh database on the real Postgres server, migrations,
// a source, the writer and the collector on a free port.
package herdtest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/natstest"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/warehouse"
	"github.com/herdhq/herd/writer"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Options adjust the pipeline. The zero value runs everything.
type Options struct {
	Collector func(*collector.Config) // adjust the collector's configuration
	Writer    func(*writer.Config)
	NoWriter  bool // start without a writer (tests that run their own)
}

// Pipeline is a running event path.
type Pipeline struct {
	URL      string // collector base URL, http://127.0.0.1:port
	WriteKey string // the "web" source's key (browser)
	Source   herd.Source
	Server   herd.Source // a server-kind source
	DBURL    string
	DB       *pgxpool.Pool
	NATS     *natstest.Server
	Stream   stream.Config
	JS       jetstream.JetStream
	Registry *prometheus.Registry
	Log      *slog.Logger

	cancelWriter context.CancelFunc
	writerDone   chan struct{}
}

// Logger returns a logger that writes to the test log when -v is set.
func Logger(t testing.TB) *slog.Logger {
	if testing.Verbose() || os.Getenv("HERD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Start runs a pipeline until the test ends.
func Start(t testing.TB, opts Options) *Pipeline {
	t.Helper()
	p := &Pipeline{NATS: natstest.Run(t), Stream: natstest.StreamConfig(t), Registry: prometheus.NewRegistry(), Log: Logger(t)}
	p.DBURL = pgtest.New(t)
	p.DB = pgtest.Pool(t, p.DBURL)
	// Registered after the pool, so it runs before the pool closes: the
	// mirror's LISTEN connection must be released first.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := schemas.Migrate(ctx, p.DB); err != nil {
		t.Fatal(err)
	}
	var err error
	if p.Source, err = warehouse.CreateSource(ctx, p.DB, herd.Source{Name: "web", Kind: herd.KindBrowser}); err != nil {
		t.Fatal(err)
	}
	if p.Server, err = warehouse.CreateSource(ctx, p.DB, herd.Source{Name: "backend", Kind: herd.KindServer}); err != nil {
		t.Fatal(err)
	}
	p.WriteKey = p.Source.WriteKey
	p.JS = natstest.JetStream(t, p.NATS, p.Stream)
	kv, err := stream.SourcesKV(ctx, p.JS, p.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := warehouse.SyncSources(ctx, p.DB, kv); err != nil {
		t.Fatal(err)
	}
	go warehouse.MirrorSources(ctx, p.DB, kv, time.Second, p.Log) //nolint:errcheck

	if !opts.NoWriter {
		p.StartWriter(t, opts.Writer)
	}

	cfg := collector.Config{Stream: p.Stream, PublishTimeout: 2 * time.Second}
	if opts.Collector != nil {
		opts.Collector(&cfg)
	}
	c, err := collector.New(cfg, natstest.Connect(t, p.NATS), p.Log, p.Registry)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go c.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	p.URL = "http://" + ln.Addr().String()
	return p
}

// StartWriter runs a writer until StopWriter or the end of the test.
func (p *Pipeline) StartWriter(t testing.TB, adjust func(*writer.Config)) {
	t.Helper()
	cfg := writer.Config{Stream: p.Stream, Batch: writer.BatchPolicy{MaxWait: 10 * time.Millisecond}, RetryMin: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond}
	if adjust != nil {
		adjust(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancelWriter = cancel
	p.writerDone = make(chan struct{})
	w := writer.New(cfg, p.DB, p.JS, p.Log, nil)
	go func() {
		defer close(p.writerDone)
		if err := w.Run(ctx); err != nil {
			t.Errorf("writer: %v", err)
		}
	}()
	t.Cleanup(p.StopWriter)
}

// StopWriter stops the writer and waits for it to commit what it holds.
func (p *Pipeline) StopWriter() {
	if p.cancelWriter != nil {
		p.cancelWriter()
		<-p.writerDone
		p.cancelWriter = nil
	}
}

// WaitRows polls query (which must return one integer) until it equals want
// or timeout passes; it returns the last value seen.
func (p *Pipeline) WaitRows(t testing.TB, want int64, timeout time.Duration, query string, args ...any) int64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var n int64
	for {
		if err := p.DB.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		if n == want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}
