package stream_test

import (
	"context"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/natstest"
	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats.go/jetstream"
)

// countingJS counts the purges made through it.
type countingJS struct {
	jetstream.JetStream
	purges int
}

type countingStream struct {
	jetstream.Stream
	js *countingJS
}

func (c *countingJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := c.JetStream.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return &countingStream{Stream: s, js: c}, nil
}

func (s *countingStream) Purge(ctx context.Context, opts ...jetstream.StreamPurgeOpt) error {
	s.js.purges++
	return s.Stream.Purge(ctx, opts...)
}

// TestTrimIdlePurgesOnce: while no consumer's floor moves, repeated trims
// purge nothing again (each purge by subject reads the blocks below the
// floor, which JetStream then keeps in memory), and once it moves they
// purge what was acknowledged.
func TestTrimIdlePurgesOnce(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	c := natstest.StreamConfig(t)
	raw := natstest.JetStream(t, srv, c)
	js := &countingJS{JetStream: raw}
	ctx := context.Background()
	for range 50 {
		if _, err := raw.Publish(ctx, c.EventSubject(1), make([]byte, 500)); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := raw.CreateOrUpdateConsumer(ctx, c.Name, jetstream.ConsumerConfig{
		Durable: "w", AckPolicy: jetstream.AckExplicitPolicy, FilterSubjects: []string{c.EventsFilter(), c.RejectsFilter()},
	})
	if err != nil {
		t.Fatal(err)
	}
	ack := func(n int) {
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	ack(20)
	var tr stream.Trimmer
	r, err := tr.Trim(ctx, js, c)
	if err != nil || r.Purged != 20 {
		t.Fatalf("first trim: %+v %v; want the 20 acked purged", r, err)
	}
	first := js.purges
	for range 3 {
		if r, err := tr.Trim(ctx, js, c); err != nil || r.Purged != 0 {
			t.Fatalf("idle trim: %+v %v", r, err)
		}
	}
	if js.purges != first {
		t.Fatalf("%d purges by idle trims; want none while the floors stay", js.purges-first)
	}
	ack(10)
	if r, err := tr.Trim(ctx, js, c); err != nil || r.Purged != 10 {
		t.Fatalf("trim after the floor moved: %+v %v; want the 10 acked purged", r, err)
	}
}
