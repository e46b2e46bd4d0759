package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/console"
	"github.com/herdhq/herd/rollups"
)

// TestLiveEvents: an event accepted by a real collector reaches an open
// /api/live stream within 2 seconds of its 200, and a refused one with
// its reason and without its write key.
func TestLiveEvents(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	adm := e.signIn(t, e.Admin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.URL+"/api/live?source=backend", nil)
	resp, err := adm.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("live: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ev := &sse{r: bufio.NewReader(resp.Body)}
	type got struct {
		name, data string
		at         time.Time
	}
	events := make(chan got, 16)
	go func() {
		for {
			n, d, err := ev.next()
			if err != nil {
				close(events)
				return
			}
			events <- got{n, d, time.Now()}
		}
	}()
	// The subscription is in place once the stream answered; an event of
	// another source is not shown.
	if st := send(t, e.P, `{"messageId":"live-1","userId":"u1","event":"Clicked","properties":{"n":1}}`); st != 200 {
		t.Fatalf("collector: %d", st)
	}
	ok200 := time.Now()
	select {
	case g := <-events:
		var d struct {
			MessageID string          `json:"messageId"`
			Source    string          `json:"source"`
			Type      string          `json:"type"`
			Body      json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal([]byte(g.data), &d); err != nil {
			t.Fatal(err)
		}
		if g.name != "accepted" || d.MessageID != "live-1" || d.Source != "backend" || d.Type != "track" || !strings.Contains(string(d.Body), `"n":1`) {
			t.Fatalf("live event %s %s", g.name, g.data)
		}
		if lag := g.at.Sub(ok200); lag > 2*time.Second {
			t.Fatalf("event shown %v after its 200, want within 2s", lag)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no live event within 2s of the 200")
	}
	// A refused event: its reason, and its body without the write key.
	req2, _ := http.NewRequest("POST", e.P.URL+"/v1/track", strings.NewReader(`{"messageId":"live-bad","userId":"u1","writeKey":"`+e.P.Server.WriteKey+`"}`))
	req2.Header.Set("Content-Type", "application/json")
	r2, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	select {
	case g := <-events:
		if g.name != "rejected" || !strings.Contains(g.data, "live-bad") || !strings.Contains(g.data, "event name") || strings.Contains(g.data, e.P.Server.WriteKey) {
			t.Fatalf("reject event %s %s", g.name, g.data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reject event")
	}
	// A viewer of source web does not see backend's events.
	if st, body, _ := adm.do("GET", "/api/live?source=nope", nil, nil); st != http.StatusNotFound {
		t.Fatalf("unknown source: %d %s", st, body)
	}
}

// TestTrace finds an accepted event in the stream, herd.events and the
// lake, and a refused one's reason.
func TestTrace(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{archive: true})
	adm := e.signIn(t, e.Admin)
	if st := send(t, e.P, `{"messageId":"trace-1","userId":"u1","event":"Paid"}`); st != 200 {
		t.Fatalf("collector: %d", st)
	}
	send(t, e.P, `{"messageId":"trace-bad","userId":"u1"}`)
	e.P.WaitRows(t, 1, 10*time.Second, "SELECT count(*) FROM herd.events WHERE message_id = 'trace-1'")
	e.P.WaitRows(t, 1, 10*time.Second, "SELECT count(*) FROM herd.rejects WHERE message_id = 'trace-bad'")
	var tr struct {
		MessageID string `json:"messageId"`
		Accepted  *struct {
			At        time.Time `json:"at"`
			StreamSeq *int64    `json:"stream_seq"`
			Source    string    `json:"source"`
		} `json:"accepted"`
		Row  map[string]any `json:"row"`
		Lake *struct {
			File      string `json:"file"`
			Partition string `json:"partition"`
		} `json:"lake"`
		Rejected *struct {
			Reason string `json:"reason"`
			Source string `json:"source"`
		} `json:"rejected"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		adm.json("GET", "/api/trace/trace-1", nil, 200, &tr)
		if tr.Lake != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if tr.Accepted == nil || tr.Accepted.StreamSeq == nil || *tr.Accepted.StreamSeq <= 0 || tr.Accepted.Source != "backend" || tr.Accepted.At.IsZero() {
		t.Fatalf("accepted: %+v", tr.Accepted)
	}
	if tr.Row["message_id"] != "trace-1" || tr.Row["event"] != "Paid" || tr.Rejected != nil {
		t.Fatalf("row %v rejected %v", tr.Row, tr.Rejected)
	}
	if tr.Lake == nil || !strings.HasSuffix(tr.Lake.File, ".parquet") {
		t.Fatalf("lake: %+v", tr.Lake)
	}
	if _, err := os.Stat(filepath.Join(e.Lake, tr.Lake.File)); err != nil {
		t.Fatalf("lake file %s: %v", tr.Lake.File, err)
	}
	tr.Accepted, tr.Row, tr.Lake = nil, nil, nil
	adm.json("GET", "/api/trace/trace-bad", nil, 200, &tr)
	if tr.Rejected == nil || !strings.Contains(tr.Rejected.Reason, "event name") || tr.Rejected.Source != "backend" || tr.Accepted != nil {
		t.Fatalf("reject trace: %+v", tr)
	}
	adm.json("GET", "/api/trace/never-sent", nil, 200, &tr)
	if tr.Accepted != nil || tr.Rejected != nil || tr.Row != nil {
		t.Fatalf("unknown id: %+v", tr)
	}
}

// TestPipelineAndRollups: the pipeline's counts come from the events
// loaded, and the rollup graph shows a failed rollup and those it blocks.
func TestPipelineAndRollups(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if st := send(t, e.P, `{"userId":"u1","event":"Viewed"}`); st != 200 {
			t.Fatalf("collector: %d", st)
		}
	}
	send(t, e.P, `{"userId":"u1"}`)
	e.P.WaitRows(t, 5, 10*time.Second, "SELECT count(*) FROM herd.events")
	e.P.WaitRows(t, 1, 10*time.Second, "SELECT count(*) FROM herd.rejects")
	adm := e.signIn(t, e.Admin)
	var pl struct {
		PerMinute []struct {
			Minute time.Time `json:"minute"`
			Source string    `json:"source"`
			Events int64     `json:"events"`
		} `json:"per_minute"`
		Stream *struct {
			Messages  uint64 `json:"messages"`
			Consumers []struct {
				Name    string `json:"name"`
				Pending uint64 `json:"pending"`
			} `json:"consumers"`
		} `json:"stream"`
		Rejects []struct {
			Reason string `json:"reason"`
			Count  int64  `json:"count"`
		} `json:"rejects"`
	}
	adm.json("GET", "/api/pipeline", nil, 200, &pl)
	var n int64
	for _, m := range pl.PerMinute {
		if m.Source == "backend" {
			n += m.Events
		}
	}
	if n != 5 {
		t.Fatalf("per-minute events of backend: %d in %+v, want 5", n, pl.PerMinute)
	}
	if pl.Stream == nil || pl.Stream.Messages == 0 || len(pl.Stream.Consumers) == 0 {
		t.Fatalf("stream: %+v", pl.Stream)
	}
	if len(pl.Rejects) != 1 || pl.Rejects[0].Count != 1 || !strings.Contains(pl.Rejects[0].Reason, "event name") {
		t.Fatalf("rejects: %+v", pl.Rejects)
	}

	// Rollups: a reads src and fails when src is empty; b reads a, c reads b.
	exec(t, e.P.DB, "CREATE TABLE public.src (id int PRIMARY KEY, v int); INSERT INTO src VALUES (1, 1)")
	dir := t.TempDir()
	for name, sql := range map[string]string{
		"1_c.sql": "-- refresh: 1h\nCREATE MATERIALIZED VIEW rollups.c AS SELECT count(*) AS n FROM rollups.b;",
		"2_b.sql": "-- refresh: 1h\nCREATE MATERIALIZED VIEW b AS SELECT id FROM a;",
		"3_a.sql": "-- refresh: 1h\nCREATE MATERIALIZED VIEW a AS SELECT s.id FROM (SELECT 1 / count(*) AS guard FROM src) g JOIN src s ON g.guard IS NOT NULL;",
		"4_d.sql": "-- refresh: 1h\nCREATE MATERIALIZED VIEW d AS SELECT count(*) AS n FROM src;",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := rollups.LoadDir(rollups.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rollups.Apply(ctx, e.P.DB, e.P.Log, rollups.Config{Dir: dir}, rs); err != nil {
		t.Fatal(err)
	}
	exec(t, e.P.DB, "DELETE FROM public.src")
	if _, err := rollups.Refresh(ctx, e.P.DB, e.P.Log, rollups.Config{}, time.Now(), true); err != nil {
		t.Fatal(err)
	}
	var ru struct {
		Rollups []struct {
			Name      string   `json:"name"`
			DependsOn []string `json:"depends_on"`
			LastRun   *struct {
				Status string  `json:"status"`
				Error  *string `json:"error"`
			} `json:"last_run"`
			BlockedBy *string `json:"blocked_by"`
		} `json:"rollups"`
	}
	adm.json("GET", "/api/rollups", nil, 200, &ru)
	got := map[string]string{}
	for _, r := range ru.Rollups {
		s := ""
		if r.LastRun != nil {
			s = r.LastRun.Status
			if r.LastRun.Error != nil && r.LastRun.Status == "error" && !strings.Contains(*r.LastRun.Error, "division by zero") {
				t.Fatalf("%s error %q", r.Name, *r.LastRun.Error)
			}
		}
		if r.BlockedBy != nil {
			s += " blocked by " + *r.BlockedBy
		}
		s += " <- " + strings.Join(r.DependsOn, ",")
		got[r.Name] = s
	}
	want := map[string]string{
		"rollups.a": "error <- ",
		"rollups.b": "skipped blocked by rollups.a <- rollups.a",
		"rollups.c": "skipped blocked by rollups.a <- rollups.b",
		"rollups.d": "ok <- ",
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("rollups: %v, want %v", got, want)
		}
	}
}

// TestLiveEventsBounded: past LiveRate events a second a stream reports
// how many it dropped instead of sending them.
func TestLiveEventsBounded(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{adjust: func(c *console.Config) { c.LiveRate = 3; c.MaxLive = 1 }})
	adm := e.signIn(t, e.Admin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.URL+"/api/live", nil)
	resp, err := adm.hc.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("live: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if st, body, _ := adm.do("GET", "/api/live", nil, nil); st != http.StatusTooManyRequests {
		t.Fatalf("a second stream past MaxLive 1: %d %s, want 429", st, body)
	}
	var batch strings.Builder
	batch.WriteString(`{"batch":[`)
	for i := 0; i < 20; i++ {
		if i > 0 {
			batch.WriteString(",")
		}
		batch.WriteString(`{"type":"track","userId":"u","event":"E"}`)
	}
	batch.WriteString(`]}`)
	r, _ := http.NewRequest("POST", e.P.URL+"/v1/batch", strings.NewReader(batch.String()))
	r.SetBasicAuth(e.P.Server.WriteKey, "")
	r.Header.Set("Content-Type", "application/json")
	br, err := http.DefaultClient.Do(r)
	if err != nil || br.StatusCode != 200 {
		t.Fatalf("batch: %v %v", br, err)
	}
	br.Body.Close()
	ev := &sse{r: bufio.NewReader(resp.Body)}
	accepted, dropped := 0, 0
	for accepted+dropped < 20 {
		name, data, err := ev.next()
		if err != nil {
			t.Fatalf("after %d accepted, %d dropped: %v", accepted, dropped, err)
		}
		switch name {
		case "accepted":
			accepted++
		case "dropped":
			var d struct{ Count int }
			_ = json.Unmarshal([]byte(data), &d)
			dropped += d.Count
		}
	}
	if accepted > 3*2 || dropped == 0 {
		t.Fatalf("%d accepted, %d dropped: want at most 3 a second and the rest counted", accepted, dropped)
	}
}
