package archive

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestPacerShare: work paced at a quarter of a core pauses three times as
// long as it runs, in pauses after slices of about paceSlice.
func TestPacerShare(t *testing.T) {
	clock := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	p := newPacer(context.Background(), 0.25)
	p.now = func() time.Time { return clock }
	var pauses []time.Duration
	p.sleep = func(d time.Duration) { pauses = append(pauses, d); clock = clock.Add(d) }
	const unit = paceSlice / 10
	p.step()
	for range 200 { // 20 slices of work
		clock = clock.Add(unit)
		p.step()
	}
	if len(pauses) != 20 {
		t.Fatalf("%d pauses in 20 slices of work: want one after each", len(pauses))
	}
	if want := 3 * 200 * unit; p.slept != want {
		t.Fatalf("paused %s for %s of work at share 0.25: want %s", p.slept, 200*unit, want)
	}
	// At share 1 it only yields.
	p = newPacer(context.Background(), 1)
	p.sleep = func(time.Duration) { t.Fatal("paused at share 1") }
	for range 3 {
		p.step()
		time.Sleep(paceSlice)
	}
}

// TestPacerAfterQuietSpell: the time before a unit of work starts, and a
// gap within it longer than a slice, is not paid for with a pause (after a
// minute idle the first step used to pause for three), and a pause ends
// when the pacer's context does.
func TestPacerAfterQuietSpell(t *testing.T) {
	clock := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithCancel(context.Background())
	p := newPacer(ctx, 0.25)
	p.now = func() time.Time { return clock }
	real := p.sleep
	var pauses []time.Duration
	p.sleep = func(d time.Duration) { pauses = append(pauses, d); clock = clock.Add(d) }
	p.step()
	clock = clock.Add(2 * paceSlice)
	p.step()
	clock = clock.Add(time.Minute) // quiet: no file to encode
	p.start()
	clock = clock.Add(paceSlice / 2)
	p.step()
	clock = clock.Add(40 * time.Second) // kept off the processor
	p.step()
	if want := []time.Duration{6 * paceSlice, 3 * maxSlice}; len(pauses) != 2 || pauses[0] != want[0] || pauses[1] != want[1] {
		t.Fatalf("pauses %v, want %v", pauses, want)
	}
	done := make(chan struct{})
	go func() { real(time.Hour); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a pause outlived the pacer's context")
	}
}

// TestPacedEncodeSameFile: pacing changes when the file is written, not
// what is written; without a pacer (commands run by hand) nothing pauses.
func TestPacedEncodeSameFile(t *testing.T) {
	evs := genEvents(3000, []int64{1}, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), time.Hour, 3)
	recs := make([]record, len(evs))
	for i := range evs {
		recs[i] = toRecord(&evs[i], uint64(i+1), ProvArchiver)
	}
	flat, err := encodeFile(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	p := newPacer(context.Background(), 0.5)
	p.sleep = func(time.Duration) {}
	paced, err := encodeFile(withPacer(context.Background(), p), recs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(flat, paced) {
		t.Fatalf("paced file differs from the unpaced one (%d and %d bytes)", len(paced), len(flat))
	}
	back, err := decodeFile(paced)
	if err != nil || len(back) != len(recs) {
		t.Fatalf("paced file reads back %d rows, %v", len(back), err)
	}
	if p.slept == 0 {
		t.Fatalf("encoding %d rows under a pacer never paused", len(recs))
	}
	if pacerOf(context.Background()) != nil {
		t.Fatal("a context without a pacer has one")
	}
}
