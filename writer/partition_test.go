package writer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/jackc/pgx/v5/pgxpool"
)

func migratedDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	db := pgtest.Pool(t, pgtest.New(t))
	if _, err := schemas.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

// spread is one event a day from 2000-01-01 (the oldest time the collector
// accepts) to now, at varying hours: what one hostile or historical batch
// can send.
func spread(prefix string, now time.Time) []Row {
	var rows []Row
	start := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for d, i := start, 0; !d.After(now); d, i = d.AddDate(0, 0, 1), i+1 {
		ts := d.Add(time.Duration(i*37%1440) * time.Minute)
		if ts.After(now) {
			ts = now
		}
		rows = append(rows, Row{Seq: uint64(i + 1), Event: herd.Event{
			MessageID: fmt.Sprintf("%s-%d", prefix, i), SourceID: 1, Type: herd.TypeTrack, Event: "Imported",
			Timestamp: ts, ReceivedAt: now,
		}})
	}
	return rows
}

func partitionCount(t *testing.T, db *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM pg_inherits WHERE inhparent = 'herd.events'::regclass`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// partitionBound is the most partitions a fresh warehouse may hold after
// events at any times from 2000 to now: one coarse partition per year
// before the window's first day, one for that day's year up to it, and the
// window's days up to today.
func partitionBound(now time.Time, window int) int {
	from := day(now).AddDate(0, 0, -window)
	return (from.Year() - 2000 + 1) + window + 1
}

// The number of partitions follows the wall clock, not the event times: one
// batch with an event on every day since 2000 (about 9,600 days) creates
// at most partitionBound of them, every event lands exactly once, and more
// such events create none.
func TestPartitionsBoundedByWallClock(t *testing.T) {
	db := migratedDB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	const window = 35
	s := NewStore(db)
	s.SetPartitionWindow(window)
	rows := spread("hist", now)
	res, err := s.Write(ctx, rows, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Inserted != int64(len(rows)) || res.Rejected != 0 {
		t.Fatalf("inserted %d, rejected %d of %d events", res.Inserted, res.Rejected, len(rows))
	}
	n := partitionCount(t, db)
	if bound := partitionBound(now, window); n > bound {
		t.Fatalf("%d partitions for events on %d distinct days; want at most %d", n, len(rows), bound)
	}
	t.Logf("%d events on distinct days since 2000: %d partitions", len(rows), n)

	// Every event once, in a partition that holds its time.
	var rowsIn, ids, ledger int64
	if err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT message_id), (SELECT count(*) FROM herd.message_ids) FROM herd.events`).Scan(&rowsIn, &ids, &ledger); err != nil {
		t.Fatal(err)
	}
	if rowsIn != int64(len(rows)) || ids != rowsIn || ledger != rowsIn {
		t.Fatalf("rows %d, distinct ids %d, ledger %d; want %d each", rowsIn, ids, ledger, len(rows))
	}
	// The same events again (a redelivery, a replay): nothing new.
	if res, err := s.Write(ctx, rows, nil); err != nil || res.Inserted != 0 || res.Duplicates != int64(len(rows)) {
		t.Fatalf("second write: %+v, %v; want every event a duplicate", res, err)
	}
	// Other times in the same years, from a writer with a cold cache: no
	// new partition.
	other := spread("again", now)
	for i := range other {
		other[i].Timestamp = other[i].Timestamp.Add(-11 * time.Hour)
		if other[i].Timestamp.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) {
			other[i].Timestamp = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
		}
	}
	s2 := NewStore(db)
	s2.SetPartitionWindow(window)
	if _, err := s2.Write(ctx, other, nil); err != nil {
		t.Fatal(err)
	}
	if m := partitionCount(t, db); m != n {
		t.Fatalf("%d partitions after more events in the same days; had %d", m, n)
	}
}

// Writers racing for the same days create each partition once, without
// an error, and store each event once.
func TestPartitionCreationRace(t *testing.T) {
	db := migratedDB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	rows := spread("race", now)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := NewStore(db)
			// Each writer its own quarter of the events, all of the days.
			var mine []Row
			for i := w; i < len(rows); i += 4 {
				mine = append(mine, rows[i])
			}
			if _, err := s.Write(ctx, mine, nil); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var n int64
	if err := db.QueryRow(ctx, `SELECT count(DISTINCT message_id) FROM herd.events`).Scan(&n); err != nil || n != int64(len(rows)) {
		t.Fatalf("%d distinct events stored (%v); want %d", n, err, len(rows))
	}
	if p := partitionCount(t, db); p > partitionBound(now, DefaultPartitionWindow) {
		t.Fatalf("%d partitions; want at most %d", p, partitionBound(now, DefaultPartitionWindow))
	}
}

// Retention drops the partitions wholly past it, deletes the old rows of a
// coarse partition that straddles the cutoff, and forgets exactly the
// message ids of the rows gone: the ledger and the rows agree.
func TestRetentionWithCoarsePartitions(t *testing.T) {
	db := migratedDB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	if _, err := NewStore(db).Write(ctx, spread("ret", now), nil); err != nil {
		t.Fatal(err)
	}
	before := partitionCount(t, db)
	cutoff := time.Date(2010, 7, 1, 0, 0, 0, 0, time.UTC) // inside the coarse partition of 2010
	var dropped int
	if err := db.QueryRow(ctx, `SELECT herd.drop_partitions_before($1::date)`, cutoff).Scan(&dropped); err != nil {
		t.Fatal(err)
	}
	if dropped != 10 || partitionCount(t, db) != before-10 {
		t.Fatalf("dropped %d partitions (%d -> %d); want the 10 years 2000-2009", dropped, before, partitionCount(t, db))
	}
	var old, rows, ledger, orphans int64
	if err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE "timestamp" < $1), count(*),
		(SELECT count(*) FROM herd.message_ids),
		(SELECT count(*) FROM herd.message_ids m WHERE NOT EXISTS (SELECT 1 FROM herd.events e WHERE e.source_id = m.source_id AND e.message_id = m.message_id))
		FROM herd.events`, cutoff).Scan(&old, &rows, &ledger, &orphans); err != nil {
		t.Fatal(err)
	}
	if old != 0 || ledger != rows || orphans != 0 {
		t.Fatalf("after retention: %d rows before the cutoff, %d rows, %d ledger entries, %d without a row", old, rows, ledger, orphans)
	}
	want := int64(len(spread("x", now))) - int64(cutoff.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))/(24*time.Hour))
	if rows != want {
		t.Fatalf("%d rows kept; want %d (one a day from the cutoff on)", rows, want)
	}
}
