package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/writer"
	"github.com/nats-io/nats.go"
)

// TestSameMessageIDThreeTimes: client retries of one event leave one row.
func TestSameMessageIDThreeTimes(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	for i := 0; i < 3; i++ {
		r := post(t, p.URL+"/v1/track", []byte(`{"messageId":"dup-1","event":"Paid","userId":"u1","properties":{"try":`+fmt.Sprint(i)+`}}`),
			map[string]string{"Authorization": basic(p.WriteKey)})
		if r.Status != 200 {
			t.Fatalf("try %d: %d %s", i, r.Status, r.RawBody)
		}
	}
	// The stream itself does not drop repeats (frames carry no message id):
	// the writer's ledger does, also for the same id published straight to
	// the stream, as a replay would.
	ev := herd.Event{MessageID: "dup-1", SourceID: p.Source.ID, Type: "track", Event: "Paid", UserID: "u1", Timestamp: time.Now(), ReceivedAt: time.Now()}
	publishRaw(t, p, p.Stream.EventSubject(p.Source.ID), jsonBody(t, ev), "")
	time.Sleep(300 * time.Millisecond)
	if n := p.WaitRows(t, 1, 5*time.Second, "SELECT count(*) FROM herd.events WHERE message_id = 'dup-1'"); n != 1 {
		t.Fatalf("rows for dup-1: %d, want 1", n)
	}
	var props string
	_ = p.DB.QueryRow(context.Background(), "SELECT properties::text FROM herd.events WHERE message_id = 'dup-1'").Scan(&props)
	if props != `{"try": 0}` {
		t.Errorf("the first delivery must win; properties %s", props)
	}
}

func publishRaw(t *testing.T, p *herdtest.Pipeline, subject string, data []byte, msgID string) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	if msgID != "" {
		m.Header.Set(nats.MsgIdHdr, msgID)
	}
	if _, err := p.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// TestRetryAcrossMidnight: an event first received at 23:59:59.9 and retried
// after midnight stays one row, although its skew-corrected timestamp now
// falls on the next day's partition.
func TestRetryAcrossMidnight(t *testing.T) {
	t.Parallel()
	var now atomic.Pointer[time.Time]
	set := func(s string) {
		tm, _ := time.Parse(time.RFC3339Nano, s)
		now.Store(&tm)
	}
	// The day before midnight is today (by the wall clock), so that it gets
	// a day partition of its own (writer.Config.PartitionWindow).
	today := time.Now().UTC().Truncate(24 * time.Hour)
	set(today.Add(24*time.Hour - 100*time.Millisecond).Format(time.RFC3339Nano))
	p := herdtest.Start(t, herdtest.Options{Collector: func(c *collector.Config) {
		c.Now = func() time.Time { return *now.Load() }
		c.Stream.DupeWindow = time.Second
	}})
	// No timestamp from the client: the event time is the receive time, so the
	// retry computes a different day.
	body := []byte(`{"messageId":"midnight-1","event":"Checkout","anonymousId":"a9"}`)
	if r := post(t, p.URL+"/v1/track", body, map[string]string{"Authorization": basic(p.WriteKey)}); r.Status != 200 {
		t.Fatal(r.RawBody)
	}
	p.WaitRows(t, 1, 5*time.Second, "SELECT count(*) FROM herd.events")
	set(today.Add(24*time.Hour + 500*time.Millisecond).Format(time.RFC3339Nano))
	time.Sleep(1200 * time.Millisecond) // past any duplicate window
	if r := post(t, p.URL+"/v1/track", body, map[string]string{"Authorization": basic(p.WriteKey)}); r.Status != 200 {
		t.Fatal(r.RawBody)
	}
	// Let the writer see the retry, then count.
	time.Sleep(500 * time.Millisecond)
	var rows int
	var day string
	if err := p.DB.QueryRow(context.Background(), `SELECT count(*), min(tableoid::regclass::text) FROM herd.events WHERE message_id = 'midnight-1'`).Scan(&rows, &day); err != nil {
		t.Fatal(err)
	}
	if want := "herd.events_" + today.Format("20060102"); rows != 1 || day != want {
		t.Fatalf("rows %d in %s; want 1 in %s", rows, day, want)
	}
	var seen int
	_ = p.DB.QueryRow(context.Background(), `SELECT count(*) FROM herd.message_ids WHERE message_id = 'midnight-1'`).Scan(&seen)
	if seen != 1 {
		t.Fatalf("ledger rows %d", seen)
	}
}

