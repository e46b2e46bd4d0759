package archive

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/natstest"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/stream"
)

// provenanceCounts reads the lake with DuckDB: rows per provenance.
func provenanceCounts(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range duckdb(t, fmt.Sprintf(`SELECT coalesce(provenance, '?') AS prov, count(*) AS n
		FROM read_parquet('%s/source=*/date=*/hour=*/*.parquet', hive_partitioning = true) GROUP BY ALL`, dir)) {
		out[str(r["prov"])] = str(r["n"])
	}
	return out
}

// Acceptance 2 of issue 16: with the archiver stopped, the stream passes
// the trim pressure and its events are trimmed before the archiver had
// them. After catch-up the lake is complete, and the repaired rows say they
// came from Postgres. On disk the archiver repairs (it has Postgres, as in
// herd up); on S3 it records the gap and `herd archive repair` (Repair)
// fills it.
func TestGapRepairedAfterTrim(t *testing.T) {
	t.Parallel()
	for _, tl := range testLakes {
		t.Run(tl.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			sc := natstest.StreamConfig(t)
			sc.MaxBytes = 256 << 10
			e := &env{srv: natstest.Run(t), sc: sc}
			e.js = natstest.JetStream(t, e.srv, sc)
			e.db = pgtest.Pool(t, pgtest.New(t))
			if _, err := schemas.Migrate(ctx, e.db); err != nil {
				t.Fatal(err)
			}
			runWriter(t, e)
			lake := tl.open(t)
			cfg := Config{Stream: sc, Window: fixedDatesWindow, FileMaxAge: time.Second, GapEvery: 200 * time.Millisecond, CompactEvery: 200 * time.Millisecond}
			if tl.name == "dir" {
				cfg.DB = e.db
			}
			start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

			// Running: the first events reach the lake.
			a1 := New(cfg, lake, e.js, testLog(t), nil)
			r := startArchiver(t, a1)
			before := genEvents(50, []int64{1, 2}, start, 2*time.Hour, 11)
			publish(t, e.js, sc, before)
			waitArchived(t, e, cfg, 30*time.Second)
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}

			// Stopped: events until the stream is past the trim pressure.
			var missed int
			for seed := uint64(100); ; seed++ {
				evs := genEvents(20, []int64{1, 2}, start, 2*time.Hour, seed)
				publish(t, e.js, sc, evs)
				missed += len(evs)
				s, err := e.js.Stream(ctx, sc.Name)
				if err != nil {
					t.Fatal(err)
				}
				info, err := s.Info(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if float64(info.State.Bytes) >= 0.8*float64(sc.MaxBytes) {
					break
				}
			}
			waitWritten(t, e, int64(len(before)+missed))
			tr, err := stream.Trim(ctx, e.js, sc)
			if err != nil {
				t.Fatal(err)
			}
			// Every event was one stream message: the archiver had the first
			// len(before), the gap is every one after.
			wantGap := stream.SeqRange{First: uint64(len(before)) + 1, Last: uint64(len(before) + missed)}
			if tr.Purged != uint64(len(before)+missed) || len(tr.Gaps) != 1 || tr.Gaps[0].Consumer != "herd-archiver" || tr.Gaps[0].SeqRange != wantGap {
				t.Fatalf("trim under pressure: %+v, want everything purged and the gap %+v", tr, wantGap)
			}
			after := genEvents(30, []int64{1, 2}, start, 2*time.Hour, 999)
			publish(t, e.js, sc, after)
			total := int64(len(before) + missed + len(after))
			waitWritten(t, e, total)

			// Restarted: it catches up, and the gap is filled.
			a2 := New(cfg, lake, e.js, testLog(t), nil)
			r = startArchiver(t, a2)
			waitArchived(t, e, cfg, 30*time.Second)
			if tl.name == "dir" {
				waitFor(t, 30*time.Second, "the gap to be repaired and the hours compacted", func() (bool, string) {
					g, err := ReadGaps(ctx, lake)
					if err != nil {
						return false, err.Error()
					}
					cs, err := Counts(ctx, lake, time.Time{})
					if err != nil {
						return false, err.Error()
					}
					var rows int64
					done := len(g.Ranges) == 0
					for _, c := range cs {
						rows += c.Rows
						done = done && c.Compacted
					}
					return done && rows == total, fmt.Sprintf("gaps %v, %d rows in %d partitions", g.Ranges, rows, len(cs))
				})
				if err := r.stop(); err != nil {
					t.Fatal(err)
				}
				if got := counterValue(a2.m.repaired.WithLabelValues(ProvPostgres)); got != float64(missed) {
					t.Errorf("herd_archive_repaired_rows_total{from=postgres} = %v, want %d", got, missed)
				}
			} else {
				waitFor(t, 10*time.Second, "the gap to be recorded in the lake", func() (bool, string) {
					g, err := ReadGaps(ctx, lake)
					return err == nil && len(g.Ranges) == 1, fmt.Sprintf("%+v %v", g, err)
				})
				if err := r.stop(); err != nil {
					t.Fatal(err)
				}
				if got := len(lakeRecords(t, lake)); got != len(before)+len(after) {
					t.Fatalf("before the repair the lake holds %d rows, want %d", got, len(before)+len(after))
				}
				res, err := Repair(ctx, lake, e.js, e.db, RepairOptions{Stream: sc, Window: fixedDatesWindow, Log: testLog(t)})
				if err != nil {
					t.Fatal(err)
				}
				if res.Ranges != 1 || res.FromPostgres != int64(missed) || res.FromStream != 0 {
					t.Fatalf("repair: %+v, want %d rows from postgres", res, missed)
				}
				if g, err := ReadGaps(ctx, lake); err != nil || len(g.Ranges) != 0 {
					t.Fatalf("gaps after the repair: %+v %v", g, err)
				}
			}
			if got := counterValue(a2.m.gaps); got != 1 {
				t.Errorf("herd_archive_gaps_total = %v, want 1", got)
			}
			checkUnique(t, lakeRecords(t, lake), int(total))
			dir := localCopy(t, lake)
			checkWithDuckDB(t, e.db, dir)
			prov := provenanceCounts(t, dir)
			if prov[ProvPostgres] != fmt.Sprint(missed) || prov[ProvArchiver] != fmt.Sprint(len(before)+len(after)) || len(prov) != 2 {
				t.Fatalf("rows per provenance %v, want %d %s and %d %s", prov, missed, ProvPostgres, len(before)+len(after), ProvArchiver)
			}
		})
	}
}

