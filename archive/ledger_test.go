package archive

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd"
)

// Compaction and repair refuse while an archiver's lease is fresh; and
// when a rewrite happens beside a running archiver anyway (a stale lease,
// a command of an older version), the archiver's next file is listed
// beside the rewrite's instead of over it: no row is lost.
func TestCompactBesideArchiverLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, false)
	lake := NewDir(t.TempDir())
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 20, FileMaxAge: 200 * time.Millisecond, CloseAfter: -1}
	hour := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	first := genEvents(50, []int64{1}, hour, time.Hour, 51)
	publish(t, e.js, e.sc, first)
	startArchiver(t, New(cfg, lake, e.js, testLog(t), nil))
	waitArchived(t, e, cfg, 30*time.Second)

	var running *ErrArchiverRunning
	if _, err := Compact(ctx, lake, CompactOptions{Before: time.Now()}); !errors.As(err, &running) || running.Op != "compact" {
		t.Fatalf("compact beside a running archiver: %v, want ErrArchiverRunning", err)
	}
	if _, err := Repair(ctx, lake, nil, nil, RepairOptions{Stream: e.sc}); !errors.As(err, &running) || running.Op != "repair" {
		t.Fatalf("repair beside a running archiver: %v, want ErrArchiverRunning", err)
	}
	t.Logf("refused: %v", running)
	checkUnique(t, lakeRecords(t, lake), 50)

	// A rewrite behind the archiver's back, then more events of the hour.
	p := partition{source: 1, hour: hour}
	if r, err := compactPartition(ctx, lake, p, e.sc.Name, nil, testLog(t)); err != nil || r.Partitions != 1 {
		t.Fatalf("compaction beside the archiver: %+v %v", r, err)
	}
	publish(t, e.js, e.sc, genEvents(50, []int64{1}, hour, time.Hour, 52))
	waitArchived(t, e, cfg, 30*time.Second)
	// The next open of the partition (any rewrite, a restart) deletes what
	// no manifest lists.
	if _, err := openPartition(ctx, lake, p, e.sc.Name, testLog(t)); err != nil {
		t.Fatal(err)
	}
	checkUnique(t, lakeRecords(t, lake), 100)
}

