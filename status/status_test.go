package status_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/status"
)

func send(t *testing.T, p *herdtest.Pipeline, key, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/v1/batch", strings.NewReader(body))
	req.SetBasicAuth(key, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("batch: %d", resp.StatusCode)
	}
}

func batch(n int, prefix string, bad int) string {
	var items []string
	for i := 0; i < n; i++ {
		items = append(items, fmt.Sprintf(`{"type":"track","event":"E","userId":"u","messageId":"%s-%d"}`, prefix, i))
	}
	for i := 0; i < bad; i++ {
		items = append(items, fmt.Sprintf(`{"type":"track","event":"E","userId":"u","messageId":"%s-bad-%d","timestamp":"1990-01-0%dT00:00:00Z"}`, prefix, i, i%9+1))
	}
	return `{"batch":[` + strings.Join(items, ",") + `]}`
}

// TestGather sends events to two sources, some two hours ago, some refused,
// and checks every figure of the report against what was sent.
func TestGather(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64 // how far the collector's clock is behind
	offset.Store(int64(2 * time.Hour))
	p := herdtest.Start(t, herdtest.Options{Collector: func(c *collector.Config) {
		c.Now = func() time.Time { return time.Now().Add(-time.Duration(offset.Load())) }
	}})
	send(t, p, p.WriteKey, batch(7, "old", 2)) // web: 7 events, 2 rejects, 2 h ago
	offset.Store(0)
	send(t, p, p.WriteKey, batch(5, "new", 3))        // web: 5 events, 3 rejects, now
	send(t, p, p.Server.WriteKey, batch(4, "srv", 0)) // backend: 4 events
	if n := p.WaitRows(t, 16, 10*time.Second, "SELECT count(*) FROM herd.events"); n != 16 {
		t.Fatalf("events %d, want 16", n)
	}
	if n := p.WaitRows(t, 5, 10*time.Second, "SELECT count(*) FROM herd.rejects"); n != 5 {
		t.Fatalf("rejects %d, want 5", n)
	}
	ctx := context.Background()
	// The writer acks after commit; wait for the acks to reach the consumer.
	var r *status.Report
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		if r, err = status.Gather(ctx, p.DB, p.JS, p.Stream, time.Now()); err != nil {
			t.Fatal(err)
		}
		if len(r.Consumers) == 1 && r.Consumers[0].AckPending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// One request at a time: each request's events share one frame, and each
	// refused event is a message of its own.
	if r.Stream.Name != p.Stream.Name || r.Stream.Msgs != 8 || r.Stream.MaxBytes != p.Stream.MaxBytes || r.Stream.Bytes == 0 {
		t.Errorf("stream %+v, want 8 messages (3 frames of events, 5 rejects) and limit %d", r.Stream, p.Stream.MaxBytes)
	}
	if len(r.Consumers) != 1 || r.Consumers[0].Pending != 0 || r.Consumers[0].AckPending != 0 || r.Consumers[0].DeliveredSeq != 8 {
		t.Errorf("consumers %+v, want one with nothing pending", r.Consumers)
	}
	got := map[string][2]int64{}
	for _, s := range r.Sources {
		got[s.Name] = [2]int64{s.LastWindow, s.Total}
	}
	if got["web"] != [2]int64{5, 12} || got["backend"] != [2]int64{4, 4} || len(got) != 2 {
		t.Errorf("sources %+v, want web 5 of 12 in the last hour, backend 4 of 4", r.Sources)
	}
	if r.Rejects.Total != 3 || len(r.Rejects.Top) != 1 || r.Rejects.Top[0].Count != 3 ||
		r.Rejects.Top[0].Reason != "timestamp N-N-NTN:N:NZ is before N-N-N" {
		t.Errorf("rejects %+v, want 3 timestamp rejects in the last hour", r.Rejects)
	}
	var lastLoaded, lastRecv time.Time
	_ = p.DB.QueryRow(ctx, "SELECT max(loaded_at), max(received_at) FROM herd.events").Scan(&lastLoaded, &lastRecv)
	if !r.LastLoaded.Equal(lastLoaded) || !r.LastReceived.Equal(lastRecv) || time.Since(r.LastLoaded) > time.Minute {
		t.Errorf("last commit %s / received %s, want %s / %s", r.LastLoaded, r.LastReceived, lastLoaded, lastRecv)
	}
	var out bytes.Buffer
	if err := r.Write(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"8 messages", "herd-writer", "web", "rejects in the last hour: 3", "3  timestamp N-N-NTN:N:NZ is before N-N-N"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	// With the writer stopped, new events wait on the consumer.
	p.StopWriter()
	send(t, p, p.WriteKey, batch(6, "lag", 0))
	if r, err := status.Gather(ctx, p.DB, p.JS, p.Stream, time.Now()); err != nil {
		t.Fatal(err)
	} else if r.Stream.Msgs != 9 || len(r.Consumers) != 1 || r.Consumers[0].Pending != 1 {
		t.Errorf("after stopping the writer: stream %d messages, consumers %+v; want 9 and the new frame pending", r.Stream.Msgs, r.Consumers)
	}
}

// TestConnectorsLag reads the SaaS connectors' sync states: one row per
// object of every schema with a sync_state of the connectors' shape, its lag
// the age of synced_until.
func TestConnectorsLag(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	if _, err := p.DB.Exec(ctx, `INSERT INTO stripe.sync_state (object, phase, synced_until, last_success_at)
			VALUES ('events', 'incremental', $1, $2)`, now.Add(-90*time.Second), now.Add(-30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DB.Exec(ctx, `
		INSERT INTO stripe.sync_state (object, phase, last_error) VALUES ('customers', 'backfill', 'Stripe said 500');
		CREATE SCHEMA notaconnector;
		CREATE TABLE notaconnector.sync_state (object text);
		INSERT INTO notaconnector.sync_state VALUES ('x');`); err != nil {
		t.Fatal(err)
	}
	r, err := status.Gather(ctx, p.DB, p.JS, p.Stream, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Connectors) != 2 {
		t.Fatalf("connectors %+v, want stripe's two objects only", r.Connectors)
	}
	c := r.Connectors[1]
	if lag, ok := c.Lag(now); c.Source != "stripe" || c.Object != "events" || !ok || lag != 90*time.Second || !c.LastSuccess.Equal(now.Add(-30*time.Second)) {
		t.Errorf("events %+v (lag %v), want incremental, 90s behind, success 30s ago", c, lag)
	}
	if _, ok := r.Connectors[0].Lag(now); ok || r.Connectors[0].LastError != "Stripe said 500" {
		t.Errorf("customers %+v, want no lag yet and its error", r.Connectors[0])
	}
	var out bytes.Buffer
	if err := r.Write(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"connectors", "stripe  events", "1m30s", "30s ago", "Stripe said 500"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
