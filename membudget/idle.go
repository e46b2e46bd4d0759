package membudget

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// After load, the runtime keeps what the load left free (request buffers,
// pooled encoders, NATS's expired block caches) and hands it back to the
// OS only slowly (its scavenger returns about 1 % of the heap goal a
// second, and sync.Pools are emptied only by the second collection after
// their last use). An idle herd up would carry tens of MiB of it for
// minutes. idleRelease notices the process going quiet after work and
// returns what is free at once.
const (
	// quietRate is the allocation rate under which the process counts as
	// quiet (idle herd up allocates well under 100 KiB/s: metrics
	// scrapes, heartbeats).
	quietRate = 1 << 20
	// quietFor is how long it must stay quiet.
	quietFor = 10 * time.Second
	// busyBytes is how much must have been allocated since the last
	// release for another to be worth a collection.
	busyBytes = 64 << 20
)

// idleRelease follows the allocation rate, sampled once a second.
type idleRelease struct {
	sample      []metrics.Sample
	last        uint64 // cumulative allocations at the last sample
	released    uint64 // cumulative allocations at the last release
	quietSince  time.Time
	free        func() // debug.FreeOSMemory twice; tests count calls
	releasesInc func()
}

func newIdleRelease() *idleRelease {
	r := &idleRelease{sample: []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}, free: func() {
		// The first collection moves the pools' contents to their
		// victim caches; the second frees them.
		debug.FreeOSMemory()
		debug.FreeOSMemory()
	}}
	metrics.Read(r.sample)
	r.last = r.sample[0].Value.Uint64()
	r.released = r.last
	return r
}

// tick takes one sample at now, an interval of every after the last, and
// releases free memory to the OS when the process has been quiet for
// quietFor after at least busyBytes of allocation. It reports whether it
// released.
func (r *idleRelease) tick(now time.Time, allocs uint64, every time.Duration) bool {
	rate := float64(allocs-r.last) / every.Seconds()
	r.last = allocs
	if rate >= quietRate {
		r.quietSince = time.Time{}
		return false
	}
	if r.quietSince.IsZero() {
		r.quietSince = now
	}
	if now.Sub(r.quietSince) < quietFor || allocs-r.released < busyBytes {
		return false
	}
	r.free()
	if r.releasesInc != nil {
		r.releasesInc()
	}
	r.released = allocs
	return true
}

// read returns the cumulative bytes allocated.
func (r *idleRelease) read() uint64 {
	metrics.Read(r.sample)
	return r.sample[0].Value.Uint64()
}
