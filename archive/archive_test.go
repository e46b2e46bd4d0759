package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/writer"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 11, 26, 10, 4, 5, 123456789, time.UTC)
	ot := ts.Add(-time.Second)
	full := herd.Event{
		MessageID: "m1", SourceID: 7, Type: "track", Event: "Signed Up", AnonymousID: "a", UserID: "u", GroupID: "g", PreviousID: "p",
		Timestamp: ts, OriginalTimestamp: &ot, SentAt: &ot, ReceivedAt: ts,
		Context: json.RawMessage(`{"ip":"1.2.3.4"}`), Properties: json.RawMessage(`{"a":[1,2]}`), Traits: json.RawMessage(`{"t":true}`),
		Enrichment: herd.Enrichment{URL: "u", Path: "/", Referrer: "r", Title: "t", Search: "?q", UTMSource: "s", UTMMedium: "m",
			UTMCampaign: "c", UTMTerm: "t", UTMContent: "c", IP: "1.2.3.4", Country: "FR", Region: "IDF", City: "Paris", UserAgent: "ua",
			Browser: "b", BrowserVersion: "1", OS: "o", DeviceType: "d", IsBot: true, SessionID: "s", LibraryName: "l", LibraryVersion: "v",
			ReferrerHost: "rh", ReferrerClass: "search", GCLID: "g", FBCLID: "f", OSVersion: "14", BotReason: "crawler", ASN: 64500, ASOrg: "org"},
	}
	bare := herd.Event{MessageID: "m2", SourceID: 7, Type: "page", Timestamp: ts, ReceivedAt: ts, Context: json.RawMessage("null")}
	data, err := encodeFile(context.Background(), []record{toRecord(&full, 5, ProvArchiver), toRecord(&bare, 9, ProvArchiver)})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := decodeFile(data)
	if err != nil || len(recs) != 2 {
		t.Fatalf("decode: %v (%d rows)", err, len(recs))
	}
	// Parquet, like Postgres, keeps microseconds.
	us := ts.Truncate(time.Microsecond)
	otUS := ot.Truncate(time.Microsecond)
	want := full
	want.Timestamp, want.ReceivedAt, want.OriginalTimestamp, want.SentAt = us, us, &otUS, &otUS
	if got := recs[0].event(); !reflect.DeepEqual(got, want) || recs[0].StreamSeq != 5 {
		t.Errorf("full event:\n got %+v\nwant %+v", got, want)
	}
	wantBare := bare
	wantBare.Timestamp, wantBare.ReceivedAt, wantBare.Context = us, us, nil
	if got := recs[1].event(); !reflect.DeepEqual(got, wantBare) {
		t.Errorf("bare event:\n got %+v\nwant %+v", got, wantBare)
	}
}

// Every field of herd.Event has a column in the archive, so that nothing the
// stream carries is lost from the raw history (and from replays).
func TestEveryEventFieldArchived(t *testing.T) {
	t.Parallel()
	cols := map[string]bool{}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[record]()) {
		name, _, _ := strings.Cut(f.Tag.Get("parquet"), ",")
		cols[name] = true
	}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[herd.Event]()) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous || name == "" || name == "-" {
			continue
		}
		if !cols[name] {
			t.Errorf("herd.Event field %s (%s) has no column in the archive's record", f.Name, name)
		}
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 11, 26, 10, 59, 59, 0, time.FixedZone("x", 3600))
	cases := []struct {
		name    string
		arrived time.Time
		want    string
	}{
		{"recent: its hour", ts.Add(time.Hour), "source=3/date=2026-11-26/hour=9/part-17-4242.parquet"},
		{"just inside the window", ts.Add(DefaultWindow), "source=3/date=2026-11-26/hour=9/part-17-4242.parquet"},
		{"older than the window: its month", ts.Add(DefaultWindow + time.Second), "source=3/date=2026-11-01/hour=-1/part-17-4242.parquet"},
		{"years old", ts.AddDate(20, 0, 0), "source=3/date=2026-11-01/hour=-1/part-17-4242.parquet"},
	}
	for _, c := range cases {
		p := partitionOf(&herd.Event{SourceID: 3, Timestamp: ts}, c.arrived, DefaultWindow)
		if got := p.prefix() + fileName(17, 4242); got != c.want {
			t.Fatalf("%s: key = %s, want %s", c.name, got, c.want)
		}
		q, name, ok := parseKey(p.prefix() + "part-17-4242.parquet")
		if first, last, ok2 := parseFileName(name); !ok || !ok2 || q != p || first != 17 || last != 4242 {
			t.Fatalf("%s: parse: %v %v %v %d %d", c.name, q, ok, ok2, first, last)
		}
	}
	for _, bad := range []string{"part-1.parquet", "part-9-1.parquet", "x-1-2.parquet", "part-1-2.parquet.tmp"} {
		if _, _, ok := parseFileName(bad); ok {
			t.Errorf("parseFileName(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"source=1/date=2026-11-02/hour=-1/x", "source=1/date=2026-11-01/hour=24/x", "source=1/date=2026-11-01/hour=-2/x"} {
		if _, _, ok := parseKey(bad); ok {
			t.Errorf("parseKey(%q) accepted", bad)
		}
	}
}

// waitArchived waits until the archiver's consumer has nothing pending:
// every event is in a file whose manifest entry is written.
func waitArchived(t *testing.T, e *env, cfg Config, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "archiver to catch up", func() (bool, string) {
		st, err := Lag(context.Background(), e.js, cfg)
		if err != nil {
			return false, err.Error()
		}
		// An acknowledged message, too: a consumer that JetStream made
		// while its creator's request timed out reports no lag before its
		// archiver has read anything.
		return st.Lag == 0 && st.AckFloor > 0, fmt.Sprintf("%+v", st)
	})
}

