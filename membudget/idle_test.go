package membudget

import (
	"testing"
	"time"
)

// TestIdleRelease: free memory is returned once the process has been quiet
// for quietFor after real work, not while it works, not when it was idle
// all along, and not again until there was more work.
func TestIdleRelease(t *testing.T) {
	var freed int
	r := &idleRelease{free: func() { freed++ }}
	now := time.Unix(0, 0)
	var allocs uint64
	step := func(rate uint64) bool {
		now = now.Add(time.Second)
		allocs += rate
		return r.tick(now, allocs, time.Second)
	}
	// Idle from the start: nothing to give back.
	for range 30 {
		if step(10 << 10) {
			t.Fatal("released with no work done")
		}
	}
	// Work: 100 MiB/s for 5 s; no release while it lasts.
	for range 5 {
		if step(100 << 20) {
			t.Fatal("released while busy")
		}
	}
	// Quiet: released once, after quietFor.
	released := -1
	for i := range 30 {
		if step(10<<10) && released < 0 {
			released = i
		}
	}
	if freed != 1 {
		t.Fatalf("released %d times after one stretch of work; want 1", freed)
	}
	if d := time.Duration(released) * time.Second; d < quietFor-time.Second || d > quietFor+time.Second {
		t.Errorf("released %s into the quiet; want about %s", d, quietFor)
	}
	// Work again, then quiet: a second release.
	for range 3 {
		step(50 << 20)
	}
	for range 15 {
		step(0)
	}
	if freed != 2 {
		t.Errorf("released %d times after two stretches of work; want 2", freed)
	}
}
