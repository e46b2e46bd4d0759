// Package check compares herd's stores per source and hour: the events herd
// accepted (its message-id ledger), the rows of herd.events and the rows of
// the Parquet lake, beside the rejects. It is what `herd check` prints and
// what `herd up` runs on a schedule.
package check

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// NoFloor compares every event whatever its stream sequence (no stream to
// ask: events in flight may then show as differences).
const NoFloor = math.MaxUint64

// Config says what to compare. The zero value checks every source over
// the last 24 hours.
type Config struct {
	Since   time.Duration // how far back, in event time; default 24h
	Sources []string      // source names; empty: every source
	Stream  stream.Config
	// WriterConsumer and ArchiverConsumer are the durable consumers whose
	// acknowledgement floors bound what is compared; defaults herd-writer
	// and herd-archiver.
	WriterConsumer, ArchiverConsumer string
	// Retention, when the writer drops partitions (--retention), keeps
	// hours the writer may already have dropped out of the comparison.
	Retention time.Duration
	Now       func() time.Time
}

// DefaultSince is Config.Since's default.
const DefaultSince = 24 * time.Hour

func (c *Config) defaults() {
	if c.Since <= 0 {
		c.Since = DefaultSince
	}
	c.Stream.Defaults()
	if c.WriterConsumer == "" {
		c.WriterConsumer = "herd-writer"
	}
	if c.ArchiverConsumer == "" {
		c.ArchiverConsumer = "herd-archiver"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Hour is one source's hour with what each store holds of it. Accepted is
// -1 when the ledger cannot say (ids claimed before it kept hours), Lake -1
// when the lake was not compared.
type Hour struct {
	Source   int64
	Name     string
	Hour     time.Time
	Accepted int64
	Events   int64
	Lake     int64
	// LakeOpen: a lake partition of the hour is not compacted yet (see
	// LakeCount.Open); its Lake may count a retried event twice.
	LakeOpen bool
	Rejects  int64 // refusals received in this hour (not part of the other counts)
}

// Differs reports whether the stores disagree on the hour. A closed
// (compacted) lake hour must hold exactly the accepted events; an open one
// may hold more (retries and redeliveries, each once after compaction), so
// there only missing rows are a difference.
func (h Hour) Differs() bool {
	ref := h.Accepted
	if ref < 0 {
		ref = h.Events
	}
	if h.Events != ref {
		return true
	}
	if h.Lake < 0 {
		return false
	}
	if h.LakeOpen {
		return h.Lake < ref
	}
	return h.Lake != ref
}

// Result is one comparison.
type Result struct {
	Started, Finished time.Time
	Since, Until      time.Time // event time, hours [Since, Until)
	Sources           int
	// Floor is the highest stream sequence compared: both the writer and
	// the archiver had acknowledged every message up to it when the check
	// began. Later events (StreamLast - Floor messages) are in flight and
	// left for the next check; rows without a sequence always count.
	Floor, StreamLast      uint64
	WriterFloor, LakeFloor uint64
	LakeCompared           bool
	Hours                  []Hour // every (source, hour) with a row in any store, oldest first
	Differences            int
	// LakeOpen counts the compared hours with a lake partition not yet
	// compacted, LakeOpenExtra the rows they hold beyond the accepted
	// events (copies compaction will drop).
	LakeOpen               int
	LakeOpenExtra          int64
	Accepted, Events, Lake int64 // totals over Hours (Accepted: where known)
	Rejects                int64
	Notes                  []string
}

// Check compares the stores. js may be nil (no floor: see NoFloor), lake
// nil (the lake is not compared). A difference is not an error: see
// Result.Differences.
func Check(ctx context.Context, db *pgxpool.Pool, js jetstream.JetStream, lake LakeCounter, cfg Config) (*Result, error) {
	cfg.defaults()
	now := cfg.Now().UTC()
	r := &Result{Started: now, Until: now.Truncate(time.Hour).Add(time.Hour), Since: now.Add(-cfg.Since).Truncate(time.Hour), Floor: NoFloor}
	if cfg.Retention > 0 {
		// The writer drops whole days before now - retention; a day's
		// margin keeps the day it is dropping out.
		keep := now.Add(-cfg.Retention).Truncate(24 * time.Hour).Add(24 * time.Hour)
		if r.Since.Before(keep) {
			r.Notes = append(r.Notes, fmt.Sprintf("hours before %s not compared: the writer's retention (%s) drops them from herd.events", keep.Format(hourFormat), cfg.Retention))
			r.Since = keep
		}
	}

	names, ids, err := sources(ctx, db, cfg.Sources)
	if err != nil {
		return nil, err
	}
	r.Sources = len(ids)
	if len(cfg.Sources) == 0 {
		ids = nil // every source, including one deleted from herd.sources
	}

	if js != nil {
		if err := r.floor(ctx, js, cfg, lake != nil); err != nil {
			return nil, err
		}
	} else {
		r.Notes = append(r.Notes, "no stream to ask: events still in flight may show as differences")
	}
	if lake != nil && !r.LakeCompared && js != nil {
		lake = nil
	}
	r.LakeCompared = lake != nil

	counts := map[Key]*Hour{}
	at := func(k Key) *Hour {
		h := counts[k]
		if h == nil {
			h = &Hour{Source: k.Source, Name: names[k.Source], Hour: k.Hour, Lake: -1}
			if r.LakeCompared {
				h.Lake = 0
			}
			counts[k] = h
		}
		return h
	}
	floor := int64(math.MaxInt64)
	if r.Floor < math.MaxInt64 {
		floor = int64(r.Floor)
	}
	// Events a privacy request erased keep their ledger entries (so that a
	// redelivery or a replay cannot store them again) but were removed from
	// every store on purpose: they are not counted as accepted.
	err = scanCounts(ctx, db, `SELECT source_id, hour, count(*) FROM herd.message_ids m
		WHERE hour >= $1 AND hour < $2 AND ($3::bigint[] IS NULL OR source_id = ANY($3)) AND (stream_seq IS NULL OR stream_seq <= $4)
		  AND NOT EXISTS (SELECT FROM herd.privacy_erased e WHERE e.source_id = m.source_id AND e.message_id = m.message_id)
		GROUP BY 1, 2`, []any{r.Since, r.Until, ids, floor}, func(k Key, n int64) { at(k).Accepted += n })
	if err != nil {
		return nil, fmt.Errorf("count accepted events in herd.message_ids: %w", err)
	}
	err = scanCounts(ctx, db, `SELECT source_id, date_trunc('hour', "timestamp", 'UTC'), count(*) FROM herd.events
		WHERE "timestamp" >= $1 AND "timestamp" < $2 AND ($3::bigint[] IS NULL OR source_id = ANY($3)) AND (stream_seq IS NULL OR stream_seq <= $4)
		GROUP BY 1, 2`, []any{r.Since, r.Until, ids, floor}, func(k Key, n int64) { at(k).Events += n })
	if err != nil {
		return nil, fmt.Errorf("count rows of herd.events: %w", err)
	}
	err = scanCounts(ctx, db, `SELECT source_id, date_trunc('hour', received_at, 'UTC'), count(*) FROM herd.rejects
		WHERE received_at >= $1 AND received_at < $2 AND source_id IS NOT NULL AND ($3::bigint[] IS NULL OR source_id = ANY($3))
		GROUP BY 1, 2`, []any{r.Since, r.Until, ids}, func(k Key, n int64) { at(k).Rejects += n })
	if err != nil {
		return nil, fmt.Errorf("count herd.rejects: %w", err)
	}
	if lake != nil {
		lc, err := lake.Counts(ctx, r.Since, r.Until, ids, r.Floor)
		if err != nil {
			return nil, fmt.Errorf("count the lake's rows: %w", err)
		}
		for k, n := range lc {
			h := at(k)
			h.Lake += n.Rows
			h.LakeOpen = h.LakeOpen || n.Open
		}
	}
	// Days whose ledger entries predate its hours: no per-hour accounting.
	unhoured := map[Key]bool{}
	err = scanCounts(ctx, db, `SELECT source_id, day::timestamp AT TIME ZONE 'UTC', ids FROM herd.message_ids_unhoured
		WHERE day >= ($1 AT TIME ZONE 'UTC')::date AND day < ($2 AT TIME ZONE 'UTC')::date + 1`, []any{r.Since, r.Until},
		func(k Key, _ int64) { unhoured[k] = true })
	if err != nil {
		return nil, fmt.Errorf("read herd.message_ids_unhoured: %w", err)
	}

	for _, h := range counts {
		if unhoured[Key{h.Source, h.Hour.Truncate(24 * time.Hour)}] {
			h.Accepted = -1
		}
		if h.Accepted == 0 && h.Events == 0 && h.Lake <= 0 {
			continue // rejects alone
		}
		r.Hours = append(r.Hours, *h)
	}
	if len(unhoured) > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d source-days hold ledger entries from before the ledger kept hours: their hours compare herd.events with the lake only (ACCEPTED ?)", len(unhoured)))
	}
	for _, h := range counts {
		r.Rejects += h.Rejects
	}
	sort.Slice(r.Hours, func(i, j int) bool {
		a, b := r.Hours[i], r.Hours[j]
		if !a.Hour.Equal(b.Hour) {
			return a.Hour.Before(b.Hour)
		}
		return a.Source < b.Source
	})
	for _, h := range r.Hours {
		if h.Differs() {
			r.Differences++
		}
		if h.LakeOpen && h.Lake >= 0 {
			r.LakeOpen++
			if h.Lake > h.Accepted && h.Accepted >= 0 && h.Events == h.Accepted {
				r.LakeOpenExtra += h.Lake - h.Accepted
			}
		}
		if h.Accepted > 0 {
			r.Accepted += h.Accepted
		}
		r.Events += h.Events
		if h.Lake > 0 {
			r.Lake += h.Lake
		}
	}
	if r.LakeOpen > 0 {
		n := fmt.Sprintf("%d source-hours of the lake are still open (not compacted until --lake-close-after past their hour): a retried event may be there twice until then, so only missing lake rows count as differences in them", r.LakeOpen)
		if r.LakeOpenExtra > 0 {
			n += fmt.Sprintf("; they hold %d such extra copies now", r.LakeOpenExtra)
		}
		r.Notes = append(r.Notes, n)
	}
	r.Finished = cfg.Now().UTC()
	return r, nil
}

// floor reads, before anything is counted, how far the writer and the
// archiver have acknowledged the stream.
func (r *Result) floor(ctx context.Context, js jetstream.JetStream, cfg Config, wantLake bool) error {
	s, err := js.Stream(ctx, cfg.Stream.Name)
	if err != nil {
		return fmt.Errorf("stream %s: %w (is NATS the one herd writes to? see --nats-url and --stream)", cfg.Stream.Name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", cfg.Stream.Name, err)
	}
	r.StreamLast = info.State.LastSeq
	ackFloor := func(name string) (uint64, bool, error) {
		c, err := s.Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("consumer %s on %s: %w", name, cfg.Stream.Name, err)
		}
		ci, err := c.Info(ctx)
		if err != nil {
			return 0, false, fmt.Errorf("consumer %s on %s: %w", name, cfg.Stream.Name, err)
		}
		return ci.AckFloor.Stream, true, nil
	}
	wf, ok, err := ackFloor(cfg.WriterConsumer)
	if err != nil {
		return err
	}
	if !ok {
		r.Notes = append(r.Notes, fmt.Sprintf("no writer consumer %s: no event from the stream was compared", cfg.WriterConsumer))
	}
	r.WriterFloor, r.Floor = wf, wf
	if !wantLake {
		return nil
	}
	lf, ok, err := ackFloor(cfg.ArchiverConsumer)
	if err != nil {
		return err
	}
	if !ok {
		r.Notes = append(r.Notes, fmt.Sprintf("no archiver consumer %s on %s: the lake was not compared", cfg.ArchiverConsumer, cfg.Stream.Name))
		return nil
	}
	r.LakeFloor, r.LakeCompared = lf, true
	r.Floor = min(wf, lf)
	return nil
}

// sources maps every source id to its name and returns the ids asked for.
func sources(ctx context.Context, db *pgxpool.Pool, want []string) (map[int64]string, []int64, error) {
	rows, _ := db.Query(ctx, `SELECT id, name FROM herd.sources ORDER BY id`)
	names := map[int64]string{}
	byName := map[string]int64{}
	var all []int64
	var id int64
	var name string
	_, err := pgx.ForEachRow(rows, []any{&id, &name}, func() error {
		names[id], byName[name] = name, id
		all = append(all, id)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read herd.sources: %w", err)
	}
	if len(want) == 0 {
		return names, all, nil
	}
	var ids []int64
	for _, n := range want {
		id, ok := byName[n]
		if !ok {
			return nil, nil, &UnknownSourceError{Name: n}
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return names, ids, nil
}

// UnknownSourceError is a --source that names no source.
type UnknownSourceError struct{ Name string }

func (e *UnknownSourceError) Error() string {
	return fmt.Sprintf("no source named %q ('herd sources list' shows them)", e.Name)
}

func scanCounts(ctx context.Context, db *pgxpool.Pool, sql string, args []any, add func(Key, int64)) error {
	rows, _ := db.Query(ctx, sql, args...)
	var k Key
	var n int64
	_, err := pgx.ForEachRow(rows, []any{&k.Source, &k.Hour, &n}, func() error {
		k.Hour = k.Hour.UTC()
		add(k, n)
		return nil
	})
	return err
}
