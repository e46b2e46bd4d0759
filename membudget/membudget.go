// Package membudget divides one memory budget (--memory-limit) among herd's
// buffers, sets the Go runtime's soft limit from it, and samples the live
// heap cheaply so that the collector can refuse work before the budget is
// spent rather than after the kernel has killed the process.
package membudget

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultLimit is herd up's budget: a 1 GB machine that also runs Postgres
// (shared_buffers 128 MB and a few backends of 10–20 MB each, the kernel
// and its page cache for both) has about 250 MB to spare for herd, and
// 224 MiB (235 MB) leaves a margin under that. The budget trades
// throughput for size (it sets the stream byte rate): 200 MiB left the
// bench's 10,000 events/s at the edge of the rate.
const DefaultLimit = 224 << 20

// MinLimit is the smallest budget herd runs in: below it the fixed part
// (the binary's resident text, the runtime, the goroutines of an idle
// pipeline) leaves no room for buffers.
const MinLimit = 96 << 20

// Parts says which components share the budget in this process.
type Parts struct {
	Collector, Writer, Archiver, NATS bool
}

// All is herd up: everything in one process.
var All = Parts{Collector: true, Writer: true, Archiver: true, NATS: true}

// Sizes are the bounds derived from one budget. Every byte count is an upper
// bound on what that buffer holds; zero means the part is not in this
// process.
type Sizes struct {
	// Limit is the whole budget: the resident memory the process is meant
	// to stay under.
	Limit int64
	// Reserve is what is kept aside for memory the Go runtime does not
	// count (the binary's resident text and data, thread stacks outside
	// Go's, the kernel's bookkeeping): Limit − Reserve is GoLimit.
	Reserve int64
	// GoLimit is the runtime's soft limit (GOMEMLIMIT): the garbage
	// collector works harder as the heap nears it.
	GoLimit int64
	// HeapHigh is the live heap (as of the last collection) past which
	// the collector answers 503: 85 % of GoLimit, leaving the collector
	// room to finish what it holds without the runtime collecting
	// continuously.
	HeapHigh int64

	// Collector: bytes of request bodies being decompressed and decoded at
	// once (each of the public and the server pools), bytes of request
	// bodies admitted and not yet answered (they wait for JetStream's
	// acknowledgement holding their body), and connections served at once.
	// CollectorBodies bounds the bodies being read and held until
	// answered: the bodies in flight are among them, so the two overlap.
	CollectorDecode   int64
	CollectorInFlight int64
	CollectorBodies   int64
	CollectorConns    int

	// Writer: bytes of stream messages in one batch, and bytes a pull may
	// have outstanding (two batches' worth).
	WriterBatch int
	WriterPull  int

	// Archiver: event bytes in one open lake file (a file is rolled when it
	// reaches them), event bytes in all open files, and bytes a pull may
	// have outstanding.
	ArchiverFile   int
	ArchiverBuffer int
	ArchiverPull   int
	// ArchiverFileRows is the events a lake file rolls at, and
	// ArchiverPending the consumer's MaxAckPending: every event in an
	// open file is unacknowledged, and the server keeps an entry for each.
	ArchiverFileRows int
	ArchiverPending  int

	// Embedded NATS: JetStream's memory storage, the bytes a stream queues
	// between its clients and its store, and the bytes queued for one
	// client's socket before it counts as slow.
	NATSMemory        int64
	NATSStreamQueue   int64
	NATSClientPending int64

	// NATSBlockCache is the share held by embedded NATS's block caches:
	// JetStream keeps each message block it wrote or read in memory until
	// NATSCacheLife has passed without access, so what it holds follows the
	// bytes put on the stream (and read back) over that time, not any
	// setting. StreamRate is the bytes per second the collector may put on
	// the stream so that those caches stay within the share: past it, it
	// answers 503 with Retry-After. Zero when NATS is not in the process.
	NATSBlockCache int64
	StreamRate     int64
}

