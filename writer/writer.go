// Package writer drains the events stream into Postgres: a durable pull
// consumer, batches bounded by count, bytes and time, one COPY-based
// transaction per batch, and acknowledgements only after COMMIT.
package writer

import (
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	json "github.com/herdhq/herd/internal/fastjson"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// jsonMarshal re-encodes a refused event for herd.rejects with
// encoding/json, which writes every valid JSON number as it came (the
// faster decoder's encoder refuses numbers beyond float64).
var jsonMarshal = stdjson.Marshal

// BatchPolicy bounds a batch: it is written when any bound is reached.
type BatchPolicy struct {
	MaxEvents int           // default 2000
	MaxBytes  int           // default 8 MiB of stream payload
	MaxWait   time.Duration // since the batch's first message; default 25ms
}

// Config configures a Writer.
type Config struct {
	Stream   stream.Config
	Consumer string // durable consumer name; default herd-writer
	Batch    BatchPolicy
	// Parallel is the number of batches written at once, each on its own
	// connection.
	Parallel int
	// AckWait is how long JetStream waits before redelivering a message a
	// writer holds; the writer signals progress while it retries.
	AckWait time.Duration
	// RetryMin and RetryMax bound the backoff after a Postgres failure.
	RetryMin, RetryMax time.Duration
	// DrainTimeout bounds the final commit on shutdown.
	DrainTimeout time.Duration
	// PartitionWindow is how many days before today get a day partition of
	// herd.events each; older events go to coarse partitions, so clients'
	// event times cannot multiply partitions (Store.SetPartitionWindow).
	// Default DefaultPartitionWindow; negative means 0.
	PartitionWindow int
}

func (c *Config) defaults() {
	c.Stream.Defaults()
	if c.Consumer == "" {
		c.Consumer = "herd-writer"
	}
	if c.Batch.MaxEvents == 0 {
		c.Batch.MaxEvents = 2000
	}
	if c.Batch.MaxBytes == 0 {
		c.Batch.MaxBytes = 8 << 20
	}
	if c.Batch.MaxWait == 0 {
		c.Batch.MaxWait = 25 * time.Millisecond
	}
	if c.Parallel == 0 {
		c.Parallel = 2
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 8 * time.Second
	}
	if c.PartitionWindow == 0 {
		c.PartitionWindow = DefaultPartitionWindow
	}
}

// Writer moves events from the stream into Postgres.
type Writer struct {
	cfg   Config
	js    jetstream.JetStream
	store *Store
	log   *slog.Logger
	m     *metrics
}

// New returns a writer; Run starts it.
func New(cfg Config, db *pgxpool.Pool, js jetstream.JetStream, log *slog.Logger, reg prometheus.Registerer) *Writer {
	cfg.defaults()
	store := NewStore(db)
	store.SetPartitionWindow(cfg.PartitionWindow)
	m := newMetrics(reg)
	store.log, store.recreated = log, m.failures.WithLabelValues(reasonPartition)
	return &Writer{cfg: cfg, js: js, store: store, log: log, m: m}
}

// Store is the writer's insert path, for replays.
func (w *Writer) Store() *Store { return w.store }

// batch carries the stream messages it was built from: they are acked only
// after the transaction holding them commits.
type batch struct {
	msgs    []jetstream.Msg
	rows    []Row
	rejects []RejectRow
	events  int // in msgs: a frame holds several
	bytes   int
	first   time.Time
}

func (b *batch) add(m jetstream.Msg) {
	b.msgs = append(b.msgs, m)
	b.events += stream.CountEntries(m.Data())
	b.bytes += len(m.Data())
}

// decode turns the batch's messages into rows and rejects. It runs in the
// commit workers, in parallel, not on the goroutine that gathers batches.
func (b *batch) decode(rejectsPrefix string) {
	b.rows = make([]Row, 0, b.events)
	for _, m := range b.msgs {
		meta, _ := m.Metadata()
		var seq uint64
		if meta != nil {
			seq = meta.Sequence.Stream
		}
		if strings.HasPrefix(m.Subject(), rejectsPrefix) {
			var r herd.Reject
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				r = herd.Reject{Reason: "undecodable reject on the stream: " + err.Error(), Raw: string(m.Data())}
			}
			b.rejects = append(b.rejects, RejectRow{Reject: r, Seq: seq})
			continue
		}
		n := 0
		err := stream.Entries(m.Data(), func(pos int, data []byte) bool {
			n = pos + 1
			var ev herd.Event
			if err := stream.DecodeEvent(data, &ev); err != nil || ev.MessageID == "" || ev.Timestamp.IsZero() {
				reason := "undecodable event on the stream"
				if err != nil {
					reason += ": " + err.Error()
				}
				b.rejects = append(b.rejects, RejectRow{Reject: herd.Reject{Reason: reason, Raw: string(data), ReceivedAt: time.Now()}, Seq: seq, Pos: pos})
				return true
			}
			b.rows = append(b.rows, Row{Event: ev, Seq: seq, Pos: pos})
			return true
		})
		if err != nil {
			b.rejects = append(b.rejects, RejectRow{Reject: herd.Reject{Reason: fmt.Sprintf("after %d events: %v", n, err), Raw: string(m.Data()), ReceivedAt: time.Now()}, Seq: seq, Pos: n})
		}
	}
}

