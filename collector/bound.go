package collector

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// Defaults of the collector's bounds on concurrent work.
const (
	// DefaultMaxConns is how many connections are served at once
	// (fasthttp's Concurrency); past it a connection is answered 503 and
	// closed. Each may hold one request body of up to MaxBatchBytes+64 KiB
	// while it is read.
	DefaultMaxConns = 4096
	// DefaultMaxConnsPerClient is how many connections one client network
	// (an IPv4 address or IPv6 /64) may hold open; trusted proxies, and
	// loopback when ExemptLoopback is set, are exempt.
	DefaultMaxConnsPerClient = 256
	// DefaultDecodeBytesPerCPU bounds the bodies being decompressed,
	// decoded and built into events at once, in decompressed bytes (a gzip
	// body counts as the most it may decompress to), per CPU: that work is
	// CPU-bound, so more of it at once adds only memory and latency. 4 MiB a
	// CPU is 8 full gzip batches; each byte in work costs a few more in
	// memory.
	DefaultDecodeBytesPerCPU = 4 << 20
	// DefaultDecodeWait is how long a request waits for room before it is
	// answered 503 with Retry-After.
	DefaultDecodeWait = time.Second
)

// workPool bounds the requests in decompression, decoding and building:
// memory is bounded by configuration whatever clients send. Requests
// authenticated in their headers as a server source (whose key is a
// secret) have a pool of their own, so that the public's requests cannot
// crowd them out.
type workPool struct {
	public, server *semaphore.Weighted
	size           int64
	wait           time.Duration
}

func newWorkPool(size int64, wait time.Duration) *workPool {
	return &workPool{public: semaphore.NewWeighted(size), server: semaphore.NewWeighted(size), size: size, wait: wait}
}

// acquire waits up to the pool's wait for n bytes of room; release gives
// them back.
func (w *workPool) acquire(n int64, server bool) (release func(), ok bool) {
	s := w.public
	if server {
		s = w.server
	}
	n = min(max(n, 1<<10), w.size)
	if !s.TryAcquire(n) {
		ctx, cancel := context.WithTimeout(context.Background(), w.wait)
		defer cancel()
		if s.Acquire(ctx, n) != nil {
			return nil, false
		}
	}
	return func() { s.Release(n) }, true
}

// connLimiter is a listener that holds each client network to a number of
// open connections; connections past it are closed at once. Its memory is
// bounded by the connections open.
type connLimiter struct {
	net.Listener
	max     int
	exempt  func(netip.Addr) bool
	refused func()

	mu   sync.Mutex
	open map[netKey]int
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil || l.exempt(ap.Addr().Unmap()) {
			return c, nil
		}
		k := keyOf(ap.Addr())
		l.mu.Lock()
		if l.open[k] >= l.max {
			l.mu.Unlock()
			l.refused()
			c.Close() //nolint:errcheck
			continue
		}
		l.open[k]++
		l.mu.Unlock()
		return &countedConn{Conn: c, l: l, k: k}, nil
	}
}

type countedConn struct {
	net.Conn
	l    *connLimiter
	k    netKey
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.k]--; c.l.open[c.k] <= 0 {
			delete(c.l.open, c.k)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
