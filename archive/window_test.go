package archive

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/writer"
)

// dailySince2000 is one event a day from 2000-01-01 (the oldest time the
// collector accepts) to now, at varying hours: what one hostile or
// historical import can send.
func dailySince2000(src int64, now time.Time) []herd.Event {
	var evs []herd.Event
	for d, i := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), 0; !d.After(now); d, i = d.AddDate(0, 0, 1), i+1 {
		ts := d.Add(time.Duration(i*37%1440) * time.Minute)
		if ts.After(now) {
			ts = now
		}
		evs = append(evs, herd.Event{MessageID: fmt.Sprintf("old-%d", i), SourceID: src, Type: herd.TypeTrack,
			Event: "Imported", UserID: "u", Timestamp: ts, ReceivedAt: now})
	}
	return evs
}

// partitionDirs counts the lake's partition directories (those holding a
// manifest).
func partitionDirs(t *testing.T, root string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && e.Name() == ManifestName {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The lake's directories follow the wall clock, not the event times: one
// import with an event on every day since 2000 (about 9,600 days, 230,000
// hours) makes at most one directory per month before the window and one
// per hour inside it; every event is archived once, replay loads each back
// exactly once, and Locate finds an old one.
func TestOldEventsGoToMonthBuckets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	dir := t.TempDir()
	lake := NewDir(dir)
	cfg := Config{Stream: e.sc, FileMaxAge: time.Second}
	r := startArchiver(t, New(cfg, lake, e.js, testLog(t), nil))
	now := time.Now().UTC()
	evs := dailySince2000(1, now)
	publishFrames(t, e.js, e.sc, evs, 400)
	waitArchived(t, e, cfg, 120*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	months := (now.Year()-2000)*12 + int(now.Month())
	bound := months + 24*(int(DefaultWindow/(24*time.Hour))+2)
	if n := partitionDirs(t, dir); n > bound {
		t.Fatalf("%d lake directories for events on %d days; want at most %d", n, len(evs), bound)
	} else {
		t.Logf("%d events on distinct days since 2000: %d lake directories", len(evs), n)
	}
	checkUnique(t, lakeRecords(t, lake), len(evs))
	if _, err := os.Stat(filepath.Join(dir, "source=1", "date=2003-05-01", "hour=-1", ManifestName)); err != nil {
		t.Fatalf("no month bucket for May 2003: %v", err)
	}

	t.Run("duckdb", func(t *testing.T) {
		// The documented glob reads month buckets too; their date is the
		// month's first day and their hour -1, the timestamp is exact.
		got := duckdb(t, fmt.Sprintf(`SELECT count(*) AS n, count(*) FILTER (WHERE hour = -1) AS old,
			count(*) FILTER (WHERE hour = -1 AND date_trunc('month', "timestamp") <> date) AS misplaced
			FROM read_parquet('%s/source=*/date=*/hour=*/*.parquet', hive_partitioning = true)`, dir))
		if str(got[0]["n"]) != fmt.Sprint(len(evs)) || str(got[0]["misplaced"]) != "0" || str(got[0]["old"]) == "0" {
			t.Fatalf("duckdb reads %v; want %d rows, the old ones in their month's bucket", got, len(evs))
		}
	})

	db := pgtest.Pool(t, pgtest.New(t))
	ctx := context.Background()
	if _, err := schemas.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	opt := ReplayOptions{From: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), To: now}
	res, err := Replay(ctx, lake, db, writer.NewStore(db), opt)
	if err != nil {
		t.Fatal(err)
	}
	var rows, ids int64
	if err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT message_id) FROM herd.events`).Scan(&rows, &ids); err != nil {
		t.Fatal(err)
	}
	if res.Inserted != int64(len(evs)) || rows != int64(len(evs)) || ids != rows {
		t.Fatalf("replay: %+v; herd.events holds %d rows, %d distinct; want %d", res, rows, ids, len(evs))
	}
	if res, err := Replay(ctx, lake, db, writer.NewStore(db), opt); err != nil || res.Inserted != 0 {
		t.Fatalf("second replay: %+v, %v; want nothing inserted", res, err)
	}

	// One day inside a month bucket: only that day's event.
	d := time.Date(2003, 5, 17, 0, 0, 0, 0, time.UTC)
	if _, err := db.Exec(ctx, `TRUNCATE herd.events, herd.message_ids`); err != nil {
		t.Fatal(err)
	}
	res, err = Replay(ctx, lake, db, writer.NewStore(db), ReplayOptions{From: d, To: d})
	if err != nil || res.Inserted != 1 || res.Rows != 1 {
		t.Fatalf("replay of %s: %+v, %v; want its one event", d.Format(time.DateOnly), res, err)
	}

	var old herd.Event
	for _, ev := range evs {
		if ev.Timestamp.Year() == 2003 && ev.Timestamp.Month() == 5 && ev.Timestamp.Day() == 17 {
			old = ev
		}
	}
	var seq int64
	if err := db.QueryRow(ctx, `SELECT stream_seq FROM herd.events WHERE message_id = $1`, old.MessageID).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	key, _, err := Locate(ctx, lake, 1, old.Timestamp, uint64(seq))
	if err != nil || filepath.Dir(key) != "source=1/date=2003-05-01/hour=-1" {
		t.Fatalf("Locate of an old event: %q, %v", key, err)
	}
}