// Run consumes until ctx ends, then commits what it holds and returns.
func (w *Writer) Run(ctx context.Context) error {
	cons, err := stream.CreateConsumer(ctx, w.js, w.cfg.Stream.Name, jetstream.ConsumerConfig{
		Durable:        w.cfg.Consumer,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        w.cfg.AckWait,
		MaxAckPending:  w.cfg.Parallel * w.cfg.Batch.MaxEvents * 4,
		FilterSubjects: []string{w.cfg.Stream.EventsFilter(), w.cfg.Stream.RejectsFilter()},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxDeliver:     -1,
	}, w.log)
	if err != nil && ctx.Err() != nil {
		return nil // stopped before it began: nothing held, nothing to commit
	}
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", w.cfg.Consumer, w.cfg.Stream.Name, err)
	}
	// Messages are single events or frames of up to stream.MaxFrameBytes:
	// each pull request is bounded in bytes, two batches' worth, and the
	// messages buffered in the client in number (stream.PullMessages).
	pull := func() (jetstream.MessagesContext, error) {
		return cons.Messages(stream.PullLimit(2*w.cfg.Batch.MaxBytes), jetstream.PullHeartbeat(2*time.Second))
	}
	first, err := pull()
	if err != nil {
		return fmt.Errorf("pull from consumer %s: %w", w.cfg.Consumer, err)
	}
	var (
		itMu    sync.Mutex
		it      = first
		stopped bool
	)
	// The pull buffers already: this hand-off holds little, so that a slow
	// Postgres does not let thousands of frames pile up here.
	msgs := make(chan jetstream.Msg, 64)
	go func() {
		defer close(msgs)
		failures := 0
		for {
			itMu.Lock()
			cur := it
			itMu.Unlock()
			m, err := cur.Next()
			if err == nil {
				failures = 0
				msgs <- m
				continue
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			failures++
			w.log.Warn("pull messages", "err", err, "consecutive", failures)
			if failures < 5 {
				continue
			}
			// The pull has not recovered by itself (for example after a
			// cluster lost the consumer's leader): start a new one.
			time.Sleep(time.Second)
			next, err := pull()
			if err != nil {
				w.log.Warn("restart pull", "err", err)
				continue
			}
			itMu.Lock()
			if stopped {
				itMu.Unlock()
				next.Stop()
				return
			}
			cur.Stop()
			it = next
			itMu.Unlock()
			failures = 0
		}
	}()
	go func() {
		<-ctx.Done()
		itMu.Lock()
		stopped = true
		cur := it
		itMu.Unlock()
		// Drain delivers what was already pulled, then closes the iterator.
		cur.Drain()
	}()

	// The batches are written with a context that outlives ctx by the drain
	// timeout, so that shutdown commits what the writer holds.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		<-ctx.Done()
		t := time.NewTimer(w.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-wctx.Done():
		}
	}()

	rejectsPrefix := strings.TrimSuffix(w.cfg.Stream.RejectsFilter(), ">")
	work := make(chan *batch)
	var wg sync.WaitGroup
	for range w.cfg.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				b.decode(rejectsPrefix)
				w.commit(wctx, b)
			}
		}()
	}
	var cur *batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		if cur != nil {
			work <- cur
			cur = nil
		}
		timer.Stop()
	}
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				flush()
				close(work)
				wg.Wait()
				return nil
			}
			if cur == nil {
				cur = &batch{first: time.Now()}
				timer.Reset(w.cfg.Batch.MaxWait)
			}
			cur.add(m)
			if cur.events >= w.cfg.Batch.MaxEvents || cur.bytes >= w.cfg.Batch.MaxBytes {
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// commit writes one batch, retrying with backoff until it succeeds or the
// writer stops; then acks (success) or naks (stopping) every message. A
// failure is never the events' fault here (Store.Write rejects the events
// Postgres refuses for their content): the messages are held, kept from
// redelivery, and the failure is counted by reason and logged with what an
// operator should do.
func (w *Writer) commit(ctx context.Context, b *batch) {
	delay := w.cfg.RetryMin
	lastProgress := time.Now()
	failing := false
	defer func() {
		if failing {
			w.m.failing.Dec()
		}
	}()
	for attempt := 1; ; attempt++ {
		start := time.Now()
		res, err := w.store.Write(ctx, b.rows, b.rejects)
		if err == nil {
			if failing {
				w.log.Info("batch written after failures", "events", len(b.rows), "attempts", attempt)
			}
			w.m.copySeconds.Observe(time.Since(start).Seconds())
			w.m.batchSize.Observe(float64(b.events))
			w.m.rows.WithLabelValues("events").Add(float64(res.Inserted))
			w.m.rows.WithLabelValues("rejects").Add(float64(res.Rejected))
			w.m.duplicates.Add(float64(res.Duplicates))
			now := time.Now()
			for i := range b.rows {
				w.m.lag.Observe(now.Sub(b.rows[i].ReceivedAt).Seconds())
			}
			for _, m := range b.msgs {
				if meta, _ := m.Metadata(); meta != nil && meta.NumDelivered > 1 {
					w.m.redeliveries.Inc()
				}
				_ = m.Ack()
			}
			return
		}
		w.m.errors.Inc()
		if ctx.Err() != nil {
			// Stopping: hand the messages back for immediate redelivery.
			for _, m := range b.msgs {
				_ = m.Nak()
			}
			return
		}
		reason := failureReason(err)
		w.m.failures.WithLabelValues(reason).Inc()
		if !failing {
			failing = true
			w.m.failing.Inc()
		}
		if reason == reasonPartition {
			w.store.ForgetPartitions()
		}
		level := slog.LevelWarn
		if persistent(reason) || attempt >= 5 {
			level = slog.LevelError
		}
		w.log.Log(ctx, level, "write batch failed; the events stay in the stream and are retried", "reason", reason,
			"hint", failureHint(reason), "events", len(b.rows), "rejects", len(b.rejects), "attempt", attempt, "retry_in", delay, "err", err)
		if time.Since(lastProgress) > w.cfg.AckWait/3 {
			for _, m := range b.msgs {
				_ = m.InProgress()
			}
			lastProgress = time.Now()
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(delay*2, w.cfg.RetryMax)
	}
}
