// Package archive keeps the raw history of every accepted event in a
// Parquet lake (a local directory or an S3 bucket), partitioned Hive-style by
// source and hour, and loads it back into Postgres through the writer's
// idempotent insert path.
package archive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures an Archiver. The zero value works.
type Config struct {
	Stream   stream.Config
	Consumer string // durable consumer name; default herd-archiver

	// A file is closed when it holds FileMaxRows events or FileMaxBytes of
	// event JSON, or when its first event has waited FileMaxAge.
	FileMaxRows  int           // default 100,000
	FileMaxBytes int           // default 64 MiB
	FileMaxAge   time.Duration // default 5 minutes

	// MaxPending is the consumer's MaxAckPending: every event held in an
	// open file is unacknowledged, so the largest open file is closed early
	// when the archiver nears it (or BufferMaxBytes), rather than stalling
	// delivery until FileMaxAge.
	MaxPending     int // default 200,000
	BufferMaxBytes int // default 256 MiB
	// PullMaxBytes bounds the stream bytes fetched and not yet taken into
	// open files; default 16 MiB.
	PullMaxBytes int

	// AckWait is how long JetStream waits before redelivering a message
	// the archiver holds; held messages are marked in progress well before.
	AckWait time.Duration // default 2 minutes
	// RetryMin and RetryMax bound the backoff after a lake failure.
	RetryMin, RetryMax time.Duration // default 200ms, 10s
	// DrainTimeout bounds the writing of open files on shutdown.
	DrainTimeout time.Duration // default 20s
	// LagInterval is how often the consumer's lag is sampled for metrics.
	LagInterval time.Duration // default 5s
	// Yield, when set, is asked every second whether the archiver should
	// stand aside; while it answers true the archiver takes no new messages
	// (it still writes files that come of age and keeps the messages in open
	// files from redelivery; those already fetched but not yet taken are
	// redelivered after AckWait, and the copy that comes second is acked
	// without a second row). herd up sets it to "the Postgres writer is far behind", so
	// that after an outage the rows reach Postgres first and the lake catches
	// up after, rather than the two sharing the cores.
	Yield func(ctx context.Context) bool
	// Window is how old an event may be, when it reaches the stream, and
	// still go to the directory of its hour; an older one goes to its
	// month's bucket (hour=-1), so that events sent with old timestamps
	// cannot multiply directories. Default 35 days, as the writer's
	// partition window.
	Window time.Duration

	// CloseAfter is how long after its hour (or a month bucket's month)
	// ends a partition is closed: once no open file holds its events, it is
	// compacted into one file sorted by (timestamp, message_id) with each
	// message id once. A late event reopens it until the next compaction.
	// Default DefaultCloseAfter; negative: the archiver never compacts.
	CloseAfter time.Duration
	// CompactEvery is how often closed partitions are looked for; default
	// a minute.
	CompactEvery time.Duration
	// GapEvery is how often the archiver takes the gaps the stream's trim
	// recorded (stream.TakeGaps) into the lake and, with DB, repairs them;
	// default 10s.
	GapEvery time.Duration
	// DB, when set, lets the archiver repair gaps from herd.events (herd
	// up); without it, gaps are recorded in the lake for `herd archive
	// repair`.
	DB *pgxpool.Pool

	// EncodeShare is the share of one core that writing lake files
	// (decoding, Parquet, zstd; compactions and repairs too) may take over
	// time: the work runs in slices of a millisecond with pauses between
	// them, so that it never takes the cores the collector's requests
	// need beside it (see pace.go). Default DefaultEncodeShare; 1 or more:
	// no pauses, only yields between slices.
	EncodeShare float64
}

