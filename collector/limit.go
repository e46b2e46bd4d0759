package collector

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/herdhq/herd"
	"golang.org/x/time/rate"
)

// limiters hold the token buckets: one per source (events per second) and,
// optionally, one per client IP (requests per second).
type limiters struct {
	defaultRate float64 // events/s per source when the source sets none; 0: unlimited
	ipRate      float64 // requests/s per client IP; 0: off

	mu       sync.Mutex
	bySource map[int64]*sourceBucket
	byIP     map[string]*ipBucket
}

type sourceBucket struct {
	rate float64
	lim  *rate.Limiter
}

type ipBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiters(defaultRate, ipRate float64) *limiters {
	return &limiters{defaultRate: defaultRate, ipRate: ipRate, bySource: map[int64]*sourceBucket{}, byIP: map[string]*ipBucket{}}
}

// take asks lim for n tokens now; when they are not there it returns how
// long until they would be, and takes nothing.
func take(lim *rate.Limiter, n int, now time.Time) (bool, time.Duration) {
	r := lim.ReserveN(now, n)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// source takes n events from the source's bucket. The bucket holds a
// second's worth of events, and at least one full batch, so that a client
// sending at its allowed rate in batches is never refused.
func (l *limiters) source(s *herd.Source, n int, now time.Time) (bool, time.Duration) {
	r := l.defaultRate
	if s.RateLimit != nil {
		r = *s.RateLimit
	}
	if r <= 0 {
		return true, 0
	}
	l.mu.Lock()
	b := l.bySource[s.ID]
	if b == nil || b.rate != r {
		burst := int(math.Max(math.Ceil(r), MaxBatchEvents))
		b = &sourceBucket{rate: r, lim: rate.NewLimiter(rate.Limit(r), burst)}
		l.bySource[s.ID] = b
	}
	l.mu.Unlock()
	return take(b.lim, n, now)
}

// ip takes one request from the client address's bucket.
func (l *limiters) ip(addr string, now time.Time) (bool, time.Duration) {
	if l.ipRate <= 0 || addr == "" {
		return true, 0
	}
	l.mu.Lock()
	b := l.byIP[addr]
	if b == nil {
		if len(l.byIP) > 100_000 {
			for k, v := range l.byIP {
				if now.Sub(v.seen) > time.Minute {
					delete(l.byIP, k)
				}
			}
		}
		b = &ipBucket{lim: rate.NewLimiter(rate.Limit(l.ipRate), int(math.Max(1, math.Ceil(l.ipRate))))}
		l.byIP[addr] = b
	}
	b.seen = now
	l.mu.Unlock()
	return take(b.lim, 1, now)
}

// retryAfter renders a delay as whole seconds, at least one.
func retryAfter(d time.Duration) string {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}
