package collector

import (
	"math"
	"sync"
	"time"
)

// DefaultRejectRate is how many bytes of rejects a source may record per
// second by default; its bucket holds rejectBurstSeconds of them (1 MiB by
// default: a refused batch of small items), and at least minRejectBurst
// (room for the largest single reject).
const (
	DefaultRejectRate  = 32 << 10
	rejectBurstSeconds = 32
	minRejectBurst     = 256 << 10
)

// rejectBudget bounds what refused events and requests may store on the
// stream (and so in herd.rejects), per source: every reject is recorded
// while its source has budget; past it, rejects are counted
// (herd_collector_rejects_unrecorded_total) and the next recorded one is
// preceded by a summary of how many were not. Sources are the operator's,
// so the map stays small.
type rejectBudget struct {
	rate, burst float64
	mu          sync.Mutex
	bySource    map[int64]*rejectBucket
}

type rejectBucket struct {
	tokens       float64
	last         int64 // Unix nanoseconds of the last refill
	dropped      int64 // rejects not recorded since the last recorded one
	droppedBytes int64
	firstDropped time.Time
}

func newRejectBudget(r float64) *rejectBudget {
	if r <= 0 {
		r = DefaultRejectRate
	}
	return &rejectBudget{rate: r, burst: math.Max(minRejectBurst, r*rejectBurstSeconds), bySource: map[int64]*rejectBucket{}}
}

// unrecorded is what a summary reports: rejects dropped since a time.
type unrecorded struct {
	n, bytes int64
	since    time.Time
}

// take charges size bytes to the source's budget. It reports whether the
// reject may be recorded and, when it may, what was dropped before it (the
// count is then cleared: the caller records the summary).
func (b *rejectBudget) take(sourceID int64, size int, now time.Time) (bool, unrecorded) {
	t := now.UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.bySource[sourceID]
	if k == nil {
		k = &rejectBucket{tokens: b.burst, last: t}
		b.bySource[sourceID] = k
	}
	if d := t - k.last; d > 0 {
		k.tokens = math.Min(b.burst, k.tokens+float64(d)/1e9*b.rate)
		k.last = t
	}
	if k.tokens < float64(size) {
		if k.dropped == 0 {
			k.firstDropped = now
		}
		k.dropped++
		k.droppedBytes += int64(size)
		return false, unrecorded{}
	}
	k.tokens -= float64(size)
	u := unrecorded{n: k.dropped, bytes: k.droppedBytes, since: k.firstDropped}
	k.dropped, k.droppedBytes = 0, 0
	return true, u
}