func (c *Config) defaults() {
	if c.CloseAfter == 0 {
		c.CloseAfter = DefaultCloseAfter
	}
	if c.CompactEvery == 0 {
		c.CompactEvery = time.Minute
	}
	if c.GapEvery == 0 {
		c.GapEvery = 10 * time.Second
	}
	c.Stream.Defaults()
	if c.Consumer == "" {
		c.Consumer = "herd-archiver"
	}
	if c.FileMaxRows == 0 {
		c.FileMaxRows = 100_000
	}
	if c.FileMaxBytes == 0 {
		c.FileMaxBytes = 64 << 20
	}
	if c.FileMaxAge == 0 {
		c.FileMaxAge = 5 * time.Minute
	}
	if c.MaxPending == 0 {
		c.MaxPending = 200_000
	}
	if c.MaxPending < c.FileMaxRows*4/3+1 {
		c.MaxPending = c.FileMaxRows*4/3 + 1
	}
	if c.BufferMaxBytes == 0 {
		c.BufferMaxBytes = 256 << 20
	}
	if c.PullMaxBytes == 0 {
		c.PullMaxBytes = 16 << 20
	}
	if c.AckWait == 0 {
		c.AckWait = 2 * time.Minute
	}
	if c.RetryMin == 0 {
		c.RetryMin = 200 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 20 * time.Second
	}
	if c.LagInterval == 0 {
		c.LagInterval = 5 * time.Second
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.EncodeShare <= 0 {
		c.EncodeShare = DefaultEncodeShare
	}
}

// DefaultWindow is Config.Window's default: the writer's default partition
// window.
const DefaultWindow = 35 * 24 * time.Hour

// Archiver copies every event of the stream into the lake. It is a durable
// consumer of its own, so it and the Postgres writer lag or fail
// independently. Run one archiver per lake: it is the lake's only writer.
type Archiver struct {
	cfg  Config
	js   jetstream.JetStream
	lake Lake
	log  *slog.Logger
	m    *metrics

	parts map[partition]*partState
	// dirty holds the partitions written since their last compaction;
	// nil until the first pass has looked at the whole lake.
	dirty         map[partition]bool
	compactAt     time.Time
	gapsAt        time.Time
	buffered      int
	bufferedBytes int

	// afterPut, in tests, runs once a file is stored and before its
	// manifest entry and acks; an error stops Run on the spot, as if the
	// process died there.
	afterPut func(key string) error
}

// partState is what the archiver knows of one partition directory.
type partState struct {
	p       partition
	man     *Manifest
	maxLast uint64
	// seqs holds the sequences of a file, read only when a redelivered
	// message falls inside the file's range.
	seqs map[string]map[uint64]struct{}
	buf  *openFile
	used time.Time
}

// openFile is a file being filled. It carries the messages it came from:
// they are acked only once the file and its manifest entry are stored. Its
// events are kept as they came, encoded, and made into records when the file
// is written: a decoded record holds dozens of pointers, and a hundred
// thousand of them held for minutes made every garbage collection of the
// process (the collector's too, in herd up) scan them.
type openFile struct {
	entries []pendingEntry
	msgs    []*held
	seen    map[uint64]struct{}
	bytes   int
	opened  time.Time
	touched time.Time
}

// New returns an archiver writing to lake; Run starts it.
func New(cfg Config, lake Lake, js jetstream.JetStream, log *slog.Logger, reg prometheus.Registerer) *Archiver {
	cfg.defaults()
	return &Archiver{cfg: cfg, js: js, lake: lake, log: log, m: newMetrics(reg), parts: map[partition]*partState{}}
}

// EnsureConsumer creates or updates the archiver's durable consumer, so
// that it accumulates lag from the moment it exists even while no archiver
// runs. log, when set, hears of retries while JetStream does not answer.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) (jetstream.Consumer, error) {
	cfg.defaults()
	c, err := stream.CreateConsumer(ctx, js, cfg.Stream.Name, jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		Description:   "herd archiver: events into the Parquet lake",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: cfg.MaxPending,
		FilterSubject: cfg.Stream.EventsFilter(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    -1,
	}, log)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", cfg.Consumer, cfg.Stream.Name, err)
	}
	return c, nil
}