func waitWritten(t *testing.T, e *env, n int64) {
	t.Helper()
	waitFor(t, 60*time.Second, "writer to store every event", func() (bool, string) {
		c := countEvents(t, e.db)
		return c == n, fmt.Sprint(c, " rows")
	})
}

func checkUnique(t *testing.T, recs []record, want int) {
	t.Helper()
	// Events of one frame share a stream sequence; an event is its source
	// and message id.
	ids := map[string]bool{}
	for _, r := range recs {
		id := fmt.Sprint(r.SourceID, "/", r.MessageID)
		if ids[id] {
			t.Fatalf("duplicated row in the lake: seq %d message %s", r.StreamSeq, r.MessageID)
		}
		ids[id] = true
	}
	if len(recs) != want {
		t.Fatalf("lake holds %d rows, want %d", len(recs), want)
	}
}

// checkWithDuckDB reads the lake directory with DuckDB by glob over the
// Hive layout and compares it with herd.events: every row's identity,
// partition and sequence, counts per source, and a sample of full rows.
func checkWithDuckDB(t *testing.T, db *pgxpool.Pool, dir string) {
	t.Helper()
	ctx := context.Background()
	src := fmt.Sprintf("read_parquet('%s/source=*/date=*/hour=*/*.parquet', hive_partitioning = true)", dir)

	// Per source: counts, and NULLs where Postgres has them.
	got := duckdb(t, `SELECT source, count(*) AS n, count(DISTINCT message_id) AS ids, count(anonymous_id) AS anon,
		count(properties) AS props, count(traits) AS traits, count(original_timestamp) AS ot, sum(is_bot::int) AS bots
		FROM `+src+` GROUP BY source ORDER BY source`)
	rows, err := db.Query(ctx, `SELECT source_id, count(*), count(DISTINCT message_id), count(anonymous_id), count(properties),
		count(traits), count(original_timestamp), sum(is_bot::int) FROM herd.events GROUP BY source_id ORDER BY source_id`)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for rows.Next() {
		var v [8]int64
		if err := rows.Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprint(v))
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	var gotS []string
	for _, r := range got {
		gotS = append(gotS, fmt.Sprintf("[%s %s %s %s %s %s %s %s]", str(r["source"]), str(r["n"]), str(r["ids"]), str(r["anon"]),
			str(r["props"]), str(r["traits"]), str(r["ot"]), str(r["bots"])))
	}
	if !reflect.DeepEqual(gotS, want) {
		t.Fatalf("per source (source n ids anon props traits ot bots):\nduckdb   %v\npostgres %v", gotS, want)
	}
	t.Logf("per source (source n ids anon props traits ot bots): %v", gotS)

	// Every row: identity, event time, sequence, and the Hive partition it
	// sits in.
	all := duckdb(t, `SELECT source_id, message_id, epoch_us("timestamp") AS ts, stream_seq, source, CAST(date AS VARCHAR) AS date, hour FROM `+src)
	pg := map[string]string{}
	rows, err = db.Query(ctx, `SELECT source_id, message_id, (extract(epoch FROM "timestamp") * 1000000)::bigint, stream_seq FROM herd.events`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var (
			src, ts, seq int64
			id           string
		)
		if err := rows.Scan(&src, &id, &ts, &seq); err != nil {
			t.Fatal(err)
		}
		pg[fmt.Sprint(src, "/", id)] = fmt.Sprint(ts, " ", seq)
	}
	if len(all) != len(pg) {
		t.Fatalf("duckdb reads %d rows, postgres holds %d", len(all), len(pg))
	}
	for _, r := range all {
		k := str(r["source_id"]) + "/" + str(r["message_id"])
		if w := pg[k]; w != str(r["ts"])+" "+str(r["stream_seq"]) {
			t.Fatalf("row %s: lake has ts/seq %s %s, postgres %q", k, str(r["ts"]), str(r["stream_seq"]), w)
		}
		var us int64
		fmt.Sscan(str(r["ts"]), &us)
		tm := time.UnixMicro(us).UTC()
		if str(r["source"]) != str(r["source_id"]) || str(r["date"]) != tm.Format(time.DateOnly) || str(r["hour"]) != fmt.Sprint(tm.Hour()) {
			t.Fatalf("row %s with time %s sits in partition source=%s/date=%s/hour=%s", k, tm, str(r["source"]), str(r["date"]), str(r["hour"]))
		}
	}

	// A sample of full rows, JSON compared as values.
	var ids []string
	if err := db.QueryRow(ctx, `SELECT array_agg(message_id) FROM (SELECT message_id FROM herd.events ORDER BY message_id LIMIT 25) s`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	cols := `message_id, type, event, user_id, anonymous_id, url, utm_source, ip, browser, is_bot, referrer_class, asn, context, properties, traits`
	sample := duckdb(t, `SELECT `+cols+`, epoch_us(received_at) AS received_us, epoch_us(original_timestamp) AS ot_us FROM `+src+
		` WHERE message_id IN ('`+strings.Join(ids, "','")+`') ORDER BY message_id`)
	rows, err = db.Query(ctx, `SELECT message_id, type, event, user_id, anonymous_id, url, utm_source, host(ip), browser, is_bot,
		referrer_class, asn, context::text, properties::text, traits::text, (extract(epoch FROM received_at) * 1000000)::bigint,
		(extract(epoch FROM original_timestamp) * 1000000)::bigint
		FROM herd.events WHERE message_id = ANY($1) ORDER BY message_id`, ids)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for rows.Next() {
		v := make([]any, 17)
		ptrs := make([]any, 17)
		for j := range v {
			ptrs[j] = &v[j]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		if i >= len(sample) {
			t.Fatalf("duckdb returned %d sample rows", len(sample))
		}
		d := sample[i]
		names := append(strings.Split(cols, ", "), "received_us", "ot_us")
		for j, name := range names {
			g, w := d[name], v[j]
			if name == "context" || name == "properties" || name == "traits" {
				if !sameJSON(g, w) {
					t.Fatalf("%s %s: duckdb %v, postgres %v", d["message_id"], name, g, w)
				}
				continue
			}
			if str(g) != str(w) {
				t.Fatalf("%s %s: duckdb %v, postgres %v", d["message_id"], name, g, w)
			}
		}
		i++
	}
	if i != len(ids) || len(sample) != len(ids) {
		t.Fatalf("sample: postgres %d rows, duckdb %d, want %d", i, len(sample), len(ids))
	}
}

func sameJSON(a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var x, y any
	if json.Unmarshal([]byte(fmt.Sprint(a)), &x) != nil || json.Unmarshal([]byte(fmt.Sprint(b)), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// Acceptance 1: 10,000 events land once each in the local lake, and DuckDB
// reading the Hive layout agrees with Postgres.
func TestLocalLakeMatchesPostgres(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	dir := t.TempDir()
	lake := NewDir(dir)
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 1500, FileMaxAge: time.Second}
	reg := prometheus.NewRegistry()
	a := New(cfg, lake, e.js, testLog(t), reg)
	runWriter(t, e)
	r := startArchiver(t, a)
	// Events over six hours across midnight, from three sources.
	evs := genEvents(10_000, []int64{1, 2, 3}, time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC), 6*time.Hour, 1)
	publish(t, e.js, e.sc, evs)
	waitWritten(t, e, 10_000)
	waitArchived(t, e, cfg, 60*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	checkUnique(t, lakeRecords(t, lake), 10_000)
	if got := counterValue(a.m.rows); got != 10_000 {
		t.Errorf("herd_archive_rows_total = %v", got)
	}
	checkWithDuckDB(t, e.db, dir)

	days, err := LakeStatus(context.Background(), lake)
	if err != nil {
		t.Fatal(err)
	}
	var rows int64
	for _, d := range days {
		rows += d.Rows
	}
	if len(days) != 2 || rows != 10_000 {
		t.Fatalf("status: %+v", days)
	}
}

// Acceptance 2: the same against an S3-compatible server.
func TestS3LakeMatchesPostgres(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	backend := s3mem.New()
	if err := backend.CreateBucket("lake"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	lake, err := Open("s3://lake/herd/events", S3Config{Endpoint: srv.URL, AccessKey: "test", SecretKey: "test-secret", PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 2000, FileMaxAge: time.Second}
	runWriter(t, e)
	r := startArchiver(t, New(cfg, lake, e.js, testLog(t), nil))
	evs := genEvents(10_000, []int64{4, 5}, time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC), 3*time.Hour, 2)
	publish(t, e.js, e.sc, evs)
	waitWritten(t, e, 10_000)
	waitArchived(t, e, cfg, 60*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	checkUnique(t, lakeRecords(t, lake), 10_000)

	// Everything sits under the prefix; DuckDB reads a copy of the bucket
	// (its S3 support is an extension downloaded at run time, and tests stay
	// offline).
	ctx := context.Background()
	objs, err := lake.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, o := range objs {
		b, err := lake.Get(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(o.Key))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := backend.ListBucket("lake", nil, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range raw.Contents {
		if !strings.HasPrefix(c.Key, "herd/events/source=") {
			t.Errorf("object %s outside the prefix", c.Key)
		}
	}
	checkWithDuckDB(t, e.db, dir)

	// Replay reads the bucket too; everything is stored already.
	res, err := Replay(ctx, lake, e.db, writer.NewStore(e.db), ReplayOptions{
		From: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), ForgetMissing: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 10_000 || res.Inserted != 0 || res.Duplicates != 10_000 || res.Forgotten != 0 {
		t.Fatalf("replay from S3 over a full warehouse: %+v", res)
	}
}

// Acceptance 3 (a): the archiver dies after storing a file and before
// recording and acking it. The restarted archiver adopts the file, acks the
// redelivered messages without writing them again, and goes on.
func TestCrashAfterStoreBeforeAck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	lake := NewDir(t.TempDir())
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 1000, FileMaxAge: time.Hour, AckWait: time.Second, CloseAfter: -1}
	publish(t, e.js, e.sc, genEvents(3000, []int64{1}, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), 50*time.Minute, 3))

	nc1, js1 := e.freshJS(t)
	a1 := New(cfg, lake, js1, testLog(t), nil)
	stored := 0
	a1.afterPut = func(string) error {
		if stored++; stored == 2 {
			return errKilled
		}
		return nil
	}
	if err := a1.Run(context.Background()); err != errKilled {
		t.Fatalf("first run: %v, want the kill", err)
	}
	nc1.Close()
	man, err := readManifest(context.Background(), lake, "source=1/date=2026-11-26/hour=10/")
	if err != nil || len(man.Files) != 1 {
		t.Fatalf("after the crash the manifest lists %d files (%v), want 1", len(man.Files), err)
	}

	_, js2 := e.freshJS(t)
	a2 := New(cfg, lake, js2, testLog(t), nil)
	r := startArchiver(t, a2)
	waitArchived(t, e, cfg, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	checkUnique(t, lakeRecords(t, lake), 3000)
	// At least the adopted file's 1000; more when a slow machine lets the
	// short AckWait expire for messages already written but not yet acked.
	if got := counterValue(a2.m.skipped); got < 1000 {
		t.Errorf("redelivered and skipped: %v, want at least 1000 (the adopted file's)", got)
	}
	objs := dataObjects(lake)
	var names []string
	for _, o := range objs {
		names = append(names, filepath.Base(o.Key))
	}
	sort.Strings(names)
	if want := []string{"_manifest.json", "part-1-1000.parquet", "part-1001-2000.parquet", "part-2001-3000.parquet"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("lake files %v, want %v", names, want)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestArchiverChild is not a test: TestKilledMidFile runs the test binary
// with it selected and the environment below, and kills the process.
// Frames whose events fall in two hours: each part goes to its hour's file,
// and the message is acked only once both are stored. The archiver dies
// after storing its second file, with parts of messages of the first still
// only in memory; the restarted one gets those messages again, skips the
// parts already stored and writes the others, so the lake holds every event
// once.
func TestFramesAcrossHours(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	lake := NewDir(t.TempDir())
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 100, FileMaxAge: time.Hour, AckWait: time.Second}
	// A quarter in hour 10, the rest in 11: hour 11's files fill and are
	// stored while hour 10's parts of the same messages are still held.
	evs := genEvents(700, []int64{1}, time.Date(2026, 11, 26, 10, 45, 0, 0, time.UTC), time.Hour, 4)
	publishFrames(t, e.js, e.sc, evs, 7)
	hours := map[int]int{}
	for i := range evs {
		hours[evs[i].Timestamp.Hour()]++
	}
	if len(hours) != 2 {
		t.Fatalf("the events span hours %v, want two", hours)
	}

	nc1, js1 := e.freshJS(t)
	a1 := New(cfg, lake, js1, testLog(t), nil)
	stored := 0
	a1.afterPut = func(string) error {
		if stored++; stored == 2 {
			return errKilled
		}
		return nil
	}
	if err := a1.Run(context.Background()); err != errKilled {
		t.Fatalf("first run: %v, want the kill", err)
	}
	nc1.Close()
	objs, err := lake.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".parquet") {
			files = append(files, o.Key)
		}
	}
	if len(files) != 2 {
		t.Fatalf("after the kill the lake holds files %v, want the two stored before it", files)
	}

	_, js2 := e.freshJS(t)
	// The last files of each hour are not full: they close by age.
	cfg.FileMaxAge = 2 * time.Second
	r := startArchiver(t, New(cfg, lake, js2, testLog(t), nil))
	waitArchived(t, e, cfg, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	recs := lakeRecords(t, lake)
	checkUnique(t, recs, len(evs))
	got := map[int]int{}
	for _, rec := range recs {
		got[rec.Timestamp.UTC().Hour()]++
	}
	if !reflect.DeepEqual(got, hours) {
		t.Fatalf("lake holds %v events by hour, want %v", got, hours)
	}
}

// While Yield answers true the archiver takes nothing new; once it answers
// false it archives everything.
func TestYieldStandsAside(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	lake := NewDir(t.TempDir())
	var yield atomic.Bool
	yield.Store(true)
	asked := make(chan struct{}, 100)
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 100, FileMaxAge: time.Hour, Yield: func(context.Context) bool {
		select {
		case asked <- struct{}{}:
		default:
		}
		return yield.Load()
	}}
	r := startArchiver(t, New(cfg, lake, e.js, testLog(t), nil))
	<-asked // the first tick: from here on it stands aside
	publish(t, e.js, e.sc, genEvents(300, []int64{1}, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), time.Minute, 5))
	<-asked
	<-asked
	if st, err := Lag(context.Background(), e.js, cfg); err != nil || st.AckFloor != 0 {
		t.Fatalf("while yielding: %+v %v; want nothing archived", st, err)
	}
	if objs := dataObjects(lake); len(objs) != 0 {
		t.Fatalf("while yielding the lake holds %d objects, want none", len(objs))
	}
	yield.Store(false)
	waitArchived(t, e, cfg, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	checkUnique(t, lakeRecords(t, lake), 300)
}

func TestArchiverChild(t *testing.T) {
	url := os.Getenv("HERD_ARCHIVE_CHILD_NATS")
	if url == "" {
		t.Skip("runs only as TestKilledMidFile's child process")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	sc := stream.Config{Name: os.Getenv("HERD_ARCHIVE_CHILD_STREAM"), Prefix: os.Getenv("HERD_ARCHIVE_CHILD_PREFIX")}
	lake := NewDir(os.Getenv("HERD_ARCHIVE_CHILD_DIR"))
	// Half of every file is written, then the process pauses long enough
	// for the parent to see the temporary file and kill it.
	lake.slowWrite = 5 * time.Second
	cfg := Config{Stream: sc, Window: fixedDatesWindow, FileMaxRows: 1000, FileMaxAge: time.Hour, AckWait: time.Second}
	_ = New(cfg, lake, js, testLog(t), nil).Run(context.Background())
}

// Acceptance 3 (b): the archiver process is killed (SIGKILL) in the middle
// of writing a file. No partial file is visible, and the restarted
// archiver writes every event exactly once.
func TestKilledMidFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	dir := t.TempDir()
	publish(t, e.js, e.sc, genEvents(2500, []int64{9}, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), 50*time.Minute, 5))

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestArchiverChild$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"HERD_ARCHIVE_CHILD_NATS="+e.srv.ClientURL(), "HERD_ARCHIVE_CHILD_STREAM="+e.sc.Name,
		"HERD_ARCHIVE_CHILD_PREFIX="+e.sc.Prefix, "HERD_ARCHIVE_CHILD_DIR="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	partDir := filepath.Join(dir, "source=9", "date=2026-11-26", "hour=10")
	waitFor(t, 30*time.Second, "the child to start writing a file", func() (bool, string) {
		es, _ := os.ReadDir(partDir)
		for _, e := range es {
			if strings.HasSuffix(e.Name(), ".tmp") {
				return true, e.Name()
			}
		}
		return false, fmt.Sprint(len(es), " entries")
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	lake := NewDir(dir)
	if objs := dataObjects(lake); len(objs) != 0 {
		t.Fatalf("after a kill mid-file the lake shows %v, want nothing", objs)
	}
	_, js := e.freshJS(t)
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 1000, FileMaxAge: time.Second, AckWait: time.Second}
	r := startArchiver(t, New(cfg, lake, js, testLog(t), nil))
	waitArchived(t, e, cfg, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	checkUnique(t, lakeRecords(t, lake), 2500)
	es, _ := os.ReadDir(partDir)
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// Acceptance 4: a day's partition dropped from herd.events comes back,
// row for row, from the lake; replaying again adds nothing.
func TestReplayRestoresDroppedDay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	lake := NewDir(t.TempDir())
	cfg := Config{Stream: e.sc, Window: fixedDatesWindow, FileMaxRows: 700, FileMaxAge: time.Second}
	runWriter(t, e)
	r := startArchiver(t, New(cfg, lake, e.js, testLog(t), nil))
	publish(t, e.js, e.sc, genEvents(4000, []int64{1, 2}, time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC), 8*time.Hour, 6))
	waitWritten(t, e, 4000)
	waitArchived(t, e, cfg, 60*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	day := func(d string) []string {
		t.Helper()
		var rows []string
		err := e.db.QueryRow(ctx, `SELECT coalesce(array_agg((to_jsonb(e) - 'loaded_at')::text ORDER BY source_id, message_id), '{}')
			FROM herd.events e WHERE "timestamp" >= ($1::date)::timestamp AT TIME ZONE 'UTC'
			AND "timestamp" < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'`, d).Scan(&rows)
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	before25, before26 := day("2026-11-25"), day("2026-11-26")
	if len(before26) == 0 || len(before25)+len(before26) != 4000 {
		t.Fatalf("days hold %d and %d rows", len(before25), len(before26))
	}
	if _, err := e.db.Exec(ctx, "DROP TABLE herd.events_20261126"); err != nil {
		t.Fatal(err)
	}

	d26 := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	var progress []FileProgress
	opt := ReplayOptions{From: d26, To: d26, ForgetMissing: true, Progress: func(p FileProgress) { progress = append(progress, p) }}
	res, err := Replay(ctx, lake, e.db, writer.NewStore(e.db), opt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Inserted != int64(len(before26)) || res.Duplicates != 0 || res.Forgotten != int64(len(before26)) || len(progress) != res.Files || res.Files == 0 {
		t.Fatalf("first replay: %+v with %d progress reports; want %d rows inserted", res, len(progress), len(before26))
	}
	if got := day("2026-11-26"); !reflect.DeepEqual(got, before26) {
		t.Fatalf("replayed day differs: %d rows, want %d; first %.300s vs %.300s", len(got), len(before26), first(got), first(before26))
	}
	if got := day("2026-11-25"); !reflect.DeepEqual(got, before25) {
		t.Fatal("the other day changed")
	}

	progress = nil
	res, err = Replay(ctx, lake, e.db, writer.NewStore(e.db), opt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Inserted != 0 || res.Duplicates != int64(len(before26)) || res.Forgotten != 0 {
		t.Fatalf("second replay: %+v, want nothing inserted", res)
	}
	if got := day("2026-11-26"); !reflect.DeepEqual(got, before26) || countEvents(t, e.db) != 4000 {
		t.Fatal("second replay changed the table")
	}

	// Provenance: the row's (source, timestamp, stream_seq) names its file.
	var (
		src int64
		ts  time.Time
		seq int64
		id  string
	)
	if err := e.db.QueryRow(ctx, `SELECT source_id, "timestamp", stream_seq, message_id FROM herd.events ORDER BY stream_seq DESC LIMIT 1`).Scan(&src, &ts, &seq, &id); err != nil {
		t.Fatal(err)
	}
	key, entry, err := Locate(ctx, lake, src, ts, uint64(seq))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := lake.Get(ctx, key)
	recs, _ := decodeFile(data)
	found := false
	for _, r := range recs {
		found = found || (r.MessageID == id && r.StreamSeq == seq)
	}
	if !found || entry.FirstSeq > uint64(seq) || entry.LastSeq < uint64(seq) {
		t.Fatalf("Locate(%d, %s, %d) = %s %+v, which does not hold the row", src, ts, seq, key, entry)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// Acceptance 5: the archiver falling behind does not hold back the collector
// or the Postgres writer; its lag shows in what `herd archive status` prints,
// and it catches up once started again.
//
// Events go in through the collector's HTTP API while the archiver's durable
// consumer exists (it has run before) but no archiver is running. "Does not
// slow" is checked as a property of the design, not with timings (those live
// in the benchmarks): every request is answered 200, and every event reaches
// herd.events, with the writer's consumer fully caught up, while the
// archiver has not acknowledged a single one.
func TestStoppedArchiverLagsAlone(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	ctx := context.Background()
	lake := NewDir(t.TempDir())
	cfg := Config{Stream: p.Stream, Window: fixedDatesWindow, FileMaxRows: 1500, FileMaxAge: time.Second}
	if _, err := EnsureConsumer(ctx, p.JS, cfg, nil); err != nil {
		t.Fatal(err)
	}

	const requests, perRequest = 40, 100
	const n = requests * perRequest
	sent := map[string]bool{}
	var bodies [][]byte
	for r := range requests {
		var items []string
		for i := range perRequest {
			id := fmt.Sprintf("lag-%d-%d", r, i)
			sent[id] = true
			items = append(items, fmt.Sprintf(`{"type":"track","event":"Archiver Down","anonymousId":"a-%d","messageId":%q,"properties":{"r":%d,"i":%d}}`, r, id, r, i))
		}
		bodies = append(bodies, []byte(`{"writeKey":"`+p.WriteKey+`","batch":[`+strings.Join(items, ",")+`]}`))
	}
	statuses := make([]string, requests)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := w; r < requests; r += 4 {
				res, err := http.Post(p.URL+"/v1/batch", "text/plain", bytes.NewReader(bodies[r]))
				if err != nil {
					statuses[r] = err.Error()
					continue
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				statuses[r] = fmt.Sprint(res.StatusCode)
				if res.StatusCode != 200 {
					statuses[r] += " " + string(b)
				}
			}
		}()
	}
	wg.Wait()
	for r, s := range statuses {
		if s != "200" {
			t.Fatalf("request %d with the archiver stopped: %s, want 200", r, s)
		}
	}

	// The writer stores everything without the archiver.
	if got := p.WaitRows(t, n, 15*time.Second, `SELECT count(*) FROM herd.events`); got != n {
		t.Fatalf("herd.events holds %d rows with the archiver stopped, want %d", got, n)
	}
	stored := map[string]bool{}
	rows, err := p.DB.Query(ctx, `SELECT message_id FROM herd.events WHERE source_id = $1`, p.Source.ID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		stored[id] = true
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if !reflect.DeepEqual(stored, sent) {
		t.Fatalf("herd.events holds %d distinct message ids of the source, want the %d sent", len(stored), len(sent))
	}

	// What `herd archive status` prints: the lake's days (LakeStatus) and the
	// consumer's position (Lag). The archiver is all of them behind.
	st, err := Lag(ctx, p.JS, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The lag counts stream messages: the collector packs concurrent
	// requests' events into frames, so there are at most n of them, and
	// nothing else was published.
	if st.StreamLast == 0 || st.StreamLast > n || st.Lag != st.StreamLast || st.Pending != st.StreamLast || st.AckPending != 0 || st.AckFloor != 0 {
		t.Fatalf("archive status while stopped: %+v, want every one of the stream's messages (at most %d) pending", st, n)
	}
	if days, err := LakeStatus(ctx, lake); err != nil || len(days) != 0 {
		t.Fatalf("lake while stopped: %v %v", days, err)
	}

	// The writer's own consumer has nothing outstanding meanwhile.
	waitFor(t, 5*time.Second, "the writer's consumer to have nothing outstanding", func() (bool, string) {
		c, err := p.JS.Consumer(ctx, p.Stream.Name, "herd-writer")
		if err != nil {
			return false, err.Error()
		}
		info, err := c.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= st.StreamLast, fmt.Sprintf("%+v %+v", info.AckFloor, info.NumPending)
	})

	// Started again, it catches up to no lag with exactly the sent events.
	r := startArchiver(t, New(cfg, lake, p.JS, testLog(t), nil))
	waitFor(t, 15*time.Second, "the archiver to catch up", func() (bool, string) {
		st, err := Lag(ctx, p.JS, cfg)
		if err != nil {
			return false, err.Error()
		}
		return st.Lag == 0 && st.AckFloor == st.StreamLast, fmt.Sprintf("%+v", st)
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	recs := lakeRecords(t, lake)
	checkUnique(t, recs, n)
	for _, rec := range recs {
		if !sent[rec.MessageID] || rec.SourceID != p.Source.ID {
			t.Fatalf("the lake holds an event that was not sent: source %d message %s", rec.SourceID, rec.MessageID)
		}
	}
	days, err := LakeStatus(ctx, lake)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, d := range days {
		total += d.Rows
	}
	if total != n {
		t.Fatalf("archive status after catching up: %+v, %d rows, want %d", days, total, n)
	}
}

// NULLs must stay NULL for every reader, in files of any size: a plain
// string column tagged optional once came out as empty strings in DuckDB for a few rows
// of some files.
func TestNullsAsDuckDBSeesThem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	evs := genEvents(10_000, []int64{1, 2, 3}, time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC), 6*time.Hour, 1)
	r := rand.New(rand.NewPCG(1, 2))
	want := map[string]string{}
	for f := range 60 {
		n := 1 + r.IntN(1500)
		off := r.IntN(len(evs) - n)
		var recs []record
		for i := off; i < off+n; i++ {
			if evs[i].SourceID == int64(1+f%3) {
				recs = append(recs, toRecord(&evs[i], uint64(i+1), ProvArchiver))
			}
		}
		if len(recs) == 0 {
			continue
		}
		data, err := encodeFile(context.Background(), recs)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(dir, fmt.Sprintf("f%d.parquet", f))
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
		var anon, traits, props int
		for _, rc := range recs {
			anon += min(len(val(rc.AnonymousID)), 1)
			traits += min(len(val(rc.Traits)), 1)
			props += min(len(val(rc.Properties)), 1)
		}
		want[name] = fmt.Sprint(len(recs), " ", anon, " ", traits, " ", props)
	}
	rows := duckdb(t, fmt.Sprintf(`SELECT filename, count(*) n, count(anonymous_id) a, count(traits) tr, count(properties) p
		FROM read_parquet('%s/*.parquet', filename = true) GROUP BY filename`, dir))
	if len(rows) != len(want) {
		t.Fatalf("duckdb read %d files, wrote %d", len(rows), len(want))
	}
	for _, row := range rows {
		got := fmt.Sprint(str(row["n"]), " ", str(row["a"]), " ", str(row["tr"]), " ", str(row["p"]))
		if w := want[str(row["filename"])]; got != w {
			t.Errorf("%s: duckdb counts (rows anon traits props) %s, written %s", row["filename"], got, w)
		}
	}
}
