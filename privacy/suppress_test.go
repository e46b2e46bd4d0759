package privacy_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/privacy"
	"github.com/herdhq/herd/stream"
)

// postBatch posts body to /v1/batch and returns the status.
func postBatch(t *testing.T, p *herdtest.Pipeline, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", p.URL+"/v1/batch", strings.NewReader(body))
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(p.WriteKey+":")))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSuppressedRejectsAreNotStored: a suppressed user's refused events
// and requests (a bad timestamp, an unknown type, a body that is not JSON)
// are not recorded in herd.rejects, whose raw text would keep their data;
// another person's are. Suppressing a user suppresses the anonymous ids
// linked to them at the time, recorded in the request.
func TestSuppressedRejectsAreNotStored(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := herdtest.Start(t, herdtest.Options{})
	kv, err := stream.SuppressedKV(ctx, p.JS, p.Stream)
	if err != nil {
		t.Fatal(err)
	}
	go privacy.MirrorSuppressions(ctx, p.DB, kv, time.Second, herdtest.Logger(t)) //nolint:errcheck

	send(t, p, item("identify", "carol", "anon-c1", `"traits":{"email":"carol@example.com"}`))
	p.WaitRows(t, 1, 10*time.Second, `SELECT count(*) FROM herd.identities WHERE user_id = 'carol'`)

	id, n, err := privacy.Suppress(ctx, p.DB, privacy.Person{UserIDs: []string{"carol"}})
	if err != nil || n != 2 {
		t.Fatalf("suppress carol: %d ids suppressed (want carol and anon-c1), %v", n, err)
	}
	var linked []string
	if err := p.DB.QueryRow(ctx, `SELECT linked_ids FROM herd.privacy_requests WHERE id = $1`, id).Scan(&linked); err != nil || fmt.Sprint(linked) != "[anon-c1]" {
		t.Errorf("suppress request records linked ids %v (%v), want [anon-c1]", linked, err)
	}
	dropped := map[string]string{"result": "dropped", "reason": "suppressed"}
	waitFor(t, "the collector to load the suppression", func() (bool, string) {
		send(t, p, item("track", "carol", "", ""))
		v := counterValue(t, p.Registry, "herd_collector_events_total", dropped)
		return v > 0, fmt.Sprint(v, " dropped")
	})
	dropsBefore := counterValue(t, p.Registry, "herd_collector_events_total", dropped)

	send(t, p,
		item("track", "carol", "", `"timestamp":"not a time","properties":{"email":"carol@example.com"}`),
		`{"type":"nonsense","userId":"carol","properties":{"email":"carol@example.com"}}`,
		item("page", "", "anon-c1", ""),
		item("track", "dave", "", `"timestamp":"not a time"`),
		item("track", "dave", "", ""),
	)
	if st := postBatch(t, p, `{"batch":[{"type":"track","userId":"carol","properties":{"email":"carol@example.com"}`); st != 400 {
		t.Errorf("a broken body: status %d, want 400", st)
	}
	if st := postBatch(t, p, `{"batch":[{"type":"track","userId":"dave"`); st != 400 {
		t.Errorf("a broken body: status %d, want 400", st)
	}
	// Dave's two rejects are recorded: by then carol's would be too.
	p.WaitRows(t, 2, 10*time.Second, `SELECT count(*) FROM herd.rejects WHERE herd.raw_has_id(raw, '{dave}')`)
	p.WaitRows(t, 2, 10*time.Second, `SELECT count(*) FROM herd.events WHERE user_id = 'dave' OR anonymous_id = 'dave'`)
	if n := count(t, p, `SELECT count(*) FROM herd.rejects WHERE herd.raw_has_id(raw, '{carol,anon-c1}') OR raw LIKE '%carol@%'`); n != 0 {
		t.Errorf("%d rejects of suppressed carol were stored", n)
	}
	if n := count(t, p, `SELECT count(*) FROM herd.events WHERE anonymous_id = 'anon-c1' AND type = 'page'`); n != 0 {
		t.Errorf("%d events of carol's linked anonymous id were stored", n)
	}
	if got := counterValue(t, p.Registry, "herd_collector_events_total", dropped) - dropsBefore; got != 4 {
		t.Errorf("%v suppressed events and requests counted, want 4", got)
	}

	// Unsuppressing carol lets her linked anonymous id in again.
	if _, n, err := privacy.Unsuppress(ctx, p.DB, privacy.Person{UserIDs: []string{"carol"}}); err != nil || n != 2 {
		t.Fatalf("unsuppress carol: %d ids removed (want carol and anon-c1), %v", n, err)
	}
}