// Run archives until ctx ends, then writes the open files (within
// DrainTimeout) and returns.
func (a *Archiver) Run(ctx context.Context) error {
	// Everything this loop encodes is paced; the pacer is the loop's own.
	ctx = withPacer(ctx, newPacer(ctx, a.cfg.EncodeShare))
	cons, err := EnsureConsumer(ctx, a.js, a.cfg, a.log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before its consumer was there: nothing held
		}
		return err
	}
	// Messages are single events or frames of up to stream.MaxFrameBytes.
	it, err := cons.Messages(stream.PullLimit(a.cfg.PullMaxBytes), jetstream.PullHeartbeat(5*time.Second))
	if err != nil {
		return fmt.Errorf("pull from consumer %s: %w", a.cfg.Consumer, err)
	}
	msgs := make(chan jetstream.Msg, 64) // the pull buffers already
	go func() {
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				a.log.Warn("pull messages", "err", err)
				continue
			}
			msgs <- m
		}
	}()
	// stop ends the pull and discards what was fetched but not handled:
	// unacked, it is redelivered to the next run.
	stop := func() {
		it.Stop()
		for range msgs {
		}
	}
	// Erase requests (herd privacy delete) are served in this loop, between
	// the archiver's own writes; a request waits while a file is stored or
	// a partition compacted.
	erases := make(chan *nats.Msg, 16)
	sub, err := a.js.Conn().ChanSubscribe(EraseSubject(a.cfg.Stream), erases)
	if err != nil {
		stop()
		return fmt.Errorf("listen for erase requests on %s: %w", EraseSubject(a.cfg.Stream), err)
	}
	defer sub.Unsubscribe() //nolint:errcheck
	a.renewLease(ctx, time.Now())
	leaseAt := time.Now()
	defer a.dropLease(context.WithoutCancel(ctx))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lagAt time.Time
	yielding := false
	for {
		in := msgs
		if yielding {
			in = nil
		}
		select {
		case <-ctx.Done():
			stop()
			// The last files are written flat out: DrainTimeout bounds it.
			dctx, cancel := context.WithTimeout(withPacer(context.WithoutCancel(ctx), nil), a.cfg.DrainTimeout)
			defer cancel()
			return a.flushAll(dctx)
		case req := <-erases:
			if err := a.serveErase(ctx, req); err != nil && ctx.Err() == nil {
				stop()
				return err
			}
		case m, ok := <-in:
			if !ok {
				return fmt.Errorf("consumer %s: message iterator closed", a.cfg.Consumer)
			}
			if err := a.handle(ctx, m); err != nil && ctx.Err() == nil {
				stop()
				return err
			}
		case now := <-tick.C:
			if err := a.rollAged(ctx, now); err != nil && ctx.Err() == nil {
				stop()
				return err
			}
			a.touch(now)
			if now.Sub(leaseAt) >= LeaseRenew {
				leaseAt = now
				a.renewLease(ctx, now)
			}
			if !yielding {
				if err := a.maintain(ctx, now); err != nil && ctx.Err() == nil {
					stop()
					return err
				}
			}
			a.evictIdle(now)
			if a.cfg.Yield != nil {
				if y := a.cfg.Yield(ctx); y != yielding {
					yielding = y
					a.m.yielding.Set(0)
					if y {
						a.m.yielding.Set(1)
					}
					a.log.Info("archiver standing aside for the Postgres writer", "yielding", y)
				}
			}
			if now.Sub(lagAt) >= a.cfg.LagInterval {
				lagAt = now
				ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if info, err := cons.Info(ictx); err == nil {
					a.m.lag.Set(float64(info.NumPending + uint64(info.NumAckPending)))
				}
				cancel()
			}
		}
	}
}

// retry runs f until it succeeds or ctx ends, backing off and keeping held
// messages from redelivery meanwhile. op is one of the fixed operation names
// (the metric's label); what names the file or partition, for the log only.
func retry[T any](ctx context.Context, a *Archiver, op, what string, f func() (T, error)) (T, error) {
	delay := a.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		v, err := f()
		if err == nil || errors.Is(err, errKilled) {
			return v, err
		}
		a.m.errors.WithLabelValues(op).Inc()
		if ctx.Err() != nil {
			return v, fmt.Errorf("%s: %w", what, err)
		}
		a.log.Warn(what+"; will retry", "op", op, "attempt", attempt, "retry_in", delay, "err", err)
		a.touch(time.Now())
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("%s: %w", what, err)
		case <-time.After(delay):
		}
		delay = min(delay*2, a.cfg.RetryMax)
	}
}

