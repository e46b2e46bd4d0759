package stream

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TrimResult says what a Trim did.
type TrimResult struct {
	Purged uint64
	// Skipped names best-effort consumers that were passed over because the
	// stream was under pressure; their unacknowledged messages may be gone.
	Skipped []string
	// Gaps are the ranges of events purged before a skipped consumer had
	// acknowledged them. Each is also recorded in the GapsKV bucket, from
	// which the archiver takes it into the lake and repairs it.
	Gaps []Gap
}

// Trim deletes messages that every consumer interested in them has
// acknowledged, one subject family at a time (events, rejects, each
// webhook). A family no consumer covers is kept whole: nothing is deleted
// before someone has taken it. Best-effort consumers (the archiver) count
// only while the stream is below its trim pressure: past it, the warehouse
// and the collector come first, and the archiver's lake gets a gap it
// reports (TrimResult.Skipped names the consumers passed over).
//
// Why not an interest-retention stream: such a stream drops what is
// published while no consumer exists yet (a webhook before its loader
// starts, events before the first writer), and the collector would have
// answered 200 for them. Trimming by acknowledged floors never does.
func Trim(ctx context.Context, js jetstream.JetStream, c Config) (TrimResult, error) {
	return (&Trimmer{}).Trim(ctx, js, c)
}

// Trimmer trims as Trim does, remembering the floor each family was last
// purged below: a family whose floor has not moved since is not purged
// again. A purge by subject makes the server read every block below the
// floor to find the family's messages, and JetStream then keeps each block
// it read in memory for 10 s; purging an idle stream every few seconds kept
// its whole backlog resident. The zero value is ready; TrimLoop uses one.
type Trimmer struct {
	purged map[string]uint64
}

// Trim is Trim, skipping the families purged below their floor already.
func (tr *Trimmer) Trim(ctx context.Context, js jetstream.JetStream, c Config) (TrimResult, error) {
	if tr.purged == nil {
		tr.purged = map[string]uint64{}
	}
	var res TrimResult
	c.Defaults()
	s, err := js.Stream(ctx, c.Name)
	if err != nil {
		return res, fmt.Errorf("open stream %s: %w", c.Name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return res, fmt.Errorf("stream %s info: %w", c.Name, err)
	}
	pressure := info.Config.MaxBytes > 0 && float64(info.State.Bytes) >= c.TrimPressure*float64(info.Config.MaxBytes)
	bestEffort := map[string]bool{}
	for _, n := range c.BestEffort {
		bestEffort[n] = true
	}
	type cons struct {
		filters []string
		floor   uint64
	}
	var all []cons
	skipped := map[string]cons{}
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		f := ci.Config.FilterSubjects
		if ci.Config.FilterSubject != "" {
			f = append(f, ci.Config.FilterSubject)
		}
		if pressure && bestEffort[ci.Name] {
			res.Skipped = append(res.Skipped, ci.Name)
			skipped[ci.Name] = cons{filters: f, floor: ci.AckFloor.Stream}
			continue
		}
		all = append(all, cons{filters: f, floor: ci.AckFloor.Stream})
	}
	if err := lister.Err(); err != nil {
		return res, fmt.Errorf("list consumers of %s: %w", c.Name, err)
	}
	families := []string{c.EventsFilter(), c.RejectsFilter()}
	for _, cs := range all {
		for _, f := range cs.filters {
			if strings.HasPrefix(f, c.Prefix+".webhooks.") && !strings.ContainsAny(f, "*>") {
				families = append(families, f)
			}
		}
	}
	seen := map[string]bool{}
	for _, fam := range families {
		if seen[fam] {
			continue
		}
		seen[fam] = true
		var floor uint64
		covered := false
		for _, cs := range all {
			if !coversAny(cs.filters, fam) {
				continue
			}
			if !covered || cs.floor < floor {
				floor = cs.floor
			}
			covered = true
		}
		if !covered || floor == 0 || tr.purged[fam] == floor {
			continue
		}
		// What a passed-over consumer has not acknowledged up to the floor
		// is about to leave the stream: its copy has a gap there. It is
		// recorded first, so that a purge cut short leaves the repair the
		// messages still in the stream rather than an unrecorded loss.
		if fam == c.EventsFilter() {
			for name, cs := range skipped {
				if !coversAny(cs.filters, fam) || cs.floor >= floor {
					continue
				}
				g := Gap{Consumer: name, SeqRange: SeqRange{First: cs.floor + 1, Last: floor}}
				if err := recordGap(ctx, js, c, name, g.SeqRange); err != nil {
					return res, err
				}
				res.Gaps = append(res.Gaps, g)
			}
		}
		// Purge keeps floor+1 and above: exactly the messages not yet acked
		// by every interested consumer.
		before, err := s.Info(ctx)
		if err != nil {
			return res, err
		}
		if err := s.Purge(ctx, jetstream.WithPurgeSubject(fam), jetstream.WithPurgeSequence(floor+1)); err != nil {
			return res, fmt.Errorf("purge %s below %d: %w", fam, floor+1, err)
		}
		tr.purged[fam] = floor
		after, err := s.Info(ctx)
		if err != nil {
			return res, err
		}
		if before.State.Msgs > after.State.Msgs {
			res.Purged += before.State.Msgs - after.State.Msgs
		}
	}
	return res, nil
}

// TrimLoop runs Trim every interval until ctx ends.
func TrimLoop(ctx context.Context, js jetstream.JetStream, c Config, interval time.Duration, log *slog.Logger) error {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var tr Trimmer
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r, err := tr.Trim(ctx, js, c)
		if err != nil && ctx.Err() == nil {
			log.Warn("trim acknowledged messages from the stream", "err", err)
		}
		for _, g := range r.Gaps {
			log.Error("stream near its size limit: trimmed events a best-effort consumer had not taken; the gap is recorded for its repair",
				"consumer", g.Consumer, "first_seq", g.First, "last_seq", g.Last, "bucket", GapsKV(c), "pressure", c.TrimPressure)
		}
		if len(r.Skipped) > 0 && r.Purged > 0 {
			log.Warn("stream near its size limit: trimming past best-effort consumers",
				"consumers", r.Skipped, "purged", r.Purged, "pressure", c.TrimPressure)
		} else if r.Purged > 0 {
			log.Debug("trimmed acknowledged messages", "count", r.Purged)
		}
	}
}

// coversAny reports whether a consumer with these filters receives every
// message of the subject family fam. No filter means everything.
func coversAny(filters []string, fam string) bool {
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if covers(f, fam) {
			return true
		}
	}
	return false
}

// covers reports whether subject filter f matches every subject fam matches.
func covers(f, fam string) bool {
	ft, st := strings.Split(f, "."), strings.Split(fam, ".")
	for i, tok := range ft {
		if tok == ">" {
			return i < len(st)
		}
		if i >= len(st) {
			return false
		}
		switch {
		case tok == "*" && st[i] != ">":
		case tok == st[i]:
		default:
			return false
		}
	}
	return len(ft) == len(st)
}
