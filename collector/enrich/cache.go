package enrich

import (
	"hash/maphash"
	"sync"
)

// cache is a bounded, concurrency-safe map that keeps recently used keys.
// Each shard holds two generations: when the current one fills up it
// becomes the old one and the previous old one is dropped, and a hit in the
// old generation is copied into the current one. That approximates LRU at
// the cost of one map lookup more on a miss, with no per-entry bookkeeping
// on the hit path (the common case: user agents and client IPs repeat).
type cache[V any] struct {
	seed   maphash.Seed
	per    int // entries per generation per shard
	shards [cacheShards]cacheShard[V]
}

const cacheShards = 16

type cacheShard[V any] struct {
	mu       sync.Mutex
	cur, old map[string]V
}

func newCache[V any](size int) *cache[V] {
	per := size / (2 * cacheShards)
	if per < 8 {
		per = 8
	}
	c := &cache[V]{seed: maphash.MakeSeed(), per: per}
	for i := range c.shards {
		c.shards[i].cur = make(map[string]V, per)
	}
	return c
}

func (c *cache[V]) shard(k string) *cacheShard[V] {
	return &c.shards[maphash.String(c.seed, k)%cacheShards]
}

func (c *cache[V]) get(k string) (V, bool) {
	s := c.shard(k)
	s.mu.Lock()
	v, ok := s.cur[k]
	if !ok {
		if v, ok = s.old[k]; ok {
			c.putLocked(s, k, v)
		}
	}
	s.mu.Unlock()
	return v, ok
}

func (c *cache[V]) put(k string, v V) {
	s := c.shard(k)
	s.mu.Lock()
	c.putLocked(s, k, v)
	s.mu.Unlock()
}

func (c *cache[V]) putLocked(s *cacheShard[V], k string, v V) {
	if len(s.cur) >= c.per {
		s.old, s.cur = s.cur, make(map[string]V, c.per)
	}
	s.cur[k] = v
}