var errKilled = errors.New("archiver stopped at a test kill point")

func (a *Archiver) handle(ctx context.Context, m jetstream.Msg) error {
	meta, err := m.Metadata()
	if err != nil {
		a.log.Warn("message without JetStream metadata; dropped", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return nil
	}
	seq := meta.Sequence.Stream
	// A frame's events may fall in several partitions (hours): each part is
	// held by its partition's open file, and the message is acked once every
	// file holding a part of it is stored.
	var (
		groups = map[partition][]pendingEntry{}
		order  []partition
		bad    int
	)
	err = stream.Entries(m.Data(), func(_ int, data []byte) bool {
		var ev herd.Event
		var hasID bool
		var err error
		if ev.SourceID, ev.Timestamp, hasID, err = stream.PeekEntry(data); errors.Is(err, stream.ErrNotEntry) {
			err = stream.DecodeEvent(data, &ev) // the JSON form
			hasID = ev.MessageID != ""
		}
		if err != nil || !hasID || ev.Timestamp.IsZero() {
			bad++
			return true
		}
		p := partitionOf(&ev, meta.Timestamp, a.cfg.Window)
		if _, ok := groups[p]; !ok {
			order = append(order, p)
		}
		groups[p] = append(groups[p], pendingEntry{data: data, seq: seq})
		return true
	})
	if err != nil || bad > 0 {
		// The writer records such events in herd.rejects; the lake holds
		// events only.
		a.m.undecodable.Add(float64(max(bad, 1)))
		a.log.Warn("not an event; not archived", "seq", seq, "subject", m.Subject(), "undecodable", bad, "err", err)
	}
	h := &held{m: m}
	var full []*partState
	for _, p := range order {
		st, err := a.partition(ctx, p)
		if err != nil {
			return err
		}
		now := time.Now()
		st.used = now
		if seq <= st.maxLast {
			// A redelivery after a crash: this part may sit in a file already.
			done, err := retry(ctx, a, opCheck, "check redelivered message", func() (bool, error) { return a.archived(ctx, st, seq) })
			if err != nil {
				return err
			}
			if done {
				a.m.skipped.Inc()
				continue
			}
		}
		f := st.buf
		if f == nil {
			f = &openFile{seen: map[uint64]struct{}{}, opened: now, touched: now}
			st.buf = f
		}
		f.msgs = append(f.msgs, h)
		h.files++
		if _, dup := f.seen[seq]; dup {
			continue // redelivered while held: ack both deliveries with the file
		}
		f.seen[seq] = struct{}{}
		for _, e := range groups[p] {
			f.entries = append(f.entries, e)
			f.bytes += len(e.data)
			a.bufferedBytes += len(e.data)
		}
		a.buffered += len(groups[p])
		a.m.buffered.Set(float64(a.buffered))
		if len(f.entries) >= a.cfg.FileMaxRows || f.bytes >= a.cfg.FileMaxBytes {
			full = append(full, st)
		}
	}
	if h.files == 0 {
		_ = m.Ack()
		return nil
	}
	for _, st := range full {
		if err := a.flush(ctx, st); err != nil {
			return err
		}
	}
	if a.buffered >= a.cfg.MaxPending*3/4 || a.bufferedBytes >= a.cfg.BufferMaxBytes {
		return a.flush(ctx, a.largest())
	}
	return nil
}

// pendingEntry is one event of an open file: its encoded bytes (aliasing
// the message) and the message's stream sequence.
type pendingEntry struct {
	data []byte
	seq  uint64
}

// held is a message whose events wait in open files; it is acked when the
// last of them is stored.
type held struct {
	m     jetstream.Msg
	files int
}

func (h *held) stored() {
	if h.files--; h.files == 0 {
		_ = h.m.Ack()
	}
}

func (a *Archiver) largest() *partState {
	var best *partState
	for _, st := range a.parts {
		if st.buf != nil && (best == nil || st.buf.bytes > best.buf.bytes) {
			best = st
		}
	}
	return best
}

// partition returns the state of p, reading its manifest on first use.
func (a *Archiver) partition(ctx context.Context, p partition) (*partState, error) {
	if st, ok := a.parts[p]; ok {
		return st, nil
	}
	st, err := retry(ctx, a, opLoad, "load partition "+p.String(), func() (*partState, error) { return a.load(ctx, p) })
	if err != nil {
		return nil, err
	}
	a.parts[p] = st
	return st, nil
}

// load reads a partition's manifest, reconciled with the files present
// (openPartition).
func (a *Archiver) load(ctx context.Context, p partition) (*partState, error) {
	man, err := openPartition(ctx, a.lake, p, a.cfg.Stream.Name, a.log)
	if err != nil {
		return nil, err
	}
	st := &partState{p: p, man: man, seqs: map[string]map[uint64]struct{}{}}
	for _, f := range man.Files {
		st.maxLast = max(st.maxLast, f.LastSeq)
	}
	if !man.Compacted && len(man.Files) > 0 && a.dirty != nil {
		a.dirty[p] = true
	}
	return st, nil
}

func seqSet(recs []record) map[uint64]struct{} {
	s := make(map[uint64]struct{}, len(recs))
	for i := range recs {
		s[uint64(recs[i].StreamSeq)] = struct{}{}
	}
	return s
}

// archived reports whether a file of the partition holds seq. Ranges of
// files may interleave (redeliveries arrive out of order), so the file's
// own sequence column decides.
func (a *Archiver) archived(ctx context.Context, st *partState, seq uint64) (bool, error) {
	for _, f := range st.man.Files {
		if seq < f.FirstSeq || seq > f.LastSeq {
			continue
		}
		set, ok := st.seqs[f.Name]
		if !ok {
			data, err := a.lake.Get(ctx, st.p.prefix()+f.Name)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return false, err
			}
			recs, err := decodeFile(data)
			if err != nil {
				return false, fmt.Errorf("read %s%s: %w", st.p.prefix(), f.Name, err)
			}
			set = seqSet(recs)
			for _, s := range erasedSeqs(data) {
				set[s] = struct{}{} // archived, then erased: done
			}
			st.seqs[f.Name] = set
		}
		if _, ok := set[seq]; ok {
			return true, nil
		}
	}
	return false, nil
}