// NATSCacheLife is how long, in seconds, JetStream's file store keeps a
// message block's cache after its last access (nats-server's cache expiry,
// not configurable).
const NATSCacheLife = 10

// Derive divides limit among parts. The shares are fixed fractions of what
// the runtime may use (GoLimit), chosen so that the buffers together hold
// well under half of it: what they hold is live, and the collector needs
// the rest for requests being decoded and the garbage they leave.
func Derive(limit int64, parts Parts) (Sizes, error) {
	if limit < MinLimit {
		return Sizes{}, fmt.Errorf("memory limit %s is below the %s herd needs for its fixed part; give at least %s", Format(limit), Format(MinLimit), Format(MinLimit))
	}
	s := Sizes{Limit: limit}
	// The fixed part: what herd up holds beyond the runtime's count, 32 MiB
	// measured idle (VmRSS less the runtime's total: the binary's text and
	// data once warm, thread stacks, the kernel's share) and up to 48 MiB
	// under a flood of connections (thread stacks, sockets' buffers), plus a tenth
	// for what the runtime keeps beyond its count (fragmentation, freed
	// pages not yet returned).
	s.Reserve = 48<<20 + limit/10
	s.GoLimit = limit - s.Reserve
	s.HeapHigh = s.GoLimit * 17 / 20
	g := s.GoLimit
	if parts.Collector {
		s.CollectorDecode = clamp(g/32, 1<<20, 16<<20)
		s.CollectorInFlight = clamp(g/10, 2<<20, 256<<20)
		// Bodies being read and held: fasthttp would otherwise hold one
		// whole body per connection while it arrives.
		s.CollectorBodies = clamp(g/8, 2<<20, 256<<20)
		// An idle connection costs about 10 KiB (fasthttp's read and write
		// buffers and its context); one in use costs its body too.
		s.CollectorConns = int(clamp(g/(32<<10), 256, 4096))
	}
	if parts.Writer {
		// A batch's rows take about three times its stream bytes while it
		// is decoded and copied; two batches are written at once and one
		// is gathered.
		s.WriterBatch = int(clamp(g/48, 512<<10, 8<<20))
		s.WriterPull = 2 * s.WriterBatch
	}
	if parts.Archiver {
		// Open files hold their events until written; encoding a file
		// holds about five times its event bytes at its height (the
		// profile of a flush: the Parquet columns, the compressor's
		// window and the file's bytes), so files roll at a quarter of
		// the buffer.
		s.ArchiverBuffer = int(clamp(g/8, 4<<20, 256<<20))
		s.ArchiverFile = s.ArchiverBuffer / 4
		s.ArchiverPull = int(clamp(g/48, 512<<10, 16<<20))
		// Rows: a small event is about 128 bytes of JSON.
		s.ArchiverFileRows = int(clamp(int64(s.ArchiverFile)/128, 1000, 100_000))
		s.ArchiverPending = 2 * s.ArchiverFileRows
	}
	if parts.NATS {
		// herd keeps its stream and buckets in files; memory storage only
		// serves what an operator adds.
		s.NATSMemory = clamp(g/16, 4<<20, 1<<30)
		s.NATSStreamQueue = clamp(g/16, 2<<20, 128<<20)
		// The in-process client carries the writer's and archiver's
		// pulls: it must hold both, or the server cuts it off as slow.
		s.NATSClientPending = clamp(2*int64(s.WriterPull+s.ArchiverPull), 8<<20, 64<<20)
	}
	if parts.NATS && parts.Collector {
		// 60 % of what the runtime may use: the block caches are most of
		// herd up's live heap under load (a 128 MiB budget's flood held
		// 96 MiB of them while every other buffer held 25). They hold
		// about NATSCacheLife seconds of stream bytes, so the rate is the
		// share over that time. With the rest of what a flood keeps live
		// (about 25 MiB) they must stay under HeapHigh, or the heap guard
		// refuses requests the rate would have let wait: at two thirds
		// the bench's 8 s closed loops drew 18,000 503s.
		s.NATSBlockCache = g * 3 / 5
		s.StreamRate = max(s.NATSBlockCache/NATSCacheLife, 1<<20)
	}
	return s, nil
}

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }

