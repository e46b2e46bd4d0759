package harness

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdhq/herd/bench/internal/gen"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/writer"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishBacklog stores the backlog on the stream before any writer exists,
// through a JetStream server on herd's own data directory: when herd starts,
// its writer finds the backlog waiting, as after an outage of Postgres.
func (b *bench) publishBacklog(ctx context.Context) error {
	ns, err := stream.StartEmbedded(filepath.Join(b.o.WorkDir, "herd", "nats"), "", b.natsTokenFile())
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	nc, err := ns.Connect("herdbench")
	if err != nil {
		return fmt.Errorf("connect to the embedded NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384))
	if err != nil {
		return err
	}
	var sc stream.Config
	sc.Defaults()
	if _, err := stream.Ensure(ctx, js, sc); err != nil {
		return err
	}
	subject := sc.EventSubject(b.sourceID)
	prefix := "backlog" + b.runID
	at := time.Now()
	start := time.Now()
	// Encoding and publishing from one goroutine would measure herdbench;
	// one publisher per CPU keeps JetStream the limit. Each message is a
	// frame of BacklogFrame events in the collector's own encoding.
	per := int64(b.o.BacklogFrame)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, runtime.NumCPU())
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				from := (next.Add(1) - 1) * per
				if from >= int64(b.o.Backlog) || ctx.Err() != nil {
					return
				}
				var frame []byte
				for i := from; i < min(from+per, int64(b.o.Backlog)); i++ {
					ev := gen.Event(b.sourceID, prefix, i, at)
					frame = stream.AppendFrameEntry(frame, stream.EncodeEntry(nil, &ev))
				}
				m := nats.NewMsg(subject)
				m.Data = frame
				if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(30*time.Second)); err != nil {
					errs <- fmt.Errorf("publish backlog events from %d to %s: %w", from, subject, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("JetStream did not acknowledge the backlog of %d events within 2 minutes", b.o.Backlog)
	case <-ctx.Done():
		return ctx.Err()
	}
	took := time.Since(start)
	info, err := js.Stream(ctx, sc.Name)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", sc.Name, err)
	}
	si, err := info.Info(ctx)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", sc.Name, err)
	}
	if msgs := (b.o.Backlog + b.o.BacklogFrame - 1) / b.o.BacklogFrame; si.State.Msgs != uint64(msgs) {
		return fmt.Errorf("stream %s holds %d messages after publishing a backlog of %d events in %d", sc.Name, si.State.Msgs, b.o.Backlog, msgs)
	}
	b.rep.Backlog = Backlog{Events: b.o.Backlog, FrameEvents: b.o.BacklogFrame, PublishS: took.Seconds(), PublishPerSec: float64(b.o.Backlog) / took.Seconds(), StreamBytes: si.State.Bytes}
	b.log.Info("backlog on the stream", "events", b.o.Backlog, "took", took.Round(time.Millisecond))
	return nil
}