// flush stores the partition's open file, then its manifest entry, then
// acks the messages it holds. A crash before the acks redelivers them; the
// file is found then and the messages acked without a second copy.
func (a *Archiver) flush(ctx context.Context, st *partState) error {
	f := st.buf
	if f == nil || len(f.entries) == 0 {
		return nil
	}
	start := time.Now()
	sort.SliceStable(f.entries, func(i, j int) bool { return f.entries[i].seq < f.entries[j].seq })
	recs := make([]record, 0, len(f.entries))
	pace := pacerOf(ctx)
	pace.start()
	for i, e := range f.entries {
		if i%encodeChunk == 0 {
			pace.step()
		}
		var ev herd.Event
		if err := stream.DecodeEvent(e.data, &ev); err != nil {
			// Its head was readable (handle placed it), the rest is not.
			a.m.undecodable.Inc()
			a.log.Warn("not an event; not archived", "seq", e.seq, "partition", st.p.String(), "err", err)
			continue
		}
		recs = append(recs, toRecord(&ev, e.seq, ProvArchiver))
	}
	if a.cfg.DB != nil {
		// A client's retry of an event a privacy request deleted: the
		// warehouse's ledger keeps it out of herd.events, and this keeps it
		// out of the lake.
		kept, err := retry(ctx, a, opLedger, "read herd.privacy_erased for "+st.p.String(), func() ([]record, error) {
			kept, dropped, err := ledgerFilter(ctx, a.cfg.DB, st.p, recs, true)
			if n := dropped[dropErased]; n > 0 {
				a.m.ledgerDrop.WithLabelValues(dropErased).Add(float64(n))
				a.log.Info("left erased events out of the lake (a retry after a privacy deletion)", "partition", st.p.String(), "events", n)
			}
			return kept, err
		})
		if err != nil {
			return err
		}
		recs = kept
	}
	if len(recs) == 0 {
		a.release(st)
		return nil
	}
	first, last := uint64(recs[0].StreamSeq), uint64(recs[len(recs)-1].StreamSeq)
	name := fileName(first, last)
	key := st.p.prefix() + name
	data, err := encodeFile(ctx, recs)
	if err != nil {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	if _, err := retry(ctx, a, opStore, "store "+key, func() (struct{}, error) { return struct{}{}, a.lake.Put(ctx, key, data) }); err != nil {
		return err
	}
	if a.afterPut != nil {
		if err := a.afterPut(key); err != nil {
			return err
		}
	}
	entry := describe(name, a.cfg.Stream.Name, data, recs)
	if a.dirty != nil {
		a.dirty[st.p] = true
	}
	if _, err := retry(ctx, a, opManifest, "store manifest of "+st.p.String(), func() (struct{}, error) {
		return struct{}{}, a.listFile(ctx, st, entry)
	}); err != nil {
		return err
	}
	a.release(st)
	st.maxLast = max(st.maxLast, last)
	a.m.files.Inc()
	a.m.rows.Add(float64(len(recs)))
	a.m.bytes.Add(float64(len(data)))
	a.m.writeSeconds.Observe(time.Since(start).Seconds())
	a.log.Debug("archived file", "file", key, "rows", len(recs), "bytes", len(data))
	return nil
}

// listFile adds a stored file to its partition's manifest. The manifest
// is read again first, and the entry added to what the lake's copy lists:
// the archiver should be the lake's only writer, but a compaction, repair
// or erasure run beside it (a stale lease, a command run by hand) must not
// have its files dropped from the manifest by the archiver's older copy,
// or the next open of the partition deletes them as unlisted.
func (a *Archiver) listFile(ctx context.Context, st *partState, entry FileEntry) error {
	cur, err := readManifest(ctx, a.lake, st.p.prefix())
	if err != nil {
		return err
	}
	if foreign := manifestChanged(st.man, cur); foreign {
		a.log.Warn("another writer changed the partition's manifest while the archiver held it; merged with the lake's copy",
			"partition", st.p.String(), "generation", cur.Generation, "held_generation", st.man.Generation, "files", len(cur.Files))
		clear(st.seqs)
	}
	replaced := false
	for i := range cur.Files {
		if cur.Files[i].Name == entry.Name {
			cur.Files[i], replaced = entry, true
		}
	}
	if !replaced {
		cur.Files = append(cur.Files, entry)
	}
	cur.Compacted = false
	if err := writeManifest(ctx, a.lake, st.p.prefix(), cur); err != nil {
		return err
	}
	st.man = cur
	for _, f := range cur.Files {
		st.maxLast = max(st.maxLast, f.LastSeq)
	}
	return nil
}

// manifestChanged reports whether the lake's manifest differs from the one
// held in memory: another generation, or other files.
func manifestChanged(held, cur *Manifest) bool {
	if held.Generation != cur.Generation || len(held.Files) != len(cur.Files) || len(cur.Superseded) > 0 {
		return true
	}
	for i := range held.Files {
		if held.Files[i].Name != cur.Files[i].Name || held.Files[i].SHA256 != cur.Files[i].SHA256 {
			return true
		}
	}
	return false
}

// release closes st's open file once what it holds is stored (or there is
// nothing to store): its messages are acked as far as this file goes.
func (a *Archiver) release(st *partState) {
	f := st.buf
	for _, h := range f.msgs {
		h.stored()
	}
	st.buf = nil
	a.buffered -= len(f.entries)
	a.bufferedBytes -= f.bytes
	a.m.buffered.Set(float64(a.buffered))
}

func (a *Archiver) flushAll(ctx context.Context) error {
	var errs []error
	for _, st := range a.parts {
		if st.buf != nil {
			if err := a.flush(ctx, st); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (a *Archiver) rollAged(ctx context.Context, now time.Time) error {
	for _, st := range a.parts {
		if st.buf != nil && now.Sub(st.buf.opened) >= a.cfg.FileMaxAge {
			if err := a.flush(ctx, st); err != nil {
				return err
			}
		}
	}
	return nil
}

// touch tells JetStream that messages held in open files are still being
// worked on, so they are not redelivered while their file fills.
func (a *Archiver) touch(now time.Time) {
	for _, st := range a.parts {
		if f := st.buf; f != nil && now.Sub(f.touched) >= a.cfg.AckWait/3 {
			for _, h := range f.msgs {
				_ = h.m.InProgress()
			}
			f.touched = now
		}
	}
}

// evictIdle forgets partitions nothing was written to lately (an hour
// partition goes quiet once the hour is over).
func (a *Archiver) evictIdle(now time.Time) {
	for p, st := range a.parts {
		if st.buf == nil && now.Sub(st.used) > a.cfg.FileMaxAge+time.Minute {
			delete(a.parts, p)
		}
	}
}

// maintain takes the stream's recorded gaps into the lake and repairs them
// (with DB), and compacts the partitions that closed. It runs in Run's
// loop, so it never races the archiver's own writes.
func (a *Archiver) maintain(ctx context.Context, now time.Time) error {
	if now.Sub(a.gapsAt) >= a.cfg.GapEvery {
		a.gapsAt = now
		if _, err := retry(ctx, a, opGaps, "take recorded gaps", func() (int, error) { return a.takeGaps(ctx) }); err != nil {
			return err
		}
		if a.cfg.DB != nil {
			if _, err := retry(ctx, a, opRepair, "repair gaps", func() (RepairResult, error) { return a.repair(ctx) }); err != nil {
				return err
			}
		}
	}
	if a.cfg.CloseAfter < 0 || now.Sub(a.compactAt) < a.cfg.CompactEvery {
		return nil
	}
	a.compactAt = now
	if a.dirty == nil {
		// First pass: whatever an earlier run left uncompacted (one
		// manifest read per partition of the lake, once per start).
		parts, err := retry(ctx, a, opList, "list partitions", func() ([]partition, error) { return listPartitions(ctx, a.lake, nil, time.Time{}) })
		if err != nil {
			return err
		}
		a.dirty = map[partition]bool{}
		for _, p := range parts {
			m, err := retry(ctx, a, opManifest, "read manifest of "+p.String(), func() (*Manifest, error) { return readManifest(ctx, a.lake, p.prefix()) })
			if err != nil {
				return err
			}
			if !m.Compacted {
				a.dirty[p] = true
			}
		}
		for p, st := range a.parts {
			if !st.man.Compacted && len(st.man.Files) > 0 {
				a.dirty[p] = true
			}
		}
	}
	closed := now.Add(-a.cfg.CloseAfter)
	for p := range a.dirty {
		if p.end().After(closed) {
			continue
		}
		if st, ok := a.parts[p]; ok {
			if st.buf != nil {
				continue // an open file holds its events
			}
			delete(a.parts, p) // reloaded from the compacted manifest on next use
		}
		r, err := retry(ctx, a, opCompact, "compact "+p.String(), func() (CompactResult, error) {
			return compactPartition(ctx, a.lake, p, a.cfg.Stream.Name, a.cfg.DB, a.log)
		})
		if err != nil {
			return err
		}
		delete(a.dirty, p)
		if r.Partitions > 0 {
			a.m.compactions.Inc()
			a.m.duplicates.Add(float64(r.Duplicates))
			for reason, n := range r.Dropped {
				a.m.ledgerDrop.WithLabelValues(reason).Add(float64(n))
			}
		}
	}
	return nil
}

// repair fills the lake's recorded gaps from the stream and herd.events.
func (a *Archiver) repair(ctx context.Context) (RepairResult, error) {
	r := &repairer{
		lake: a.lake, js: a.js, db: a.cfg.DB, m: a.m,
		opt: RepairOptions{Stream: a.cfg.Stream, Window: a.cfg.Window, CloseAfter: a.cfg.CloseAfter, Log: a.log},
		before: func(ctx context.Context, p partition) error {
			if st, ok := a.parts[p]; ok {
				if err := a.flush(ctx, st); err != nil {
					return err
				}
				delete(a.parts, p)
			}
			return nil
		},
		after: func(p partition) {
			if a.dirty != nil {
				a.dirty[p] = true
			}
		},
	}
	return r.run(ctx)
}
