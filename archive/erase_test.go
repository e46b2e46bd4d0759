package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/writer"
)

// victimIDs are the person an erasure test removes: a user id and an
// anonymous id linked to it.
var victimIDs = []string{"victim", "victim-anon"}

// withVictim makes every fifth event the victim's, by user id or by
// anonymous id alone; it returns how many.
func withVictim(evs []herd.Event) int {
	n := 0
	for i := range evs {
		switch i % 10 {
		case 0:
			evs[i].UserID = victimIDs[0]
			n++
		case 5:
			evs[i].UserID, evs[i].AnonymousID = "", victimIDs[1]
			n++
		default:
			if evs[i].UserID == victimIDs[0] || evs[i].AnonymousID == victimIDs[1] {
				evs[i].AnonymousID = ""
			}
		}
	}
	return n
}

// An erasure asked of the running archiver (herd privacy delete with a
// NATS URL) while the archiver keeps writing late events into the very
// partition and compacting it (closed at once): the erased rows never come
// back, every manifest matches its files and their checksums (replay
// verifies them), the partition is compacted with its sums right, and the
// lake (DuckDB's count) equals Postgres.
func TestEraseWhileArchiving(t *testing.T) {
	t.Parallel()
	for _, tl := range testLakes {
		t.Run(tl.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, true)
			runWriter(t, e)
			lake := tl.open(t)
			hour := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
			cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 40, FileMaxAge: 300 * time.Millisecond,
				CloseAfter: time.Nanosecond, CompactEvery: time.Nanosecond}
			r := startArchiver(t, New(cfg, lake, e.js, testLog(t), nil))

			evs := genEvents(500, []int64{1}, hour, time.Hour, 41)
			victims := withVictim(evs)
			publish(t, e.js, e.sc, evs)
			waitWritten(t, e, 500)
			waitArchived(t, e, cfg, 30*time.Second)

			// Other people's late events keep arriving in the same hour:
			// files are flushed into the partition and it is compacted
			// again and again, before, during and after the erasure.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var late int
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					batch := genEvents(10, []int64{1}, hour, time.Hour, uint64(1000+i))
					for j := range batch {
						batch[j].MessageID = fmt.Sprintf("late-%d-%d", i, j)
						batch[j].UserID, batch[j].AnonymousID = fmt.Sprintf("late-user-%d", j), ""
						b, _ := json.Marshal(&batch[j])
						if _, err := e.js.Publish(ctx, e.sc.EventSubject(1), b); err != nil {
							t.Errorf("publish late event: %v", err)
							return
						}
					}
					late += len(batch)
				}
			}()
			time.Sleep(1500 * time.Millisecond)

			// herd privacy delete: Postgres first, then the archiver's lake.
			tag, err := e.db.Exec(ctx, `DELETE FROM herd.events WHERE user_id = ANY($1) OR anonymous_id = ANY($1)`, victimIDs)
			if err != nil || tag.RowsAffected() != int64(victims) {
				t.Fatalf("delete the victim's rows: %v, %d rows, want %d", err, tag.RowsAffected(), victims)
			}
			res, lakeName, err := RequestErase(ctx, e.js.Conn(), e.sc, EraseRequest{IDs: victimIDs}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if res.Removed != int64(victims) || lakeName != lake.String() {
				t.Fatalf("erase removed %d rows of %s, want %d of %s", res.Removed, lakeName, victims, lake)
			}
			var byHour int64
			for _, n := range res.ByHour {
				byHour += n
			}
			if byHour != res.Removed {
				t.Fatalf("erase counted %d rows by hour, %d in all", byHour, res.Removed)
			}
			time.Sleep(2500 * time.Millisecond)
			close(stop)
			wg.Wait()

			total := int64(500 - victims + late)
			waitWritten(t, e, total)
			waitArchived(t, e, cfg, 30*time.Second)
			p := partition{source: 1, hour: hour}
			waitFor(t, 30*time.Second, "the partition compacted", func() (bool, string) {
				m, err := readManifest(ctx, lake, p.prefix())
				if err != nil {
					return false, err.Error()
				}
				return m.Compacted && m.Rows == total, fmt.Sprintf("compacted %v, %d rows of %d", m.Compacted, m.Rows, total)
			})
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}

			recs := lakeRecords(t, lake) // every file as its manifest entry says
			checkUnique(t, recs, int(total))
			m, err := readManifest(ctx, lake, p.prefix())
			if err != nil {
				t.Fatal(err)
			}
			minSeq, maxSeq := uint64(recs[0].StreamSeq), uint64(0)
			for _, rec := range recs {
				if MatchIDs(victimIDs)(new(rec.event())) {
					t.Fatalf("erased event %s (seq %d) is back in the lake", rec.MessageID, rec.StreamSeq)
				}
				minSeq, maxSeq = min(minSeq, uint64(rec.StreamSeq)), max(maxSeq, uint64(rec.StreamSeq))
			}
			if !m.Compacted || len(m.Files) != 1 || m.Rows != total || m.MinSeq != minSeq || m.MaxSeq != maxSeq {
				t.Fatalf("manifest: compacted %v, %d files, rows %d, seqs %d-%d; want compacted, 1 file, %d rows, seqs %d-%d",
					m.Compacted, len(m.Files), m.Rows, m.MinSeq, m.MaxSeq, total, minSeq, maxSeq)
			}

			// A replay verifies each file's checksum against its manifest
			// and finds nothing to add.
			rr, err := Replay(ctx, lake, e.db, writer.NewStore(e.db), ReplayOptions{From: hour, To: hour})
			if err != nil {
				t.Fatal(err)
			}
			if rr.Inserted != 0 || rr.Rows != total || countEvents(t, e.db) != total {
				t.Fatalf("replay %+v; want %d rows, none inserted", rr, total)
			}
			checkWithDuckDB(t, e.db, localCopy(t, lake))
		})
	}
}

// With no archiver answering, an erasure goes straight to the lake, but
// not while an archiver's lease on it is fresh: that archiver would write
// back what the erasure removed.
func TestEraseDirectRespectsTheLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, false)
	lake := NewDir(t.TempDir())
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 50, FileMaxAge: 200 * time.Millisecond, CloseAfter: -1}
	evs := genEvents(100, []int64{1}, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), time.Hour, 43)
	victims := withVictim(evs)
	publish(t, e.js, e.sc, evs)
	r := startArchiver(t, New(cfg, lake, e.js, testLog(t), nil))
	waitArchived(t, e, cfg, 30*time.Second)

	opt := EraseOptions{Match: MatchIDs(victimIDs)}
	var running *ErrArchiverRunning
	if _, err := EraseDirect(ctx, lake, opt); !errors.As(err, &running) {
		t.Fatalf("direct erase beside a running archiver: %v, want ErrArchiverRunning", err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := RequestErase(ctx, e.js.Conn(), e.sc, EraseRequest{IDs: victimIDs}, 5*time.Second); !errors.Is(err, ErrNoArchiver) {
		t.Fatalf("erase request with no archiver: %v, want ErrNoArchiver", err)
	}
	res, err := EraseDirect(ctx, lake, opt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed != int64(victims) {
		t.Fatalf("direct erase removed %d, want %d", res.Removed, victims)
	}
	checkUnique(t, lakeRecords(t, lake), 100-victims)
}