// drain times herd's writer storing the backlog. The figure is the writer's
// steady state: the rate between the moments a tenth and nine tenths of the
// backlog were committed, which leaves out the start (connections, the
// consumer's first pulls, the heap growing) and the last batches, whose
// number of writers busy falls. The rate from the first committed batch to
// the last row, and from process start, are in the JSON.
func (b *bench) drain(ctx context.Context) error {
	started := time.Now()
	m := b.startMeter(b.herd.pid())
	var first, done time.Time
	var firstRows float64
	var prof <-chan struct{}
	var samples []drainSample
	var polls, yielding int // herd_archive_yielding, read every 10th poll once rows come
	deadline := time.Now().Add(5*time.Minute + time.Duration(b.o.Backlog/10_000)*time.Second)
	for i := 0; ; i++ {
		if b.herd.exited() {
			return fmt.Errorf("herd exited while draining the backlog (%v); see %s", b.herd.err, filepath.Join(b.logs, "herd-1.log"))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("herd did not drain a backlog of %d events by %s", b.o.Backlog, deadline.Format(time.TimeOnly))
		}
		rows, err := b.metric(ctx, rowsMetric)
		now := time.Now()
		if err == nil && rows > 0 {
			samples = append(samples, drainSample{t: now, rows: rows})
		}
		if err == nil && rows > 0 && first.IsZero() {
			first, firstRows = now, rows
			// The profile covers about the drain at 50k rows/s (most of it).
			prof = b.profile(ctx, b.adminURL, "drain", int(float64(b.o.Backlog)/50_000))
		}
		if err == nil && rows >= float64(b.o.Backlog) {
			done = now
			break
		}
		if !first.IsZero() && i%10 == 0 {
			if y, err := b.metric(ctx, yieldingMetric); err == nil {
				polls++
				if y > 0 {
					yielding++
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	var p Phase
	m.stop(&p)
	p.Events = int64(b.o.Backlog)
	d := &b.rep.Backlog
	d.FromStartS = done.Sub(started).Seconds()
	if polls > 0 {
		d.ArchiverYielding = float64(yielding) / float64(polls)
	}
	d.DrainS = done.Sub(first).Seconds()
	n := float64(b.o.Backlog)
	if d.DrainS > 0 && firstRows < n {
		d.WholeRowsPerSec = (n - firstRows) / d.DrainS
	} else {
		// A backlog that fits in the first batches leaves nothing to time
		// between batches: fall back to the time since herd started.
		d.WholeRowsPerSec = n / d.FromStartS
	}
	d.RowsPerSec, d.SteadyFrom, d.SteadyTo = d.WholeRowsPerSec, 0, 1
	lo, hi := crossing(samples, 0.1*n), crossing(samples, 0.9*n)
	if !lo.IsZero() && hi.Sub(lo) > 100*time.Millisecond {
		d.RowsPerSec, d.SteadyFrom, d.SteadyTo = 0.8*n/hi.Sub(lo).Seconds(), 0.1, 0.9
	}
	// The rows committed every 250 ms, to see how steady the writer was.
	for i, next := 0, first; i < len(samples); i++ {
		if s := samples[i]; !s.t.Before(next) || i == len(samples)-1 {
			d.Series = append(d.Series, [2]float64{math.Round(1000*s.t.Sub(first).Seconds()) / 1000, s.rows})
			next = s.t.Add(250 * time.Millisecond)
		}
	}
	if v, err := metrics(ctx, b.adminURL, "herd_writer_batch_size_sum", "herd_writer_batch_size_count", "herd_writer_commit_seconds_sum"); err == nil && v[1] > 0 {
		d.Batches, d.MeanBatch, d.MeanCommitMs = int64(v[1]), v[0]/v[1], 1000*v[2]/v[1]
	}
	b.rep.Phases["drain"] = &p
	if err := waitReady(ctx, b.herd, b.adminURL+"/readyz", time.Minute); err != nil {
		return err
	}
	if prof != nil {
		<-prof
	}
	b.log.Info("backlog drained", "rows_per_s", int(d.RowsPerSec), "whole_rows_per_s", int(d.WholeRowsPerSec),
		"mean_batch", int(d.MeanBatch), "took", time.Duration(d.DrainS*float64(time.Second)).Round(time.Millisecond))
	return nil
}

// drainSample is the writer's row count at one poll.
type drainSample struct {
	t    time.Time
	rows float64
}

// crossing is when the row count reached n, interpolated between the polls
// either side; zero if it never did.
func crossing(s []drainSample, n float64) time.Time {
	for i, x := range s {
		if x.rows < n {
			continue
		}
		if i == 0 || x.rows == s[i-1].rows {
			return x.t
		}
		prev := s[i-1]
		f := (n - prev.rows) / (x.rows - prev.rows)
		return prev.t.Add(time.Duration(f * float64(x.t.Sub(prev.t))))
	}
	return time.Time{}
}

// rawCopy is the ceiling for the drain: the same rows COPYed straight into a
// table of herd.events' shape (partitioned by day, same indexes), in batches
// of the writer's size on as many connections as it has, with no staging,
// deduplication or stream in between.
func (b *bench) rawCopy(ctx context.Context) error {
	db, err := pgxpool.New(ctx, b.herdURL)
	if err != nil {
		return fmt.Errorf("connect to the warehouse: %w", err)
	}
	defer db.Close()
	at := time.Now().UTC()
	day := time.Date(at.Year(), at.Month(), at.Day(), 0, 0, 0, 0, time.UTC)
	for _, q := range []string{
		`CREATE SCHEMA IF NOT EXISTS bench`,
		`DROP TABLE IF EXISTS bench.copy_events`,
		`CREATE TABLE bench.copy_events (LIKE herd.events INCLUDING DEFAULTS) PARTITION BY RANGE ("timestamp")`,
		`CREATE INDEX ON bench.copy_events USING brin ("timestamp")`,
		fmt.Sprintf(`CREATE TABLE bench.copy_events_d PARTITION OF bench.copy_events FOR VALUES FROM ('%s') TO ('%s')`,
			day.Format(time.RFC3339), day.AddDate(0, 0, 1).Format(time.RFC3339)),
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			return fmt.Errorf("prepare the raw COPY table (%s): %w", q, err)
		}
	}
	// The rows are made before the clock starts (making them, with the
	// enrichment, costs a fifth of what COPY does), and herdbench's garbage
	// collector is off while it runs: what is timed is pgx encoding the rows
	// and Postgres storing them, as in the writer.
	n, step := int64(b.o.Backlog), int64(b.o.BatchEvents)
	rows := make([][]any, n)
	for i := range rows {
		ev := gen.Event(b.sourceID, "copy"+b.runID, int64(i), at)
		rows[i] = writer.CopyValues(&writer.Row{Event: ev, Seq: uint64(i) + 1})
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	m := b.startMeter(os.Getpid())
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, b.o.Writers)
	for range b.o.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				from := next.Add(step) - step
				if from >= n {
					return
				}
				batch := pgx.CopyFromRows(rows[from:min(from+step, n)])
				if _, err := db.CopyFrom(ctx, pgx.Identifier{"bench", "copy_events"}, writer.CopyColumns(), batch); err != nil {
					errs <- fmt.Errorf("COPY rows %d.. into bench.copy_events: %w", from, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	var p Phase
	m.stop(&p)
	p.Events = n
	b.rep.Phases["raw_copy"] = &p // cores: herdbench's pgx encoding; Postgres beside it
	rows = nil
	b.rep.Backlog.CopyS = took.Seconds()
	b.rep.Backlog.CopyRowsPerSec = float64(n) / took.Seconds()
	b.log.Info("raw COPY", "rows_per_s", int(b.rep.Backlog.CopyRowsPerSec))
	if _, err := db.Exec(ctx, `DROP TABLE bench.copy_events`); err != nil {
		return fmt.Errorf("drop bench.copy_events: %w", err)
	}
	return nil
}

// loadPhase runs one load-generator phase against the process pid and records
// it under name.
// loadPhase runs the loadgen with args against the process pid; admin, when
// it is a herd process's admin URL, is where its frame metrics are read.
func (b *bench) loadPhase(ctx context.Context, name string, pid int, admin string, profile bool, dur time.Duration, args ...string) (*Phase, error) {
	sum0, count0 := frameMetrics(ctx, admin)
	m := b.startMeter(pid)
	var prof <-chan struct{}
	if profile {
		prof = b.profile(ctx, admin, name, int(dur.Seconds())-1)
	}
	res, cpu, err := b.loadgen(ctx, name, dur, args...)
	if err != nil {
		return nil, err
	}
	var p Phase
	m.stop(&p)
	p.Load, p.LoadgenCPUSeconds, p.Events = res, cpu, res.Events
	if sum1, count1 := frameMetrics(ctx, admin); count1 > count0 {
		p.FrameEvents = (sum1 - sum0) / (count1 - count0)
	}
	b.rep.Phases[name] = &p
	if prof != nil {
		<-prof
	}
	b.log.Info("phase done", "phase", name, "events_per_s", int(res.EventsPerSec), "p50_ms", res.Latency.P50, "p99_ms", res.Latency.P99, "cores", fmt.Sprintf("%.2f", p.Cores))
	return &p, nil
}

// frameMetrics reads the sum and count of herd_collector_frame_events (0, 0
// without an admin URL or on error: the figure is then left out).
func frameMetrics(ctx context.Context, admin string) (sum, count float64) {
	if admin == "" {
		return 0, 0
	}
	v, err := metrics(ctx, admin, frameSumMetric, frameCountMetric)
	if err != nil {
		return 0, 0
	}
	return v[0], v[1]
}

func (b *bench) common(url, prefix string, conns int, dur time.Duration) []string {
	return []string{"--url", url, "--write-key", writeKey, "--id-prefix", prefix + b.runID,
		"--conns", strconv.Itoa(conns), "--duration", dur.String()}
}

// closedLoops runs the two closed loops, 1-event requests and batches, at
// the running herd up, recording them as single<suffix> and batch<suffix>.
func (b *bench) closedLoops(ctx context.Context, suffix string, dur time.Duration, profile bool) error {
	tag := strings.ReplaceAll(suffix, "_", "")
	single := append(b.common(b.collector, "single"+tag, b.o.SingleConns, dur), "--mode", "closed", "--batch", "1")
	if _, err := b.loadPhase(ctx, "single"+suffix, b.herd.pid(), b.adminURL, profile, dur, single...); err != nil {
		return err
	}
	b.settle(ctx, 60*time.Second)
	batch := append(b.common(b.collector, "batch"+tag, b.o.BatchConns, dur), "--mode", "closed", "--batch", strconv.Itoa(b.o.BatchSize))
	if _, err := b.loadPhase(ctx, "batch"+suffix, b.herd.pid(), b.adminURL, profile, dur, batch...); err != nil {
		return err
	}
	b.settle(ctx, 60*time.Second)
	return nil
}

// herdPhases: the closed-loop maxima with enrichment off, on and off again,
// then the open-loop rates (enrichment on). Each enrichment-off stretch is
// half a phase, one just before the enrichment-on closed loops and one just
// after, so that the machine's other work, drifting over the three, weighs
// on both sides of the comparison alike.
func (b *bench) herdPhases(ctx context.Context) error {
	half := max(b.o.Phase/2, 100*time.Millisecond)
	if b.enrich {
		if err := b.restartHerd(ctx, false); err != nil {
			return err
		}
	}
	if err := b.closedLoops(ctx, noEnrich+"_a", half, false); err != nil {
		return err
	}
	if err := b.restartHerd(ctx, true); err != nil {
		return err
	}
	if err := b.closedLoops(ctx, "", b.o.Phase, true); err != nil {
		return err
	}
	if err := b.restartHerd(ctx, false); err != nil {
		return err
	}
	if err := b.closedLoops(ctx, noEnrich+"_b", half, false); err != nil {
		return err
	}
	if err := b.restartHerd(ctx, true); err != nil {
		return err
	}
	b.idleRSS(ctx)
	for i, rate := range b.o.Rates {
		name := "open" + strconv.Itoa(int(rate))
		args := append(b.common(b.collector, name, b.o.OpenConns, b.o.Phase), "--mode", "open", "--batch", "1",
			"--rate", strconv.FormatFloat(rate, 'f', -1, 64), "--database-url", b.herdURL,
			"--sample-every", strconv.Itoa(max(1, int(rate/500))))
		// Profile the middle rate: the one the latency targets are set at.
		if _, err := b.loadPhase(ctx, name, b.herd.pid(), b.adminURL, i == len(b.o.Rates)/2, b.o.Phase, args...); err != nil {
			return err
		}
		b.settle(ctx, 60*time.Second)
	}
	if err := b.cgroupPhase(ctx); err != nil {
		return err
	}
	return b.splitPhase(ctx)
}

// noEnrich marks the phases against herd up --enrich=false.
const noEnrich = "_noenrich"

// splitPhase offers the highest rate to a collector in its own process (herd
// collect, publishing over TCP to herd up's NATS), so that the collector's
// CPU and memory are measured apart from the writer's and NATS's.
func (b *bench) splitPhase(ctx context.Context) error {
	if len(b.o.Rates) == 0 {
		return nil
	}
	rate := slices.Max(b.o.Rates)
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	admin, err := freeAddr()
	if err != nil {
		return err
	}
	col, err := b.start(ctx, "herd-collect", "herd", "collect", "--nats-url", "nats://"+b.natsAddr,
		"--nats-token-file", b.natsTokenFile(), "--listen", listen, "--admin-listen", admin, "--browser-byte-rate", "0")
	if err != nil {
		return err
	}
	defer col.stop()
	if err := waitReady(ctx, col, "http://"+admin+"/readyz", time.Minute); err != nil {
		return err
	}
	name := "split" + strconv.Itoa(int(rate))
	args := append(b.common("http://"+listen, name, b.o.OpenConns, b.o.Phase), "--mode", "open", "--batch", "1",
		"--rate", strconv.FormatFloat(rate, 'f', -1, 64), "--database-url", b.herdURL,
		"--sample-every", strconv.Itoa(max(1, int(rate/500))))
	rest := b.startMeter(b.herd.pid())
	p, err := b.loadPhase(ctx, name, col.pid(), "http://"+admin, true, b.o.Phase, args...)
	if err != nil {
		return err
	}
	var r Phase
	rest.stop(&r)
	r.Events = p.Events
	b.rep.Phases[name+"_writer_nats"] = &r
	acc, err := metric(ctx, "http://"+admin, acceptedMetric)
	if err != nil {
		return err
	}
	b.accepted += acc
	b.settle(ctx, 60*time.Second)
	return nil
}

// naivePhases measures the baseline with the same load.
func (b *bench) naivePhases(ctx context.Context) error {
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	nv, err := b.start(ctx, "naive", "naive", "--listen", listen, "--database-url", b.naiveURL,
		"--write-key", writeKey, "--conns", strconv.Itoa(b.o.NaiveConns))
	if err != nil {
		return err
	}
	defer nv.stop()
	url := "http://" + listen
	if err := waitReady(ctx, nv, url+"/readyz", 30*time.Second); err != nil {
		return err
	}
	single := append(b.common(url, "naivesingle", b.o.SingleConns, b.o.Phase), "--mode", "closed", "--batch", "1")
	if _, err := b.loadPhase(ctx, "naive_single", nv.pid(), "", false, b.o.Phase, single...); err != nil {
		return err
	}
	batch := append(b.common(url, "naivebatch", b.o.BatchConns, b.o.Phase), "--mode", "closed", "--batch", strconv.Itoa(b.o.BatchSize))
	if _, err := b.loadPhase(ctx, "naive_batch", nv.pid(), "", false, b.o.Phase, batch...); err != nil {
		return err
	}
	// The lowest open-loop rate too, for herd's latencies beside naive's.
	if len(b.o.Rates) > 0 {
		rate := slices.Min(b.o.Rates)
		name := "open" + strconv.Itoa(int(rate))
		open := append(b.common(url, "naive"+name, b.o.OpenConns, b.o.Phase), "--mode", "open", "--batch", "1",
			"--rate", strconv.FormatFloat(rate, 'f', -1, 64))
		if _, err := b.loadPhase(ctx, "naive_"+name, nv.pid(), "", false, b.o.Phase, open...); err != nil {
			return err
		}
	}
	if nv.exited() {
		return errors.New("the naive baseline exited during its phases; see its log")
	}
	return nil
}
