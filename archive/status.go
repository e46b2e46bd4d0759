package archive

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DayStatus sums the lake's files of one date (all sources); Date is
// YYYY-MM for a month's bucket of events that were older than the window
// when they arrived.
type DayStatus struct {
	Date  string
	Files int
	Rows  int64
	Bytes int64
}

// LakeStatus reads every manifest of the lake and sums files, rows and bytes
// per date, oldest first.
func LakeStatus(ctx context.Context, lake Lake) ([]DayStatus, error) {
	objs, err := lake.List(ctx, "")
	if err != nil {
		return nil, err
	}
	days := map[string]*DayStatus{}
	for _, o := range objs {
		if path.Base(o.Key) != ManifestName {
			continue
		}
		dir := strings.TrimSuffix(o.Key, ManifestName)
		p, _, ok := parseKey(dir + "x")
		if !ok {
			continue
		}
		m, err := readManifest(ctx, lake, dir)
		if err != nil {
			return nil, err
		}
		date := p.hour.Format(time.DateOnly)
		if p.month {
			date = p.hour.Format("2006-01") // the month's bucket of events that arrived already old
		}
		d := days[date]
		if d == nil {
			d = &DayStatus{Date: date}
			days[date] = d
		}
		for _, f := range m.Files {
			d.Files++
			d.Rows += f.Rows
			d.Bytes += f.Bytes
		}
	}
	out := make([]DayStatus, 0, len(days))
	for _, d := range days {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Date < out[j].Date })
	return out, nil
}

// ConsumerStatus is where the archiver's consumer stands in the stream.
type ConsumerStatus struct {
	Consumer   string
	StreamLast uint64 // last sequence in the stream
	AckFloor   uint64 // every message up to here is archived
	// The counts are of stream messages; one message holds one event or a
	// frame of several (stream.FrameMagic).
	Pending    uint64 // messages not yet delivered to the archiver
	AckPending int    // delivered, held in open files or in flight
	Lag        uint64 // Pending + AckPending
}

// Lag reports the archiver consumer's position; an archiver that never ran
// has no consumer yet, which is an error wrapping jetstream.ErrConsumerNotFound.
func Lag(ctx context.Context, js jetstream.JetStream, cfg Config) (ConsumerStatus, error) {
	cfg.defaults()
	st := ConsumerStatus{Consumer: cfg.Consumer}
	s, err := js.Stream(ctx, cfg.Stream.Name)
	if err != nil {
		return st, fmt.Errorf("stream %s: %w", cfg.Stream.Name, err)
	}
	c, err := s.Consumer(ctx, cfg.Consumer)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return st, fmt.Errorf("consumer %s on %s: %w (no archiver has run)", cfg.Consumer, cfg.Stream.Name, err)
		}
		return st, fmt.Errorf("consumer %s on %s: %w", cfg.Consumer, cfg.Stream.Name, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("consumer %s on %s: %w", cfg.Consumer, cfg.Stream.Name, err)
	}
	sinfo, err := s.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("stream %s: %w", cfg.Stream.Name, err)
	}
	st.StreamLast = sinfo.State.LastSeq
	st.AckFloor = info.AckFloor.Stream
	st.Pending = info.NumPending
	st.AckPending = info.NumAckPending
	st.Lag = info.NumPending + uint64(info.NumAckPending)
	return st, nil
}
