package collector

import (
	"bytes"
	"context"

	"github.com/herdhq/herd"
	json "github.com/herdhq/herd/internal/fastjson"
	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats.go/jetstream"
)

// Suppression: the people whose events herd must no longer store (herd
// privacy suppress). The warehouse mirrors herd.suppressions into a NATS
// bucket keyed by stream.SuppressKey, a hash of the id; the collector
// watches it and drops a suppressed person's events before they reach the
// stream: answered 200 like any accepted event (a client that sees errors
// retries), counted in herd_collector_events_total{result="dropped",
// reason="suppressed"}, stored nowhere. A suppressed person's refused
// events and requests are not recorded as rejects either (their raw text
// would keep what suppression must not store): the client gets the same
// error as anyone, the refusal is counted as dropped, not rejected.

// watchSuppressions loads the bucket and follows it until ctx ends; it
// returns once the current entries are loaded.
func (c *Collector) watchSuppressions(ctx context.Context) error {
	kv, err := stream.SuppressedKV(ctx, c.js, c.cfg.Stream)
	if err != nil {
		return err
	}
	return follow(ctx, kv, c.applySuppression)
}

// applySuppression copies the set with the entry added or removed: the set
// is small and changes rarely, and readers never lock.
func (c *Collector) applySuppression(e jetstream.KeyValueEntry) {
	next := map[string]struct{}{}
	if old := c.suppressed.Load(); old != nil {
		for k := range *old {
			next[k] = struct{}{}
		}
	}
	if e.Operation() == jetstream.KeyValuePut {
		next[e.Key()] = struct{}{}
	} else {
		delete(next, e.Key())
	}
	c.suppressed.Store(&next)
}

// isSuppressed reports whether the event's userId or anonymousId (or, for
// an alias, previousId) is suppressed. Nothing is hashed while the set is
// empty.
func (c *Collector) isSuppressed(ev *herd.Event) bool {
	p := c.suppressed.Load()
	if p == nil || len(*p) == 0 {
		return false
	}
	return eventSuppressed(*p, ev)
}

func eventSuppressed(set map[string]struct{}, ev *herd.Event) bool {
	has := func(kind, id string) bool {
		if id == "" {
			return false
		}
		_, ok := set[stream.SuppressKey(kind, id)]
		return ok
	}
	return has(stream.SuppressUserID, ev.UserID) || has(stream.SuppressAnonymousID, ev.AnonymousID) ||
		(ev.Type == herd.TypeAlias && (has(stream.SuppressUserID, ev.PreviousID) || has(stream.SuppressAnonymousID, ev.PreviousID)))
}

// rejectSuppressed reports whether a refused item or request belongs to a
// suppressed person, so that it is not recorded: by the ids the event got
// before it was refused (ev may be nil), else by the ids its raw text names.
func (c *Collector) rejectSuppressed(ev *herd.Event, raw []byte) bool {
	p := c.suppressed.Load()
	if p == nil || len(*p) == 0 {
		return false
	}
	set := *p
	if ev != nil && eventSuppressed(set, ev) {
		return true
	}
	found := false
	rawIDs(raw, func(id string) bool {
		_, u := set[stream.SuppressKey(stream.SuppressUserID, id)]
		_, a := set[stream.SuppressKey(stream.SuppressAnonymousID, id)]
		found = u || a
		return !found
	})
	return found
}

// idKeys are the fields whose values name a person, as a client may spell
// them (herd's own columns included).
var idKeys = [][]byte{[]byte(`"userId"`), []byte(`"anonymousId"`), []byte(`"previousId"`), []byte(`"user_id"`), []byte(`"anonymous_id"`)}

// maxRawIDs bounds the ids rawIDs hashes for one reject.
const maxRawIDs = 256

// rawIDs calls each with the string or number values of the id fields
// anywhere in raw, which may be broken JSON: every "userId": "..." of a
// batch, a duplicate key, a refused item. Only the first herd.MaxRawReject
// bytes are read, what a reject keeps; at most maxRawIDs are returned.
func rawIDs(raw []byte, each func(string) bool) {
	if len(raw) > herd.MaxRawReject {
		raw = raw[:herd.MaxRawReject]
	}
	n := 0
	for _, key := range idKeys {
		for rest := raw; ; {
			i := bytes.Index(rest, key)
			if i < 0 {
				break
			}
			rest = rest[i+len(key):]
			id, ok := idValue(rest)
			if !ok {
				continue
			}
			if n++; n > maxRawIDs || !each(id) {
				return
			}
		}
	}
}

// idValue reads `: "string"` or `: number` at the start of b.
func idValue(b []byte) (string, bool) {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != ':' {
		return "", false
	}
	b = bytes.TrimLeft(b[1:], " \t\r\n")
	if len(b) == 0 {
		return "", false
	}
	switch c := b[0]; {
	case c == '"':
		end := 1
		for end < len(b) && b[end] != '"' {
			if b[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(b) {
			return "", false
		}
		var s string
		if err := json.Unmarshal(b[:end+1], &s); err != nil {
			return "", false
		}
		return s, s != ""
	case c == '-' || (c >= '0' && c <= '9'):
		end := 1
		for end < len(b) && bytes.IndexByte([]byte("0123456789.eE+-"), b[end]) >= 0 {
			end++
		}
		return string(b[:end]), true
	}
	return "", false
}