// Attrs are the sizes as log attributes, for the one line logged at start.
func (s Sizes) Attrs() []any {
	a := []any{"limit", Format(s.Limit), "gomemlimit", Format(s.GoLimit), "heap_high", Format(s.HeapHigh)}
	add := func(k string, v int64) {
		if v > 0 {
			a = append(a, k, Format(v))
		}
	}
	add("collector_decode", s.CollectorDecode)
	add("collector_in_flight", s.CollectorInFlight)
	add("collector_bodies", s.CollectorBodies)
	if s.CollectorConns > 0 {
		a = append(a, "collector_conns", s.CollectorConns)
	}
	add("writer_batch", int64(s.WriterBatch))
	add("writer_pull", int64(s.WriterPull))
	add("archiver_file", int64(s.ArchiverFile))
	add("archiver_buffer", int64(s.ArchiverBuffer))
	add("archiver_pull", int64(s.ArchiverPull))
	if s.ArchiverFileRows > 0 {
		a = append(a, "archiver_file_rows", s.ArchiverFileRows, "archiver_pending", s.ArchiverPending)
	}
	add("nats_memory", s.NATSMemory)
	add("nats_stream_queue", s.NATSStreamQueue)
	add("nats_client_pending", s.NATSClientPending)
	add("nats_block_cache", s.NATSBlockCache)
	if s.StreamRate > 0 {
		a = append(a, "stream_rate", Format(s.StreamRate)+"/s")
	}
	return a
}

// parts lists the sizes by name, for the metrics.
func (s Sizes) parts() map[string]int64 {
	return map[string]int64{
		"limit": s.Limit, "gomemlimit": s.GoLimit, "heap_high": s.HeapHigh,
		"collector_decode": s.CollectorDecode, "collector_in_flight": s.CollectorInFlight,
		"collector_bodies": s.CollectorBodies,
		"writer_batch":     int64(s.WriterBatch), "writer_pull": int64(s.WriterPull),
		"archiver_file": int64(s.ArchiverFile), "archiver_buffer": int64(s.ArchiverBuffer), "archiver_pull": int64(s.ArchiverPull),
		"nats_memory": s.NATSMemory, "nats_stream_queue": s.NATSStreamQueue, "nats_client_pending": s.NATSClientPending,
		"nats_block_cache": s.NATSBlockCache,
	}
}

// SetGoLimit sets the runtime's soft memory limit to s.GoLimit, unless the
// environment sets GOMEMLIMIT (the operator's word wins; the runtime has
// already read it). It returns the limit in force.
func (s Sizes) SetGoLimit(log *slog.Logger) int64 {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		cur := debug.SetMemoryLimit(-1)
		log.Info("GOMEMLIMIT is set in the environment: it is kept, not derived from --memory-limit", "GOMEMLIMIT", v, "derived", Format(s.GoLimit))
		return cur
	}
	debug.SetMemoryLimit(s.GoLimit)
	return s.GoLimit
}

// Parse reads a size: a number of bytes, or one with a unit (KiB, MiB,
// GiB, and KB, MB, GB as powers of 1000; K, M, G as KiB, MiB, GiB).
func Parse(v string) (int64, error) {
	v = strings.TrimSpace(v)
	i := len(v)
	for i > 0 && (v[i-1] < '0' || v[i-1] > '9') {
		i--
	}
	num, unit := strings.TrimSpace(v[:i]), strings.ToLower(strings.TrimSpace(v[i:]))
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size: write it as 200MiB, 1GiB or a number of bytes", v)
	}
	mult := map[string]float64{"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("%q: unknown unit %q (use KiB, MiB, GiB, KB, MB or GB)", v, unit)
	}
	return int64(n * mult), nil
}

// Format writes a byte count in MiB (or KiB below one).
func Format(n int64) string {
	if n < 1<<20 {
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strings.TrimSuffix(strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64), ".0") + "MiB"
}