// With Postgres, the lake follows the warehouse's word: an erased event
// a client sends again is not archived; a retry whose corrected timestamp
// fell into the next hour is kept once, as the copy the ledger names; an
// event the writer refused is not in a compacted partition. DuckDB's
// count(*) equals herd.events.
func TestCompactionFollowsTheLedger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, true)
	lake := NewDir(t.TempDir())
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 20, FileMaxAge: 200 * time.Millisecond, CloseAfter: -1, DB: e.db}
	hour := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	evs := genEvents(60, []int64{1}, hour, time.Hour, 61)
	victims := withVictim(evs)
	runWriter(t, e)
	r := startArchiver(t, New(cfg, lake, e.js, testLog(t), nil))
	publishFrames(t, e.js, e.sc, evs, 1)

	// One message id sent twice, 2 s apart, across the hour boundary: the
	// first copy is the one the writer stores.
	cross := herd.Event{MessageID: "cross-hour", SourceID: 1, Type: herd.TypeTrack, Event: "Retried",
		Timestamp: hour.Add(time.Hour - time.Second), ReceivedAt: hour.Add(time.Hour - time.Second)}
	publishFrames(t, e.js, e.sc, []herd.Event{cross}, 1)
	waitWritten(t, e, int64(len(evs)+1))
	retried := cross
	retried.Timestamp, retried.ReceivedAt = hour.Add(time.Hour+time.Second), hour.Add(time.Hour+time.Second)
	publishFrames(t, e.js, e.sc, []herd.Event{retried}, 1)
	// An event Postgres refuses (a NUL in JSON text) that the lake can hold.
	bad := herd.Event{MessageID: "refused", SourceID: 1, Type: herd.TypeTrack, Event: "Bad",
		Timestamp: hour.Add(time.Minute), ReceivedAt: hour.Add(time.Minute), Properties: json.RawMessage(`{"k":"a\u0000b"}`)}
	publishFrames(t, e.js, e.sc, []herd.Event{bad}, 1)
	waitFor(t, 30*time.Second, "the writer to reject the refused event", func() (bool, string) {
		var n int
		_ = e.db.QueryRow(ctx, `SELECT count(*) FROM herd.rejects WHERE message_id = 'refused'`).Scan(&n)
		return n == 1, ""
	})
	waitArchived(t, e, cfg, 30*time.Second)

	// A privacy deletion: the archiver erases the lake; Postgres loses the
	// rows and records their ids (as herd privacy delete does).
	if _, _, err := RequestErase(ctx, e.js.Conn(), e.sc, EraseRequest{IDs: victimIDs}, time.Minute); err != nil {
		t.Fatal(err)
	}
	var vict []herd.Event
	for _, ev := range evs {
		if ev.UserID == victimIDs[0] || ev.AnonymousID == victimIDs[1] {
			vict = append(vict, ev)
		}
	}
	if len(vict) != victims {
		t.Fatalf("%d victim events, want %d", len(vict), victims)
	}
	var req int64
	if err := e.db.QueryRow(ctx, `INSERT INTO herd.privacy_requests (kind, user_ids) VALUES ('delete', $1) RETURNING id`, victimIDs[:1]).Scan(&req); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(ctx, `INSERT INTO herd.privacy_erased (source_id, message_id, request_id)
		SELECT source_id, message_id, $2 FROM herd.events WHERE user_id = ANY($1) OR anonymous_id = ANY($1)`, victimIDs, req); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(ctx, `DELETE FROM herd.events WHERE user_id = ANY($1) OR anonymous_id = ANY($1)`, victimIDs); err != nil {
		t.Fatal(err)
	}
	// The client retries the deleted events.
	publishFrames(t, e.js, e.sc, vict, 1)
	waitArchived(t, e, cfg, 30*time.Second)
	isVictim := func(rec record) bool { return val(rec.UserID) == victimIDs[0] || val(rec.AnonymousID) == victimIDs[1] }
	for _, rec := range lakeRecords(t, lake) {
		if isVictim(rec) {
			t.Fatalf("the archiver wrote an erased event again: %s (seq %d)", rec.MessageID, rec.StreamSeq)
		}
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	res, err := Compact(ctx, lake, CompactOptions{Before: hour.Add(3 * time.Hour), Stream: e.sc.Name, DB: e.db, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compacted: %+v", res)
	recs := lakeRecords(t, lake)
	stored := countEvents(t, e.db)
	checkUnique(t, recs, int(stored))
	var ledgerSeq int64
	if err := e.db.QueryRow(ctx, `SELECT stream_seq FROM herd.message_ids WHERE message_id = 'cross-hour'`).Scan(&ledgerSeq); err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		switch {
		case isVictim(rec):
			t.Fatalf("erased event %s in the lake after compaction", rec.MessageID)
		case rec.MessageID == "refused":
			t.Fatal("an event the writer refused is in a compacted partition")
		case rec.MessageID == "cross-hour" && rec.StreamSeq != ledgerSeq:
			t.Fatalf("kept copy seq %d of the retried event, the ledger names %d", rec.StreamSeq, ledgerSeq)
		}
	}
	checkWithDuckDB(t, e.db, localCopy(t, lake))
}

// A lake file deleted by hand: RecordHourGaps names its hour from
// herd.events (the hours herd check reports), and a repair refills it from
// Postgres, so the lake equals herd.events again.
func TestRecordHourGapsRefillsFromPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, true)
	lake := NewDir(t.TempDir())
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 1000, FileMaxAge: 200 * time.Millisecond, CloseAfter: -1}
	hour := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	evs := genEvents(80, []int64{1}, hour, 2*time.Hour, 71)
	runWriter(t, e)
	publish(t, e.js, e.sc, evs)
	waitWritten(t, e, int64(len(evs)))
	r := startArchiver(t, New(cfg, lake, e.js, testLog(t), nil))
	waitArchived(t, e, cfg, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	lost := partition{source: 1, hour: hour.Add(time.Hour)}
	objs, err := lake.List(ctx, lost.prefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".parquet") {
			if err := lake.Delete(ctx, o.Key); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := openPartition(ctx, lake, lost, e.sc.Name, testLog(t)); err != nil { // the manifest forgets the file
		t.Fatal(err)
	}
	gaps, err := RecordHourGaps(ctx, lake, e.db, e.sc.Name, hour.Add(-time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) != 1 || gaps[0].Hour != lost.hour || gaps[0].Lake != 0 || gaps[0].Events == 0 {
		t.Fatalf("gaps %+v, want hour %s alone", gaps, lost.hour)
	}
	res, err := Repair(ctx, lake, nil, e.db, RepairOptions{Stream: e.sc, Window: fixedDatesWindow, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if res.FromPostgres != gaps[0].Events {
		t.Fatalf("repair %+v, want %d rows from postgres", res, gaps[0].Events)
	}
	checkUnique(t, lakeRecords(t, lake), len(evs))
	checkWithDuckDB(t, e.db, localCopy(t, lake))
}
