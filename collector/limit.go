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
	bytes    map[int64]*byteBucket // browser sources' stored bytes

	ip *ipLimiter // nil: off
}

type sourceBucket struct {
	rate float64
	lim  *rate.Limiter
}

func newLimiters(defaultRate, ipRate, byteRate float64) *limiters {
	l := &limiters{defaultRate: defaultRate, byteRate: byteRate, bySource: map[int64]*sourceBucket{}, bytes: map[int64]*byteBucket{}}
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
func (l *limiters) byteBucket(s *herd.Source) *byteBucket {
	if l.byteRate <= 0 || s.Kind != herd.KindBrowser {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bytes[s.ID]
	if b == nil {
		b = newByteBucket(l.byteRate, math.Max(8*l.byteRate, minByteBurst))
		l.bytes[s.ID] = b
	}
	return b
}

// minByteBurst lets a browser source store at least one request of the
// largest size at once (a 500 KB batch may store about 2.3 MB).
const minByteBurst = 4 << 20

// byteBucket is a token bucket of stored bytes. A request reserves what it
// may store (its storeBudget) before it publishes anything and gives back
// what it did not publish once its events are encoded: concurrent requests
// can never together publish more than the bucket holds.
type byteBucket struct {
	mu          sync.Mutex
	rate, burst float64
	tokens      float64
	last        time.Time
}

// newByteBucket is a bucket of rate bytes a second, full at burst.
func newByteBucket(rate, burst float64) *byteBucket {
	return &byteBucket{rate: rate, burst: burst, tokens: burst}
}

func (b *byteBucket) refill(now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = math.Min(b.burst, b.tokens+d.Seconds()*b.rate)
	}
	if now.After(b.last) {
		b.last = now
	}
}

// reserve takes n bytes, or when they are not there takes nothing and
// says how long until they would be.
func (b *byteBucket) reserve(n float64, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	n = math.Min(n, b.burst)
	if b.tokens < n {
		return false, time.Duration((n - b.tokens) / b.rate * float64(time.Second))
	}
	b.tokens -= n
	return true, 0
}

// owed is how long until the bucket is out of debt: zero when it holds
// bytes. A bucket charged after the fact (charge) runs into debt.
func (b *byteBucket) owed(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	return max(time.Duration(-b.tokens/b.rate*float64(time.Second)), 0)
}

// charge takes n bytes already spent, into debt if need be.
func (b *byteBucket) charge(n float64, now time.Time) {
	b.mu.Lock()
	b.refill(now)
	b.tokens -= n
	b.mu.Unlock()
}

// refund gives back n reserved bytes that were not published.
func (b *byteBucket) refund(n float64, now time.Time) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.refill(now)
	b.tokens = math.Min(b.burst, b.tokens+n)
	b.mu.Unlock()
}

// minReserve is the least any request reserves (see storeBudget): a
// browser source whose bucket holds less is refused before its body is
// decompressed.
const minReserve = budgetSlack + budgetPerEvent

// sourceBytes is the cheap check made before the body is decompressed: the
// browser source's bucket holds at least what the smallest request
// reserves.
func (l *limiters) sourceBytes(s *herd.Source, now time.Time) (bool, time.Duration) {
	b := l.byteBucket(s)
	if b == nil {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens < minReserve {
		return false, time.Duration((minReserve - b.tokens) / b.rate * float64(time.Second))
	}
	return true, 0
}

// reserveBytes reserves n bytes of a browser source's bucket (at most the
// bucket's burst: no request may need more). It returns how many were
// reserved: what the request may publish; unlimited sources get n.
func (l *limiters) reserveBytes(s *herd.Source, n int, now time.Time) (int, bool, time.Duration) {
	b := l.byteBucket(s)
	if b == nil {
		return n, true, 0
	}
	n = min(n, int(b.burst))
	ok, wait := b.reserve(float64(n), now)
	return n, ok, wait
}

// refundBytes gives back reserved bytes a request did not publish.
func (l *limiters) refundBytes(s *herd.Source, n int, now time.Time) {
	if b := l.byteBucket(s); b != nil {
		b.refund(float64(n), now)
	}
}

// client takes one request from the bucket of the client's network. A
// client whose address is unknown (a trusted proxy forwarded "unknown" or
// garbage) takes from one bucket shared by all such clients: never from
// none.
func (l *limiters) client(a netip.Addr, now time.Time) (bool, time.Duration) {
	if l.ip == nil {
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

// netKey is a client network: the IPv4 address, or the IPv6 /64; or, with
// unknown set, every client whose address is unknown.
type netKey struct {
	bits    uint64
	v6      bool
	unknown bool
}

type ipBucket struct {
	tokens float64
	last   int64 // Unix nanoseconds of the last refill
}

func newIPLimiter(r float64, shardCap int) *ipLimiter {
	l := &ipLimiter{rate: r, burst: math.Max(1, math.Ceil(r)), shardCap: shardCap, seed: maphash.MakeSeed()}
	for i := range l.shards {
		// Maps grow as networks arrive: allocated whole, the buckets
		// of a few clients would cost every process 11 MB.
		l.shards[i].cur = make(map[netKey]ipBucket)
	}
	return l
}

func keyOf(a netip.Addr) netKey {
	if !a.IsValid() {
		return netKey{unknown: true}
	}
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
			s.prev, s.cur = s.cur, make(map[netKey]ipBucket, len(s.cur)/2)
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
