package collector

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// TestIPLimiterKeys: IPv4 clients are limited per address, IPv6 clients per
// /64, so that a client cannot step around its bucket by changing the low
// bits of its address.
func TestIPLimiterKeys(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		a, b   string
		shared bool
	}{
		{"two IPv4 addresses", "203.0.113.7", "203.0.113.8", false},
		{"one IPv4 address twice", "203.0.113.7", "203.0.113.7", true},
		{"IPv4 and its mapped IPv6 form", "203.0.113.7", "::ffff:203.0.113.7", true},
		{"two IPv6 addresses in one /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", true},
		{"IPv6 addresses in two /64s", "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"IPv4 and the IPv6 /64 of zeros", "0.0.0.1", "::1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiters(0, 1, 0) // one request a second, burst one
			if ok, _ := l.client(netip.MustParseAddr(tc.a), now); !ok {
				t.Fatalf("first request from %s refused", tc.a)
			}
			ok, wait := l.client(netip.MustParseAddr(tc.b), now)
			if ok == tc.shared {
				t.Fatalf("second request from %s: allowed %v, want %v (shared bucket: %v)", tc.b, ok, !tc.shared, tc.shared)
			}
			if !ok && (wait <= 0 || wait > time.Second) {
				t.Errorf("wait %s, want (0, 1s]", wait)
			}
			if ok, _ := l.client(netip.MustParseAddr(tc.b), now.Add(time.Second)); !ok {
				t.Errorf("refused a second later: the bucket does not refill")
			}
		})
	}
}

// TestIPLimiterMemoryBounded: a million distinct client networks hold a
// bounded number of buckets (and megabytes), with no sweep of the whole
// table; a busy network keeps its bucket through the churn.
func TestIPLimiterMemoryBounded(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l := newLimiters(0, 5, 0)
	busy := netip.MustParseAddr("198.51.100.1")
	for {
		if ok, _ := l.client(busy, now); !ok {
			break
		}
	}
	var b4 [4]byte
	var b16 [16]byte
	for i := range 1_000_000 {
		var a netip.Addr
		if i%2 == 0 {
			binary.BigEndian.PutUint32(b4[:], uint32(0x0b000000+i)) // 11.x.y.z
			a = netip.AddrFrom4(b4)
		} else {
			binary.BigEndian.PutUint64(b16[:8], 0x20010db800000000+uint64(i)) // a /64 each
			a = netip.AddrFrom16(b16)
		}
		l.client(a, now)
		if i%1000 == 0 {
			if ok, _ := l.client(busy, now); ok {
				t.Fatalf("busy client allowed after %d other clients: its bucket was forgotten", i)
			}
		}
	}
	if n, max := l.ip.tracked(), 2*ipShards*ipShardCap; n > max {
		t.Errorf("%d networks tracked after a million; the bound is %d", n, max)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(l)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("a million client networks: %d tracked, heap +%d KiB", l.ip.tracked(), grown>>10)
	if grown > 32<<20 {
		t.Errorf("heap grew by %d MiB for the client limiter; want at most 32", grown>>20)
	}
}

// TestRejectBudget: a source records rejects up to its budget, then counts
// them; once the budget refills, the next recorded reject carries how many
// were dropped, and the count starts over.
func TestRejectBudget(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b := newRejectBudget(1024) // burst: minRejectBurst
	recorded, stored := 0, 0
	for range 100 {
		if ok, u := b.take(1, 10<<10, now); ok {
			recorded++
			stored += 10 << 10
			if u.n != 0 {
				t.Fatalf("summary %+v before anything was dropped", u)
			}
		}
	}
	if stored > minRejectBurst {
		t.Errorf("recorded %d bytes at once; the burst is %d", stored, minRejectBurst)
	}
	if recorded != minRejectBurst/(10<<10) {
		t.Errorf("recorded %d rejects of 10 KiB, want %d", recorded, minRejectBurst/(10<<10))
	}
	// Another source has its own budget.
	if ok, _ := b.take(2, 10<<10, now); !ok {
		t.Errorf("source 2 refused for source 1's rejects")
	}
	// After a second, 1 KiB more fits, with the summary of the drops.
	ok, u := b.take(1, 1000, now.Add(time.Second))
	if !ok || u.n != int64(100-recorded) || u.bytes != int64(100-recorded)*(10<<10) || !u.since.Equal(now) {
		t.Fatalf("after a second: ok %v, summary %+v; want %d dropped since %s", ok, u, 100-recorded, now)
	}
	if ok, u := b.take(1, 1, now.Add(time.Second)); !ok || u.n != 0 {
		t.Errorf("next reject: ok %v, summary %+v: want no summary twice", ok, u)
	}
}
