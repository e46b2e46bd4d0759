package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/warehouse"
)

// postHeaders sends one event with repeated headers allowed (two
// X-Forwarded-For lines must reach the collector as two lines).
func postHeaders(t *testing.T, url, key string, ev map[string]any, headers http.Header) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(jsonBody(t, ev)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", basic(key))
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range headers {
		req.Header.Del(k)
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	return do(t, req)
}

// addSource creates a source and waits until the collector accepts its key.
func addSource(t *testing.T, p *herdtest.Pipeline, s herd.Source) herd.Source {
	t.Helper()
	s, err := warehouse.CreateSource(context.Background(), p.DB, s)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		probe := post(t, p.URL+"/v1/track", jsonBody(t, map[string]any{"event": "probe", "userId": "probe", "messageId": "probe-" + s.Name}),
			map[string]string{"Authorization": basic(s.WriteKey), "Content-Type": "application/json"})
		if probe.Status == 200 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("source %s not accepted by the collector within 10s: %d %s", s.Name, probe.Status, probe.RawBody)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitEvents waits for n rows with message ids starting with prefix.
func waitEvents(t *testing.T, p *herdtest.Pipeline, prefix string, n int) {
	t.Helper()
	if got := p.WaitRows(t, int64(n), 15*time.Second, "SELECT count(*) FROM herd.events WHERE message_id LIKE $1 || '%'", prefix); got != int64(n) {
		t.Fatalf("%d rows with prefix %s stored, want %d", got, prefix, n)
	}
}

// column reads one text expression of the row with the given message id;
// NULL reads as "NULL".
func column(t *testing.T, p *herdtest.Pipeline, expr, messageID string) string {
	t.Helper()
	var s string
	q := fmt.Sprintf("SELECT coalesce((%s)::text, 'NULL') FROM herd.events WHERE message_id = $1", expr)
	if err := p.DB.QueryRow(context.Background(), q, messageID).Scan(&s); err != nil {
		t.Fatalf("%s for %s: %v", expr, messageID, err)
	}
	return s
}