// TestNULIsolated: one event with \u0000 among 99 good ones: 99 rows, one
// reject with its reason. Once refused by the collector, and once reaching
// the writer directly, where Postgres refuses it and the writer isolates it.
func TestNULIsolated(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	var items []string
	for i := 0; i < 100; i++ {
		v := fmt.Sprintf("ok %d", i)
		if i == 42 {
			v = `bad \u0000 value`
		}
		items = append(items, fmt.Sprintf(`{"type":"track","event":"E","userId":"u","messageId":"nul-%d","properties":{"v":"%s"}}`, i, v))
	}
	r := post(t, p.URL+"/v1/batch", []byte(`{"batch":[`+strings.Join(items, ",")+`]}`), map[string]string{"Authorization": basic(p.WriteKey)})
	if r.Status != 200 || r.Body["accepted"] != float64(99) {
		t.Fatalf("batch: %d %s", r.Status, r.RawBody)
	}
	if n := p.WaitRows(t, 99, 10*time.Second, "SELECT count(*) FROM herd.events WHERE message_id LIKE 'nul-%'"); n != 99 {
		t.Fatalf("events: %d", n)
	}
	if n := p.WaitRows(t, 1, 5*time.Second, "SELECT count(*) FROM herd.rejects WHERE reason LIKE '%NUL%' AND raw LIKE '%nul-42%'"); n != 1 {
		t.Fatalf("rejects: %d", n)
	}

	// Straight onto the stream (a collector of another version, a replay):
	// Postgres itself refuses the value, and only that event is set aside.
	for i := 0; i < 100; i++ {
		ev := herd.Event{MessageID: fmt.Sprintf("pg-%d", i), SourceID: p.Source.ID, Type: "track", Event: "E", UserID: "u",
			Timestamp: time.Now(), ReceivedAt: time.Now(), Properties: []byte(fmt.Sprintf(`{"v":"ok %d"}`, i))}
		if i == 7 {
			ev.Properties = []byte(`{"v":"bad \u0000"}`)
		}
		if i == 8 {
			ev.Properties = []byte(`{"v":1e1000000}`) // numeric overflow in jsonb
		}
		publishRaw(t, p, p.Stream.EventSubject(p.Source.ID), jsonBody(t, ev), "")
	}
	if n := p.WaitRows(t, 98, 10*time.Second, "SELECT count(*) FROM herd.events WHERE message_id LIKE 'pg-%'"); n != 98 {
		t.Fatalf("events: %d, want 98", n)
	}
	if n := p.WaitRows(t, 2, 5*time.Second, "SELECT count(*) FROM herd.rejects WHERE reason LIKE 'refused by Postgres:%' AND message_id IN ('pg-7','pg-8')"); n != 2 {
		t.Fatalf("postgres rejects: %d, want 2", n)
	}
	// The writer keeps going.
	r = post(t, p.URL+"/v1/track", []byte(`{"event":"After","userId":"u","messageId":"after-1"}`), map[string]string{"Authorization": basic(p.WriteKey)})
	if r.Status != 200 {
		t.Fatal(r.RawBody)
	}
	if n := p.WaitRows(t, 1, 5*time.Second, "SELECT count(*) FROM herd.events WHERE message_id = 'after-1'"); n != 1 {
		t.Fatal("writer stopped after the bad events")
	}
}

