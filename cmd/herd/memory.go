package main

import (
	"context"
	"flag"
	"runtime/debug"
	"time"

	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/membudget"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/writer"
)

// memoryFlags is --memory-limit: one budget from which every buffer of the
// process is sized.
type memoryFlags struct {
	limit string
}

const memoryHelp = `--memory-limit is the resident memory the process is meant to stay under.
Every buffer is sized from it (embedded NATS's queues, the writer's batches and
pulls, the archiver's open lake files, the collector's decode room, bytes in
flight and connections), GOMEMLIMIT is set from it (unless the environment
sets GOMEMLIMIT), and when the live heap nears it the collector answers 503
with Retry-After rather than taking more. With embedded NATS (herd up) it
also sets the stream byte rate: JetStream keeps the blocks it wrote or read
in the last 10 s in memory, so 60 % of the budget's heap goes to those
caches and the collector puts at most that share ÷ 10 s of encoded events a
second on the stream (9.2 MiB/s at the default 224MiB, some 10,000 events
of 1 KB; 52 MiB/s at 1GiB); each browser source, whose key is public, gets
at most half of it unless --browser-byte-rate is given. Requests past the rate wait
up to a second, then get 503. The sizes are logged at start and
exported as herd_memory_budget_bytes{part} and
herd_memory_stream_rate_bytes_per_second.`

func (m *memoryFlags) bind(fs *flag.FlagSet, def string) {
	help := "memory budget of this process (e.g. 200MiB, 1GiB); every buffer is sized from it and GOMEMLIMIT set from it"
	if def == "" {
		help += " (empty: no budget, the buffers' own defaults)"
	} else {
		help += "; the default fits a 1 GB machine that also runs Postgres"
	}
	fs.StringVar(&m.limit, "memory-limit", def, help)
}

// memory is the budget a process runs under: nil when it has none.
type memory struct {
	sizes membudget.Sizes
	guard *membudget.Guard
}

// setup derives the sizes for parts, sets GOMEMLIMIT, logs the sizes in
// one line and registers their metrics. It returns nil without a budget.
func (m *memoryFlags) setup(e *env, a *admin, parts membudget.Parts) (*memory, error) {
	if m.limit == "" {
		return nil, nil
	}
	n, err := membudget.Parse(m.limit)
	if err != nil {
		return nil, usagef("--memory-limit: %v", err)
	}
	s, err := membudget.Derive(n, parts)
	if err != nil {
		return nil, usagef("--memory-limit: %v", err)
	}
	s.SetGoLimit(e.log)
	e.log.Info("memory budget", s.Attrs()...)
	mem := &memory{sizes: s, guard: membudget.NewGuard(s, a.reg)}
	a.mem = mem
	return mem, nil
}

// run samples the heap for the collector's back-pressure until ctx ends.
// Shortly after start it collects twice and returns what is free to the
// OS: starting leaves garbage (compressing the static files once, building
// the enrichment tables) that an idle process would otherwise carry until
// the runtime's two-minute collection.
func (m *memory) run(g *group) {
	if m == nil {
		return
	}
	g.Go("memory guard", func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(3 * time.Second):
		}
		debug.FreeOSMemory()
		debug.FreeOSMemory()
		return m.guard.Run(ctx)
	})
}

func (m *memory) nats() stream.Limits {
	if m == nil {
		return stream.Limits{}
	}
	return stream.Limits{MaxMemory: m.sizes.NATSMemory, StreamQueue: m.sizes.NATSStreamQueue, ClientPending: m.sizes.NATSClientPending}
}

// collector sizes the collector's buffers; byteRateGiven says whether
// --browser-byte-rate was given (the default is capped, a given one kept).
func (m *memory) collector(cfg *collector.Config, byteRateGiven bool) {
	if m == nil {
		return
	}
	cfg.Memory = m.guard
	cfg.DecodeBytes = m.sizes.CollectorDecode
	cfg.InFlightBytes = m.sizes.CollectorInFlight
	cfg.BodyBytes = m.sizes.CollectorBodies
	cfg.MaxConns = m.sizes.CollectorConns
	cfg.StreamByteRate = float64(m.sizes.StreamRate)
	// A browser source's key is public: by default it may take at most
	// half of the stream byte rate, so that one abused key cannot make
	// every other source wait or be refused.
	if half := cfg.StreamByteRate / 2; half > 0 && cfg.BrowserByteRate > half && !byteRateGiven {
		cfg.BrowserByteRate = half
	}
}

func (m *memory) writer(cfg *writer.Config) {
	if m == nil {
		return
	}
	cfg.Batch.MaxBytes = m.sizes.WriterBatch
}

func (m *memory) archiver(cfg *archive.Config) {
	if m == nil {
		return
	}
	cfg.FileMaxBytes = m.sizes.ArchiverFile
	cfg.BufferMaxBytes = m.sizes.ArchiverBuffer
	cfg.PullMaxBytes = m.sizes.ArchiverPull
	cfg.FileMaxRows = m.sizes.ArchiverFileRows
	cfg.MaxPending = m.sizes.ArchiverPending
}
