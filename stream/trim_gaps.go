package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// SeqRange is a closed range of stream sequences.
type SeqRange struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

// Gap is a range of the events family that Trim purged while a
// best-effort consumer had not acknowledged it: the consumer's copy (the
// lake) may miss events of those sequences. Messages of other families in
// the range, or ones the consumer had acknowledged above its floor, are
// not missing; whoever fills the gap checks each.
type Gap struct {
	Consumer string
	SeqRange
}

// maxGapRanges bounds what the gaps bucket holds per consumer: past it,
// the nearest ranges are merged (a wider range costs the repair a longer
// scan, never an event).
const maxGapRanges = 1000

// GapsKV is the key-value bucket where Trim records its gaps, one key per
// consumer, until the consumer takes them (TakeGaps). The bucket lives in
// NATS, so a consumer that runs without Postgres (the archiver alone)
// learns of them.
func GapsKV(c Config) string {
	c.Defaults()
	return "herd_gaps_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, c.Name)
}

func gapsKV(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.KeyValue, error) {
	name := GapsKV(c)
	kv, err := js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		storage := jetstream.FileStorage
		if c.MemoryStore {
			storage = jetstream.MemoryStorage
		}
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, History: 1, Storage: storage, Replicas: c.Replicas,
			Description: "ranges of events trimmed before a best-effort consumer (the archiver) had them",
		})
	}
	if err != nil {
		return nil, fmt.Errorf("open key-value bucket %s: %w", name, err)
	}
	return kv, nil
}

// MergeRanges sorts ranges and joins those that overlap or touch; past max
// ranges (0: maxGapRanges), the two nearest are joined until it fits.
func MergeRanges(rs []SeqRange, limit int) []SeqRange {
	if limit <= 0 {
		limit = maxGapRanges
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b SeqRange) int {
		if a.First != b.First {
			if a.First < b.First {
				return -1
			}
			return 1
		}
		return 0
	})
	var out []SeqRange
	for _, r := range rs {
		if n := len(out); n > 0 && r.First <= out[n-1].Last+1 {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	for len(out) > limit {
		best := 0
		for i := 1; i < len(out)-1; i++ {
			if out[i+1].First-out[i].Last < out[best+1].First-out[best].Last {
				best = i
			}
		}
		out[best].Last = out[best+1].Last
		out = slices.Delete(out, best+1, best+2)
	}
	return out
}

// recordGap adds r to the consumer's gaps.
func recordGap(ctx context.Context, js jetstream.JetStream, c Config, consumer string, r SeqRange) error {
	kv, err := gapsKV(ctx, js, c)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		var rs []SeqRange
		var rev uint64
		e, err := kv.Get(ctx, consumer)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("read gaps of %s: %w", consumer, err)
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &rs); err != nil {
				rs = nil // unreadable: start again rather than lose this one
			}
		}
		b, _ := json.Marshal(MergeRanges(append(rs, r), 0))
		if rev == 0 {
			_, err = kv.Create(ctx, consumer, b)
		} else {
			_, err = kv.Update(ctx, consumer, b, rev)
		}
		if err == nil {
			return nil
		}
		if attempt >= 5 {
			return fmt.Errorf("record gap %d-%d of %s: %w", r.First, r.Last, consumer, err)
		}
	}
}

// TakeGaps returns the gaps recorded for consumer, and done, which removes
// them once the caller has stored them elsewhere (if more were recorded
// meanwhile, done leaves them all, to be taken again: taking a range twice
// is harmless).
func TakeGaps(ctx context.Context, js jetstream.JetStream, c Config, consumer string) (rs []SeqRange, done func(context.Context) error, err error) {
	c.Defaults()
	kv, err := gapsKV(ctx, js, c)
	if err != nil {
		return nil, nil, err
	}
	e, err := kv.Get(ctx, consumer)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, func(context.Context) error { return nil }, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read gaps of %s: %w", consumer, err)
	}
	if err := json.Unmarshal(e.Value(), &rs); err != nil {
		return nil, nil, fmt.Errorf("gaps of %s in %s: %w", consumer, GapsKV(c), err)
	}
	rev := e.Revision()
	return rs, func(ctx context.Context) error {
		err := kv.Delete(ctx, consumer, jetstream.LastRevision(rev))
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return nil // more were recorded meanwhile: taken next time
		}
		if err != nil {
			return fmt.Errorf("clear gaps of %s: %w", consumer, err)
		}
		return nil
	}, nil
}