// TestConcurrentRequestsShareFrames: single-event requests sent at once
// are answered 200 only once stored, and ride together in fewer stream
// messages than events; every event lands once.
func TestConcurrentRequestsShareFrames(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	const clients, each = 32, 25
	var wg sync.WaitGroup
	failed := make(chan string, clients*each)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r := post(t, p.URL+"/v1/track", []byte(fmt.Sprintf(`{"event":"E","userId":"u","messageId":"cf-%d-%d"}`, c, i)),
					map[string]string{"Authorization": basic(p.WriteKey)})
				if r.Status != 200 {
					failed <- fmt.Sprint(r.Status, " ", string(r.RawBody))
				}
			}
		}()
	}
	wg.Wait()
	close(failed)
	for f := range failed {
		t.Fatalf("request refused: %s", f)
	}
	// Every 200 came after JetStream stored the event: the stream holds them
	// all now, in fewer messages.
	s, err := p.JS.Stream(context.Background(), p.Stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	events := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		events += stream.CountEntries(m.Data)
	}
	if events != clients*each || info.State.Msgs >= clients*each {
		t.Fatalf("the stream holds %d events in %d messages, want %d events in fewer messages", events, info.State.Msgs, clients*each)
	}
	t.Logf("%d events in %d stream messages", events, info.State.Msgs)
	if n := p.WaitRows(t, clients*each, 10*time.Second, "SELECT count(DISTINCT message_id) FROM herd.events WHERE message_id LIKE 'cf-%'"); n != clients*each {
		t.Fatalf("events stored: %d, want %d", n, clients*each)
	}
	if n := p.WaitRows(t, clients*each, time.Second, "SELECT count(*) FROM herd.events WHERE message_id LIKE 'cf-%'"); n != clients*each {
		t.Fatalf("rows: %d, want %d", n, clients*each)
	}
}

// TestFrameWithBadEntries: one stream message holding several events, some
// of which cannot be stored, delivered twice. Each bad entry is its own
// reject, recorded once however often the message comes; the good entries
// are stored once; the damaged tail of the frame is a reject too.
func TestFrameWithBadEntries(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	var frame []byte
	for i := 0; i < 6; i++ {
		ev := herd.Event{MessageID: fmt.Sprintf("fr-%d", i), SourceID: p.Source.ID, Type: "track", Event: "E", UserID: "u",
			Timestamp: time.Now(), ReceivedAt: time.Now(), Properties: []byte(fmt.Sprintf(`{"v":"ok %d"}`, i))}
		switch i {
		case 1, 4: // refused by Postgres: both in the same message
			ev.Properties = []byte(`{"v":"bad \u0000"}`)
		}
		entry := stream.EncodeEntry(nil, &ev)
		if i == 3 {
			entry = stream.EncodeEvent(nil, &ev) // JSON entries are read too
		}
		if i == 2 {
			entry = []byte(`{"not":"an event"`)
		}
		frame = stream.AppendFrameEntry(frame, entry)
	}
	frame = append(frame, 0x7f, '{') // an entry of 127 bytes, cut short
	subject := p.Stream.EventSubject(p.Source.ID)
	publishRaw(t, p, subject, frame, "")
	if n := p.WaitRows(t, 3, 10*time.Second, "SELECT count(*) FROM herd.events WHERE message_id LIKE 'fr-%'"); n != 3 {
		t.Fatalf("events: %d, want fr-0, fr-3 and fr-5", n)
	}
	want := []string{
		"1 refused by Postgres",
		"2 undecodable event on the stream",
		"4 refused by Postgres",
		"6 after 6 events: " + stream.ErrBadFrame.Error(),
	}
	check := func(when string) {
		t.Helper()
		p.WaitRows(t, 4, 10*time.Second, "SELECT count(*) FROM herd.rejects")
		rows, err := p.DB.Query(context.Background(), `SELECT stream_pos, reason FROM herd.rejects ORDER BY stream_pos`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var pos int
			var reason string
			if err := rows.Scan(&pos, &reason); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprint(pos, " ", reason))
		}
		if len(got) != len(want) {
			t.Fatalf("%s: rejects %q, want %d", when, got, len(want))
		}
		for i := range want {
			if !strings.HasPrefix(got[i], want[i]) {
				t.Fatalf("%s: rejects %q, want %q", when, got, want)
			}
		}
	}
	check("first delivery")

	// The same message again (a redelivery: same stream sequence) through a
	// second writer consumer reading from the start adds nothing.
	p.StopWriter()
	p.StartWriter(t, func(c *writer.Config) { c.Consumer = "second-reader" })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := p.JS.Consumer(context.Background(), p.Stream.Name, "second-reader")
		if err == nil {
			if info, err := c.Info(context.Background()); err == nil && info.AckFloor.Stream >= 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the second writer did not ack the frame")
		}
		time.Sleep(20 * time.Millisecond)
	}
	check("second delivery")
	if n := p.WaitRows(t, 3, time.Second, "SELECT count(*) FROM herd.events WHERE message_id LIKE 'fr-%'"); n != 3 {
		t.Fatalf("events after the second delivery: %d, want 3", n)
	}
}

