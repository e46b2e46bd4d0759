package archive

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultCloseAfter is Config.CloseAfter's default: how long after its hour
// (or month) ends a partition is closed and compacted.
const DefaultCloseAfter = 15 * time.Minute

// end is when the partition's span of event time ends.
func (p partition) end() time.Time {
	if p.month {
		return p.hour.AddDate(0, 1, 0)
	}
	return p.hour.Add(time.Hour)
}

// CompactOptions selects what Compact closes.
type CompactOptions struct {
	// Before: partitions whose span of event time ended at or before it
	// are closed. Zero: now minus DefaultCloseAfter.
	Before  time.Time
	Sources []int64 // empty: every source
	Stream  string  // the stream name recorded for adopted files
	Log     *slog.Logger
	// DB, when set, lets compaction judge rows by the warehouse
	// (ledgerFilter): erased events, copies of a message id other than the
	// one the writer stored, and events the writer refused are left out.
	// Without it, each message id is kept once per partition (lowest
	// stream sequence), and those rows stay.
	DB *pgxpool.Pool
}

// CompactResult sums a Compact.
type CompactResult struct {
	Partitions int   // partitions compacted
	FilesIn    int   // files they had
	Rows       int64 // rows they hold now
	Duplicates int64 // second copies of a message id dropped
	// Dropped counts rows left out on the warehouse's word (DB), by
	// reason: erased, ledger, rejected.
	Dropped map[string]int
}

// Compact closes the lake's partitions that ended before opt.Before and
// are not compacted yet (or were made dirty by a late event or a repair):
// each becomes one file sorted by (timestamp, message_id), holding each
// message id once (its first stream sequence). The archiver does this on
// its own (Config.CloseAfter); `herd archive compact` calls Compact for a
// lake whose archiver is stopped, since the archiver is the lake's only
// writer while it runs.
//
// It refuses (*ErrArchiverRunning) while an archiver's lease on the lake is
// fresh: that archiver's partition state would write its old manifests
// back over the compaction's.
func Compact(ctx context.Context, lake Lake, opt CompactOptions) (CompactResult, error) {
	var res CompactResult
	if err := refuseBesideArchiver(ctx, lake, "compact"); err != nil {
		return res, err
	}
	if opt.Before.IsZero() {
		opt.Before = time.Now().Add(-DefaultCloseAfter)
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	parts, err := listPartitions(ctx, lake, opt.Sources, time.Time{})
	if err != nil {
		return res, err
	}
	for _, p := range parts {
		if p.end().After(opt.Before) {
			continue
		}
		r, err := compactPartition(ctx, lake, p, opt.Stream, opt.DB, opt.Log)
		if err != nil {
			return res, err
		}
		if r.Partitions > 0 {
			res.Partitions++
			res.FilesIn += r.FilesIn
			res.Rows += r.Rows
			res.Duplicates += r.Duplicates
			for k, n := range r.Dropped {
				if res.Dropped == nil {
					res.Dropped = map[string]int{}
				}
				res.Dropped[k] += n
			}
		}
	}
	return res, nil
}

// compactPartition merges p's files into one sorted, deduplicated file,
// unless it is compacted already.
func compactPartition(ctx context.Context, lake Lake, p partition, streamName string, db *pgxpool.Pool, log *slog.Logger) (CompactResult, error) {
	var res CompactResult
	man, err := openPartition(ctx, lake, p, streamName, log)
	if err != nil {
		return res, err
	}
	if man.Compacted || len(man.Files) == 0 {
		return res, nil
	}
	recs, err := readPartition(ctx, lake, p, man)
	if err != nil {
		return res, err
	}
	res.FilesIn = len(man.Files)
	recs, res.Dropped, err = ledgerFilter(ctx, db, p, recs, false)
	if err != nil {
		return res, err
	}
	recs, dropped := dedupSort(recs)
	man.Duplicates += int64(dropped)
	if err := rewritePartition(ctx, lake, p, man, recs, streamName, "c", true); err != nil {
		return res, fmt.Errorf("compact %s: %w", p.String(), err)
	}
	res.Partitions, res.Rows, res.Duplicates = 1, int64(len(recs)), int64(dropped)
	log.Info("compacted a closed partition", "partition", p.String(), "files", res.FilesIn, "rows", len(recs), "duplicates_dropped", dropped,
		"erased_dropped", res.Dropped[dropErased], "other_copy_dropped", res.Dropped[dropElsewhere], "rejected_dropped", res.Dropped[dropRejected])
	return res, nil
}

// listPartitions walks the lake's source=/date=/hour= directories (of the
// sources, when given; of partitions whose span ends after since, when
// since is set).
func listPartitions(ctx context.Context, lake Lake, sources []int64, since time.Time) ([]partition, error) {
	srcDirs, err := lake.Children(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []partition
	for _, sd := range srcDirs {
		id, err := strconv.ParseInt(strings.TrimPrefix(sd, "source="), 10, 64)
		if err != nil || !strings.HasPrefix(sd, "source=") || (len(sources) > 0 && !slices.Contains(sources, id)) {
			continue
		}
		dates, err := lake.Children(ctx, sd+"/")
		if err != nil {
			return nil, err
		}
		for _, dd := range dates {
			d, err := time.Parse(time.DateOnly, strings.TrimPrefix(dd, "date="))
			if err != nil || !strings.HasPrefix(dd, "date=") {
				continue
			}
			// A date directory may hold a month bucket (its end is a
			// month later), so it is skipped only when even that ended.
			if !since.IsZero() && !d.AddDate(0, 1, 0).After(since) {
				continue
			}
			hours, err := lake.Children(ctx, sd+"/"+dd+"/")
			if err != nil {
				return nil, err
			}
			for _, hd := range hours {
				p, _, ok := parseKey(path.Join(sd, dd, hd, "x"))
				if !ok || (!since.IsZero() && !p.end().After(since)) {
					continue
				}
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// PartitionCount is what a partition's manifest says of it.
type PartitionCount struct {
	Source int64
	// Hour is the partition's hour (UTC); for a month bucket (Month), the
	// month's first instant: its rows are events of that month that were
	// older than the window when they arrived.
	Hour  time.Time
	Month bool
	Rows  int64
	Files int
	// Compacted partitions hold each accepted event of their span exactly
	// once; others (still open, or made dirty by a late event or a
	// repair) may hold a retried event twice until their next compaction.
	Compacted bool
	// MinSeq and MaxSeq bound the stream sequences of the rows.
	MinSeq, MaxSeq uint64
}

// Counts returns, per source and hour (and month bucket), the lake's rows
// as its manifests record them, for partitions whose span ends after since
// (zero: all), ordered by source and hour. It reads one manifest per
// partition and no Parquet file, and changes nothing.
func Counts(ctx context.Context, lake Lake, since time.Time) ([]PartitionCount, error) {
	parts, err := listPartitions(ctx, lake, nil, since)
	if err != nil {
		return nil, err
	}
	out := make([]PartitionCount, 0, len(parts))
	for _, p := range parts {
		m, err := readManifest(ctx, lake, p.prefix())
		if err != nil {
			return nil, err
		}
		out = append(out, PartitionCount{
			Source: p.source, Hour: p.hour, Month: p.month, Rows: m.Rows, Files: len(m.Files),
			Compacted: m.Compacted, MinSeq: m.MinSeq, MaxSeq: m.MaxSeq,
		})
	}
	slices.SortFunc(out, func(a, b PartitionCount) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), a.Hour.Compare(b.Hour))
	})
	return out, nil
}
