package collector

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/herdhq/herd"
	"golang.org/x/time/rate"
)

// limiters hold the token buckets: one per source (events per second) and,
// optionally, one per client network (requests per second). Each has its
// own locks: a flood of new client addresses never holds up the sources.
type limiters struct {
	defaultRate float64 // events/s per source when the source sets none; 0: unlimited

	byteRate float64 // bytes/s per browser source; 0: unlimited

	mu       sync.Mutex
	bySource map[int64]*sourceBucket
	bytes    map[int64]*rate.Limiter // browser sources' stored bytes

	ip *ipLimiter // nil: off
}

type sourceBucket struct {
	rate float64
	lim  *rate.Limiter
}

func newLimiters(defaultRate, ipRate, byteRate float64) *limiters {
	l := &limiters{defaultRate: defaultRate, byteRate: byteRate, bySource: map[int64]*sourceBucket{}, bytes: map[int64]*rate.Limiter{}}
	if ipRate > 0 {
		l.ip = newIPLimiter(ipRate, ipShardCap)
	}
	return l
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

// byteBucket is the stored-bytes bucket of a browser source, nil when its
// bytes are not limited.
func (l *limiters) byteBucket(s *herd.Source) *rate.Limiter {
	if l.byteRate <= 0 || s.Kind != herd.KindBrowser {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.bytes[s.ID]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(l.byteRate), int(math.Max(8*l.byteRate, minByteBurst)))
		l.bytes[s.ID] = lim
	}
	return lim
}

// minByteBurst lets a browser source store at least one request of the
// largest size at once (a 500 KB batch may store about 2.3 MB).
const minByteBurst = 4 << 20

// sourceBytes reports whether a browser source may store more now: its
// bucket is not in debt. What a request stores is known only once its events
// are encoded, so it is charged after (chargeBytes) and the debt refuses the
// requests that follow until the bucket refills.
func (l *limiters) sourceBytes(s *herd.Source, now time.Time) (bool, time.Duration) {
	lim := l.byteBucket(s)
	if lim == nil {
		return true, 0
	}
	if tok := lim.TokensAt(now); tok < 0 {
		return false, time.Duration(-tok / l.byteRate * float64(time.Second))
	}
	return true, 0
}

// chargeBytes takes n stored bytes from a browser source's bucket, into
// debt if need be.
func (l *limiters) chargeBytes(s *herd.Source, n int, now time.Time) {
	if lim := l.byteBucket(s); lim != nil && n > 0 {
		lim.ReserveN(now, min(n, lim.Burst()))
	}
}

// client takes one request from the bucket of the client's network.
func (l *limiters) client(a netip.Addr, now time.Time) (bool, time.Duration) {
	if l.ip == nil || !a.IsValid() {
		return true, 0
	}
	return l.ip.take(a, now)
}

// ipShards and ipShardCap size the per-client buckets: at most
// 2 × ipShards × ipShardCap networks are tracked (262,144, about 20 MB).
const (
	ipShards   = 64
	ipShardCap = 2048
)

// ipLimiter holds a token bucket per client network: an IPv4 address, or an
// IPv6 /64 (what one subscriber is given, so a client cannot step around
// its bucket by changing the low 64 bits). Memory is bounded without
// sweeps: each shard keeps two generations of buckets; when the current one
// is full it becomes the previous and the old previous is dropped whole. A
// bucket found in the previous generation moves to the current, so busy
// networks keep theirs, and a network forgotten only starts over with a
// full bucket, as a new one would. Shards are chosen by a keyed hash, so a
// client cannot aim its addresses at one shard.
type ipLimiter struct {
	rate, burst float64
	shardCap    int
	seed        maphash.Seed
	shards      [ipShards]ipShard
}

type ipShard struct {
	mu        sync.Mutex
	cur, prev map[netKey]ipBucket
}

// netKey is a client network: the IPv4 address, or the IPv6 /64.
type netKey struct {
	bits uint64
	v6   bool
}

type ipBucket struct {
	tokens float64
	last   int64 // Unix nanoseconds of the last refill
}

func newIPLimiter(r float64, shardCap int) *ipLimiter {
	l := &ipLimiter{rate: r, burst: math.Max(1, math.Ceil(r)), shardCap: shardCap, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].cur = make(map[netKey]ipBucket, shardCap)
	}
	return l
}

func keyOf(a netip.Addr) netKey {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return netKey{bits: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return netKey{bits: binary.BigEndian.Uint64(b[:8]), v6: true}
}

func (l *ipLimiter) take(a netip.Addr, now time.Time) (bool, time.Duration) {
	k := keyOf(a)
	s := &l.shards[maphash.Comparable(l.seed, k)%ipShards]
	t := now.UnixNano()
	s.mu.Lock()
	b, ok := s.cur[k]
	if !ok {
		if b, ok = s.prev[k]; ok {
			delete(s.prev, k)
		} else {
			b = ipBucket{tokens: l.burst, last: t}
		}
		if len(s.cur) >= l.shardCap {
			s.prev, s.cur = s.cur, make(map[netKey]ipBucket, l.shardCap)
		}
	}
	if d := t - b.last; d > 0 {
		b.tokens = math.Min(l.burst, b.tokens+float64(d)/1e9*l.rate)
		b.last = t
	}
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	}
	s.cur[k] = b
	s.mu.Unlock()
	if allowed {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * 1e9)
}

// tracked is how many networks have a bucket.
func (l *ipLimiter) tracked() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.cur) + len(s.prev)
		s.mu.Unlock()
	}
	return n
}

// retryAfter renders a delay as whole seconds, at least one.
func retryAfter(d time.Duration) string {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}