// TestBadRequests: each gets its status and a JSON error, and nothing
// reaches herd.events.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	auth := map[string]string{"Authorization": basic(p.WriteKey), "Content-Type": "application/json"}
	big := `{"event":"x","userId":"u","properties":{"pad":"` + strings.Repeat("a", collector.MaxEventBytes) + `"}}`
	bigBatch := `{"batch":[` + strings.TrimSuffix(strings.Repeat(`{"type":"track","event":"x","userId":"u","properties":{"p":"`+strings.Repeat("b", 1000)+`"}},`, 600), ",") + `]}`
	bomb := gz(t, []byte(`{"batch":[{"type":"track","event":"x","userId":"u","properties":{"p":"`+strings.Repeat("0", 2<<20)+`"}}]}`))
	cases := []struct {
		name    string
		path    string
		body    []byte
		headers map[string]string
		status  int
		msg     string
	}{
		{"invalid JSON", "/v1/track", []byte(`{"event":`), auth, 400, "not valid JSON"},
		{"non-object", "/v1/track", []byte(`[1,2]`), auth, 400, "JSON object"},
		{"unknown write key", "/v1/track", []byte(`{"event":"x","userId":"u"}`), map[string]string{"Authorization": basic("nope")}, 401, "write key"},
		{"missing write key", "/v1/track", []byte(`{"event":"x","userId":"u"}`), nil, 401, "missing write key"},
		{"event over 32 KB", "/v1/track", []byte(big), auth, 413, "limit"},
		{"batch over 500 KB", "/v1/batch", []byte(bigBatch), auth, 413, ""},
		{"gzip past the limit", "/v1/batch", bomb, map[string]string{"Authorization": basic(p.WriteKey), "Content-Encoding": "gzip"}, 413, "decompresses past"},
		{"empty batch", "/v1/batch", []byte(`{"batch":[]}`), auth, 400, "empty"},
		{"no identity", "/v1/track", []byte(`{"event":"x"}`), auth, 400, "anonymousId or a userId"},
		{"track without event", "/v1/track", []byte(`{"userId":"u"}`), auth, 400, "event name"},
		{"bad gzip", "/v1/track", []byte("not gzip"), map[string]string{"Authorization": basic(p.WriteKey), "Content-Encoding": "gzip"}, 400, "gzip"},
	}
	for _, c := range cases {
		if c.name == "batch over 500 KB" {
			// fasthttp refuses on Content-Length and may close the connection
			// before the client has finished writing: a 413 or a reset.
			req, _ := http.NewRequest(http.MethodPost, p.URL+c.path, strings.NewReader(string(c.body)))
			req.Header.Set("Authorization", basic(p.WriteKey))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode != 413 {
					t.Errorf("%s: status %d, want 413", c.name, resp.StatusCode)
				}
			}
			continue
		}
		r := post(t, p.URL+c.path, c.body, c.headers)
		if r.Status != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, r.Status, c.status, r.RawBody)
			continue
		}
		if r.Header.Get("Content-Type") != "application/json" || r.Body["success"] != false || !strings.Contains(fmt.Sprint(r.Body["error"]), c.msg) {
			t.Errorf("%s: reply %q", c.name, r.RawBody)
		}
	}
	// A good request after all of that still lands, and nothing else did.
	if r := post(t, p.URL+"/v1/track", []byte(`{"event":"ok","userId":"u","messageId":"good"}`), auth); r.Status != 200 {
		t.Fatal(r.RawBody)
	}
	p.WaitRows(t, 1, 5*time.Second, "SELECT count(*) FROM herd.events")
	time.Sleep(200 * time.Millisecond)
	var n int
	_ = p.DB.QueryRow(context.Background(), "SELECT count(*) FROM herd.events").Scan(&n)
	if n != 1 {
		t.Fatalf("herd.events holds %d rows, want only the good one", n)
	}
}

