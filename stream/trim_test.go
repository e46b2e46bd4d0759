package stream_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/natstest"
	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats.go/jetstream"
)

// TestTrimKeepsWhatIsNotAcked: acknowledged events go, unacknowledged ones
// and families nobody consumes stay; a full stream takes publishes again
// once its messages are acknowledged and trimmed.
func TestTrimKeepsWhatIsNotAcked(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	c := natstest.StreamConfig(t)
	c.MaxBytes = 64 << 10
	js := natstest.JetStream(t, srv, c)
	ctx := context.Background()
	pub := func(subject string, n int) int {
		ok := 0
		for i := 0; i < n; i++ {
			if _, err := js.Publish(ctx, subject, make([]byte, 900)); err == nil {
				ok++
			}
		}
		return ok
	}
	if got := pub(c.EventSubject(1), 100); got >= 100 {
		t.Fatalf("published %d into a 64 KiB stream; want it to fill", got)
	}
	pub(c.WebhookSubject("stripe"), 0)
	// No consumer yet: nothing may go.
	if r, err := stream.Trim(ctx, js, c); err != nil || r.Purged != 0 {
		t.Fatalf("trim without consumers: %+v %v", r, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, c.Name, jetstream.ConsumerConfig{
		Durable: "w", AckPolicy: jetstream.AckExplicitPolicy, FilterSubjects: []string{c.EventsFilter(), c.RejectsFilter()},
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(20, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		acked++
	}
	s, _ := js.Stream(ctx, c.Name)
	before, _ := s.Info(ctx)
	r, err := stream.Trim(ctx, js, c)
	if err != nil {
		t.Fatal(err)
	}
	n := r.Purged
	after, _ := s.Info(ctx)
	if n != uint64(acked) || after.State.Msgs != before.State.Msgs-uint64(acked) {
		t.Fatalf("trimmed %d (msgs %d -> %d), want the %d acked", n, before.State.Msgs, after.State.Msgs, acked)
	}
	if after.State.FirstSeq != uint64(acked)+1 {
		t.Fatalf("first sequence %d, want %d", after.State.FirstSeq, acked+1)
	}
	if got := pub(c.EventSubject(1), 5); got != 5 {
		t.Fatalf("after trimming, %d of 5 publishes went through", got)
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		f, fam string
		want   bool
	}{
		{"herd.events.>", "herd.events.>", true},
		{"herd.>", "herd.events.>", true},
		{"herd.events.*", "herd.events.>", false},
		{"herd.rejects.>", "herd.events.>", false},
		{"herd.webhooks.stripe", "herd.webhooks.stripe", true},
		{"herd.webhooks.*", "herd.webhooks.stripe", true},
		{">", "herd.events.>", true},
	} {
		if got := stream.Covers(tc.f, tc.fam); got != tc.want {
			t.Errorf("covers(%q, %q) = %v", tc.f, tc.fam, got)
		}
	}
	_ = fmt.Sprint
}

// TestTrimPassesAStoppedArchiverUnderPressure: a best-effort consumer (the
// archiver) that stopped holds messages only until the stream nears its
// limit; then what the writer has is trimmed and publishes go through again.
func TestMergeRanges(t *testing.T) {
	t.Parallel()
	r := func(a, b uint64) stream.SeqRange { return stream.SeqRange{First: a, Last: b} }
	for _, tc := range []struct {
		in    []stream.SeqRange
		limit int
		want  []stream.SeqRange
	}{
		{nil, 0, nil},
		{[]stream.SeqRange{r(5, 9), r(1, 3)}, 0, []stream.SeqRange{r(1, 3), r(5, 9)}},
		{[]stream.SeqRange{r(1, 10), r(5, 20), r(21, 22)}, 0, []stream.SeqRange{r(1, 22)}},
		{[]stream.SeqRange{r(1, 2), r(10, 11), r(13, 14), r(40, 41)}, 3, []stream.SeqRange{r(1, 2), r(10, 14), r(40, 41)}},
		{[]stream.SeqRange{r(1, 2), r(10, 11), r(13, 14), r(40, 41)}, 1, []stream.SeqRange{r(1, 41)}},
	} {
		if got := stream.MergeRanges(tc.in, tc.limit); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("MergeRanges(%v, %d) = %v, want %v", tc.in, tc.limit, got, tc.want)
		}
	}
}

func TestTrimPassesAStoppedArchiverUnderPressure(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	c := natstest.StreamConfig(t)
	c.MaxBytes = 64 << 10
	c.BestEffort = []string{"archiver"}
	js := natstest.JetStream(t, srv, c)
	ctx := context.Background()
	pub := func(n int) int {
		ok := 0
		for i := 0; i < n; i++ {
			if _, err := js.Publish(ctx, c.EventSubject(1), make([]byte, 900)); err == nil {
				ok++
			}
		}
		return ok
	}
	for _, name := range []string{"writer", "archiver"} {
		if _, err := js.CreateOrUpdateConsumer(ctx, c.Name, jetstream.ConsumerConfig{
			Durable: name, AckPolicy: jetstream.AckExplicitPolicy, FilterSubjects: []string{c.EventsFilter()},
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Below the pressure mark the archiver's position holds messages back.
	pub(20)
	ackAll := func() {
		cons, _ := js.Consumer(ctx, c.Name, "writer")
		for {
			batch, err := cons.Fetch(100, jetstream.FetchMaxWait(300*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for m := range batch.Messages() {
				_ = m.DoubleAck(ctx)
				n++
			}
			if n == 0 {
				return
			}
		}
	}
	ackAll()
	if r, err := stream.Trim(ctx, js, c); err != nil || r.Purged != 0 || len(r.Skipped) != 0 {
		t.Fatalf("below pressure: %+v %v; want nothing purged while the archiver lacks them", r, err)
	}
	// Fill the stream: the collector would now get errors.
	pub(100)
	ackAll()
	if got := pub(5); got != 0 {
		t.Fatalf("%d publishes into a full stream", got)
	}
	r, err := stream.Trim(ctx, js, c)
	if err != nil {
		t.Fatal(err)
	}
	if r.Purged == 0 || len(r.Skipped) != 1 || r.Skipped[0] != "archiver" {
		t.Fatalf("under pressure: %+v; want the writer's acked messages purged past the archiver", r)
	}
	// The archiver had acknowledged nothing: everything purged is its gap,
	// recorded where the archiver will take it from.
	wantGap := stream.SeqRange{First: 1, Last: r.Purged}
	if len(r.Gaps) != 1 || r.Gaps[0].Consumer != "archiver" || r.Gaps[0].SeqRange != wantGap {
		t.Fatalf("gaps %+v, want archiver's %+v", r.Gaps, wantGap)
	}
	rs, done, err := stream.TakeGaps(ctx, js, c, "archiver")
	if err != nil || len(rs) != 1 || rs[0] != wantGap {
		t.Fatalf("recorded gaps %+v (%v), want %+v", rs, err, wantGap)
	}
	if err := done(ctx); err != nil {
		t.Fatal(err)
	}
	if rs, _, err := stream.TakeGaps(ctx, js, c, "archiver"); err != nil || len(rs) != 0 {
		t.Fatalf("gaps after taking them: %+v %v", rs, err)
	}
	if got := pub(5); got != 5 {
		t.Fatalf("after trimming, %d of 5 publishes went through", got)
	}
}
