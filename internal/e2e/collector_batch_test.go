package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/herdtest"
	"github.com/nats-io/nats.go/jetstream"
)

// streamBytes is the stream's size as JetStream accounts it.
func streamBytes(t *testing.T, p *herdtest.Pipeline) uint64 {
	t.Helper()
	s, err := p.JS.Stream(context.Background(), p.Stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Bytes
}

// subjectPayload sums the payload bytes of the stream's messages on the
// subjects filter matches, read with an ordered consumer.
func subjectPayload(t *testing.T, p *herdtest.Pipeline, filter string) (bytes, msgs int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.JS.OrderedConsumer(ctx, p.Stream.Name, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		batch, err := c.Fetch(256, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			bytes += len(m.Data())
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		msgs += n
		if n == 0 {
			return bytes, msgs
		}
	}
}

// amplifyingBatch is the measured attack of issue 15: n small items sharing
// a batch context of ctxBytes.
func amplifyingBatch(n, ctxBytes int) []byte {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"type":"track","event":"e","userId":"u","messageId":"amp-%d"}`, i)
	}
	pad := strings.Repeat("x", ctxBytes)
	return []byte(`{"context":{"pad":"` + pad + `"},"batch":[` + strings.Join(items, ",") + `]}`)
}

// TestBatchContextAmplificationBounded: a batch context is merged into every
// event, yet what one request stores stays within a small multiple of its
// decompressed body, however many items share the context. The items past
// the budget are refused one by one, with a reason, and recorded.
func TestBatchContextAmplificationBounded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		items    int
		ctxBytes int
		status   int
	}{
		// Over the per-event limit once merged: the request is refused.
		{"300 KB context, 200 items", 200, 300 << 10, 413},
		// Each event fits, all of them would not: 200 × 30 KB = 6 MB.
		{"30 KB context, 200 items", 200, 30 << 10, 200},
		{"20 KB context, 2500 items", 2500, 20 << 10, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := herdtest.Start(t, herdtest.Options{})
			body := amplifyingBatch(tc.items, tc.ctxBytes)
			before := streamBytes(t, p)
			r := post(t, p.URL+"/v1/batch", gz(t, body), map[string]string{"Authorization": basic(p.WriteKey), "Content-Encoding": "gzip"})
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %.300s", r.Status, tc.status, r.RawBody)
			}
			grown := streamBytes(t, p) - before
			events, _ := subjectPayload(t, p, p.Stream.EventSubject(p.Source.ID))
			// The documented bound: twice the body, 512 bytes an event,
			// 64 KiB.
			budget := 2*len(body) + 512*tc.items + 64<<10
			if events > budget {
				t.Errorf("events take %d bytes on the stream from a %d-byte body; the bound is %d", events, len(body), budget)
			}
			naive := tc.items * tc.ctxBytes
			if grown > uint64(budget+(1<<20)) {
				t.Errorf("the stream grew by %d bytes (events %d) from a %d-byte body (%d gzip); without the bound it would be ≥ %d", grown, events, len(body), len(gz(t, body)), naive)
			}
			t.Logf("body %d bytes (%d gzip): stream +%d bytes, events %d bytes (unbounded: ≥ %d)", len(body), len(gz(t, body)), grown, events, naive)
			if tc.status != 200 {
				if !strings.Contains(r.RawBody, "batch context is") {
					t.Errorf("413 says %s", r.RawBody)
				}
				return
			}
			f, _ := r.Body["accepted"].(float64)
			accepted := int(f)
			if accepted == 0 || accepted == tc.items {
				t.Fatalf("accepted %d of %d: want some, not all: %.300s", accepted, tc.items, r.RawBody)
			}
			if !strings.Contains(r.RawBody, "would store more than") {
				t.Errorf("reply does not say why: %.300s", r.RawBody)
			}
			if n := p.WaitRows(t, int64(accepted), 10*time.Second, "SELECT count(*) FROM herd.events"); n != int64(accepted) {
				t.Errorf("%d events stored, %d accepted", n, accepted)
			}
			// Refused items are recorded (as many as the reject budget allows).
			if n := p.WaitRows(t, 1, 10*time.Second, "SELECT least(count(*), 1) FROM herd.rejects WHERE reason LIKE '%would store more than%' AND raw LIKE '%amp-%'"); n != 1 {
				t.Errorf("no reject recorded for the items past the budget")
			}
		})
	}
}

// TestBatchContextChecked: the batch context goes through the checks every
// event does, as it will be stored in each of them; a bad one refuses the
// request with a precise message.
func TestBatchContextChecked(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{NoWriter: true})
	deep := strings.Repeat(`{"a":`, 64) + `1` + strings.Repeat(`}`, 64) // 65 levels once inside an event
	shallow := strings.Repeat(`{"a":`, 63) + `1` + strings.Repeat(`}`, 63)
	item := `{"type":"track","event":"e","userId":"u"}`
	for _, tc := range []struct {
		name    string
		context string
		status  int
		want    string
	}{
		{"NUL escape", `{"page":{"title":"a\u0000b"}}`, 400, `batch context contains \u0000 (NUL)`},
		{"bad UTF-8", "{\"page\":{\"title\":\"a\xff\xfeb\"}}", 400, "batch context is not valid UTF-8"},
		{"too deep", deep, 400, "batch context nests 65 levels deep in each event; the limit is 64"},
		{"not an object", `["a"]`, 400, "batch context must be an object"},
		{"too large", `{"pad":"` + strings.Repeat("x", 40<<10) + `"}`, 413, "batch context is 40970 bytes; the limit is 32768"},
		{"deep enough", shallow, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(`{"context":` + tc.context + `,"batch":[` + item + `,` + item + `]}`)
			r := post(t, p.URL+"/v1/batch", body, map[string]string{"Authorization": basic(p.WriteKey)})
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %.300s", r.Status, tc.status, r.RawBody)
			}
			if msg, _ := r.Body["error"].(string); tc.want != "" && !strings.HasPrefix(msg, tc.want) {
				t.Errorf("error %q, want it to start %q", msg, tc.want)
			}
		})
	}
}

// TestReplyErrorsBounded: a batch of many bad items gets a reply listing the
// first 100 per-item errors and the count of the rest, not one entry each.
func TestReplyErrorsBounded(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{NoWriter: true})
	items := make([]string, 2500)
	for i := range items {
		items[i] = fmt.Sprintf(`{"type":"track","userId":"u","messageId":"%s-%d"}`, strings.Repeat("m", 100), i) // no event name
	}
	items[7] = `{"type":"track","event":"ok","userId":"u"}`
	r := post(t, p.URL+"/v1/batch", []byte(`{"batch":[`+strings.Join(items, ",")+`]}`), map[string]string{"Authorization": basic(p.WriteKey)})
	if r.Status != 200 {
		t.Fatalf("status %d: %.300s", r.Status, r.RawBody)
	}
	errs, _ := r.Body["errors"].([]any)
	if len(errs) != 100 || r.Body["errorsOmitted"] != float64(2399) || r.Body["accepted"] != float64(1) {
		t.Errorf("reply lists %d errors, omits %v, accepted %v: want 100, 2399, 1 (%d bytes)", len(errs), r.Body["errorsOmitted"], r.Body["accepted"], len(r.RawBody))
	}
}