// A gap found otherwise (a lost file, herd check) and recorded with
// RecordGaps is filled from the stream while it still holds the events,
// and from Postgres when it does not.
func TestRepairPrefersTheStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, true)
	runWriter(t, e)
	lake := NewDir(t.TempDir())
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 100, FileMaxAge: time.Second, CloseAfter: -1}
	r := startArchiver(t, New(cfg, lake, e.js, testLog(t), nil))
	publish(t, e.js, e.sc, genEvents(300, []int64{1}, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), 30*time.Minute, 21))
	waitWritten(t, e, 300)
	waitArchived(t, e, cfg, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	p := partition{source: 1, hour: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	man, err := readManifest(ctx, lake, p.prefix())
	if err != nil || len(man.Files) < 2 {
		t.Fatalf("manifest %+v %v, want several files", man, err)
	}
	lost := man.Files[0]
	if err := lake.Delete(ctx, p.prefix()+lost.Name); err != nil {
		t.Fatal(err)
	}
	rg := stream.SeqRange{First: lost.FirstSeq, Last: lost.LastSeq}
	for _, tc := range []struct {
		name             string
		withStream       bool
		stream, postgres int64
		wantProv         string
	}{
		{"stream", true, lost.Rows, 0, ProvStream},
		{"postgres", false, 0, lost.Rows, ProvPostgres},
	} {
		if tc.name == "postgres" {
			// Lose the repaired file as well; the stream is not asked.
			m, _ := readManifest(ctx, lake, p.prefix())
			for _, f := range m.Files {
				if f.FirstSeq == lost.FirstSeq {
					if err := lake.Delete(ctx, p.prefix()+f.Name); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if err := RecordGaps(ctx, lake, e.sc.Name, rg); err != nil {
			t.Fatal(err)
		}
		js := e.js
		if !tc.withStream {
			js = nil
		}
		res, err := Repair(ctx, lake, js, e.db, RepairOptions{Stream: e.sc, Window: fixedDatesWindow, CloseAfter: -1})
		if err != nil {
			t.Fatal(err)
		}
		if res.FromStream != tc.stream || res.FromPostgres != tc.postgres {
			t.Fatalf("%s: repair %+v, want %d from the stream and %d from postgres", tc.name, res, tc.stream, tc.postgres)
		}
		recs := lakeRecords(t, lake)
		checkUnique(t, recs, 300)
		n := 0
		for _, rec := range recs {
			if uint64(rec.StreamSeq) >= rg.First && uint64(rec.StreamSeq) <= rg.Last {
				if val(rec.Provenance) != tc.wantProv {
					t.Fatalf("%s: repaired row %s has provenance %q", tc.name, rec.MessageID, val(rec.Provenance))
				}
				n++
			}
		}
		if int64(n) != lost.Rows {
			t.Fatalf("%s: %d rows of the lost range, want %d", tc.name, n, lost.Rows)
		}
	}
	checkWithDuckDB(t, e.db, lake.root)
}

// A gap repair does not bring back what a privacy request removed: events
// whose message ids are in herd.privacy_erased, and events of a suppressed
// person, are left out even though the stream still holds them.
func TestRepairSkipsErasedAndSuppressed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, true)
	runWriter(t, e)
	lake := NewDir(t.TempDir())
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 100, FileMaxAge: time.Second, CloseAfter: -1}
	r := startArchiver(t, New(cfg, lake, e.js, testLog(t), nil))
	evs := genEvents(300, []int64{1}, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), 30*time.Minute, 23)
	publish(t, e.js, e.sc, evs)
	waitWritten(t, e, 300)
	waitArchived(t, e, cfg, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	p := partition{source: 1, hour: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	man, err := readManifest(ctx, lake, p.prefix())
	if err != nil || len(man.Files) < 2 {
		t.Fatalf("manifest %+v %v, want several files", man, err)
	}
	lost := man.Files[0]
	data, err := lake.Get(ctx, p.prefix()+lost.Name)
	if err != nil {
		t.Fatal(err)
	}
	lostRecs, err := decodeFile(data)
	if err != nil {
		t.Fatal(err)
	}
	// One event of the lost file was erased by a privacy request; the user
	// of another is suppressed.
	erasedID, suppressedUser := lostRecs[0].MessageID, val(lostRecs[1].UserID)
	var req int64
	if err := e.db.QueryRow(ctx, `INSERT INTO herd.privacy_requests (kind) VALUES ('delete') RETURNING id`).Scan(&req); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(ctx, `INSERT INTO herd.privacy_erased (source_id, message_id, request_id) VALUES (1, $1, $2)`, erasedID, req); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(ctx, `INSERT INTO herd.suppressions (key, kind, request_id) VALUES ($1, 'user_id', $2)`,
		stream.SuppressKey(stream.SuppressUserID, suppressedUser), req); err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	for _, rec := range lostRecs {
		if rec.MessageID != erasedID && val(rec.UserID) != suppressedUser {
			want++
		}
	}
	if err := lake.Delete(ctx, p.prefix()+lost.Name); err != nil {
		t.Fatal(err)
	}
	if err := RecordGaps(ctx, lake, e.sc.Name, stream.SeqRange{First: lost.FirstSeq, Last: lost.LastSeq}); err != nil {
		t.Fatal(err)
	}
	res, err := Repair(ctx, lake, e.js, e.db, RepairOptions{Stream: e.sc, Window: fixedDatesWindow, CloseAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	if res.FromStream != want || res.FromPostgres != 0 || want >= lost.Rows {
		t.Fatalf("repair %+v, want %d rows from the stream (of %d lost)", res, want, lost.Rows)
	}
	for _, rec := range lakeRecords(t, lake) {
		inGap := uint64(rec.StreamSeq) >= lost.FirstSeq && uint64(rec.StreamSeq) <= lost.LastSeq
		if rec.MessageID == erasedID || (inGap && val(rec.UserID) == suppressedUser) {
			t.Fatalf("repair brought back %s of user %s", rec.MessageID, val(rec.UserID))
		}
	}
}