// TestNATSDown: with NATS stopped a request gets 503 with Retry-After within
// the publish timeout; once NATS is back, events are accepted, and every
// event that got a 200 is in Postgres.
func TestNATSDown(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{Collector: func(c *collector.Config) { c.PublishTimeout = time.Second }})
	auth := map[string]string{"Authorization": basic(p.WriteKey)}
	acked := map[string]bool{}
	send := func(id string) int {
		r := post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u","messageId":"`+id+`"}`), auth)
		if r.Status == 200 {
			acked[id] = true
		}
		return r.Status
	}
	for i := 0; i < 20; i++ {
		if s := send(fmt.Sprint("before-", i)); s != 200 {
			t.Fatalf("before: %d", s)
		}
	}
	p.NATS.Server.Shutdown()
	p.NATS.Server.WaitForShutdown()
	for i := 0; i < 3; i++ {
		start := time.Now()
		r := post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u","messageId":"down-`+fmt.Sprint(i)+`"}`), auth)
		if r.Status != 503 || r.Header.Get("Retry-After") == "" {
			t.Fatalf("with NATS down: %d %v %s", r.Status, r.Header, r.RawBody)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("503 took %s; the bound is the 1s publish timeout", d)
		}
	}
	p.NATS.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		if send(fmt.Sprint("after-", i)) == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("NATS back, but the collector still refuses")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; i < 20; i++ {
		send(fmt.Sprint("late-", i))
	}
	want := int64(len(acked))
	if n := p.WaitRows(t, want, 20*time.Second, "SELECT count(*) FROM herd.events WHERE message_id NOT LIKE 'down-%'"); n < want {
		t.Fatalf("rows %d, acked %d", n, want)
	}
	rows, _ := p.DB.Query(context.Background(), "SELECT message_id FROM herd.events")
	got := map[string]bool{}
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		got[id] = true
	}
	for id := range acked {
		if !got[id] {
			t.Errorf("acknowledged %s missing", id)
		}
	}
}

var _ = stream.MsgID
var _ = writer.Row{}

// TestWriterWaitsForJetStream: a writer started while JetStream does not
// answer keeps asking for its consumer, and once JetStream is back stores
// what the stream holds.
func TestWriterWaitsForJetStream(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	p.StopWriter()
	for i := 0; i < 5; i++ {
		if r := post(t, p.URL+"/v1/track", []byte(fmt.Sprintf(`{"event":"e","userId":"u","messageId":"wait-%d"}`, i)), map[string]string{"Authorization": basic(p.WriteKey)}); r.Status != 200 {
			t.Fatalf("track: %d %s", r.Status, r.RawBody)
		}
	}
	p.NATS.Server.Shutdown()
	p.NATS.Server.WaitForShutdown()
	p.StartWriter(t, nil)
	time.Sleep(6 * time.Second) // past JetStream's 5 s request timeout
	p.NATS.Restart()
	if n := p.WaitRows(t, 5, 20*time.Second, "SELECT count(*) FROM herd.events WHERE message_id LIKE 'wait-%'"); n != 5 {
		t.Fatalf("rows %d, want 5", n)
	}
}
