package archive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/writer"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ReplayOptions selects what Replay loads.
type ReplayOptions struct {
	From, To time.Time // days (UTC), both included
	Sources  []int64   // source ids; empty: every source in the lake
	// BatchRows bounds one insert transaction; default 5000.
	BatchRows int
	// ForgetMissing first deletes, for the replayed days and sources, the
	// message-id ledger entries whose rows are no longer in herd.events (a
	// partition dropped by hand, a truncated table), so that those events
	// are inserted again. Without it, only ids the ledger never saw load.
	ForgetMissing bool
	// Progress, when set, is called after each file.
	Progress func(FileProgress)
}

// FileProgress reports one replayed file.
type FileProgress struct {
	Key        string
	Index      int // 1-based, of Total
	Total      int
	Rows       int64
	Inserted   int64
	Duplicates int64
	Rejected   int64
}

// ReplayResult sums a replay.
type ReplayResult struct {
	Files      int
	Rows       int64
	Inserted   int64
	Duplicates int64
	Rejected   int64
	Forgotten  int64 // ledger entries removed by ForgetMissing
}

// Replay loads the lake's events of the selected days back into herd.events
// through store, the writer's idempotent insert path: an event already
// stored is skipped, so replaying twice changes nothing. Each file's
// checksum is verified against its manifest before its rows are loaded.
func Replay(ctx context.Context, lake Lake, db *pgxpool.Pool, store *writer.Store, opt ReplayOptions) (ReplayResult, error) {
	var res ReplayResult
	if opt.BatchRows == 0 {
		opt.BatchRows = 5000
	}
	from, to := dayOf(opt.From), dayOf(opt.To)
	if to.Before(from) {
		return res, fmt.Errorf("replay: --to %s is before --from %s", to.Format(time.DateOnly), from.Format(time.DateOnly))
	}
	files, err := selectFiles(ctx, lake, from, to, opt.Sources)
	if err != nil {
		return res, err
	}
	if opt.ForgetMissing {
		for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
			n, err := forgetMissing(ctx, db, d, opt.Sources)
			if err != nil {
				return res, err
			}
			res.Forgotten += n
		}
	}
	manifests := map[string]map[string]FileEntry{}
	for i, key := range files {
		dir, name := path.Dir(key)+"/", path.Base(key)
		entries, ok := manifests[dir]
		if !ok {
			m, err := readManifest(ctx, lake, dir)
			if err != nil {
				return res, err
			}
			entries = map[string]FileEntry{}
			for _, f := range m.Files {
				entries[f.Name] = f
			}
			manifests[dir] = entries
		}
		data, err := lake.Get(ctx, key)
		if err != nil {
			return res, err
		}
		if e, ok := entries[name]; ok && e.SHA256 != checksum(data) {
			return res, fmt.Errorf("replay %s: checksum %s does not match the manifest's %s; the file was altered", key, checksum(data), e.SHA256)
		}
		recs, err := decodeFile(data)
		if err != nil {
			return res, fmt.Errorf("replay %s: %w", key, err)
		}
		if p, _, _ := parseKey(key); p.month {
			// A month bucket: only the selected days' events.
			recs = slices.DeleteFunc(recs, func(r record) bool {
				d := dayOf(r.Timestamp)
				return d.Before(from) || d.After(to)
			})
		}
		fp := FileProgress{Key: key, Index: i + 1, Total: len(files), Rows: int64(len(recs))}
		for start := 0; start < len(recs); start += opt.BatchRows {
			chunk := recs[start:min(start+opt.BatchRows, len(recs))]
			rows := make([]writer.Row, len(chunk))
			for j := range chunk {
				rows[j] = writer.Row{Event: chunk[j].event(), Seq: uint64(chunk[j].StreamSeq)}
			}
			r, err := store.Write(ctx, rows, nil)
			if err != nil {
				return res, fmt.Errorf("replay %s: %w", key, err)
			}
			fp.Inserted += r.Inserted
			fp.Duplicates += r.Duplicates
			fp.Rejected += r.Rejected
		}
		res.Files++
		res.Rows += fp.Rows
		res.Inserted += fp.Inserted
		res.Duplicates += fp.Duplicates
		res.Rejected += fp.Rejected
		if opt.Progress != nil {
			opt.Progress(fp)
		}
	}
	return res, nil
}

func dayOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// selectFiles lists the Parquet files that may hold events of the days
// and sources: each day's hour directories, and the month buckets (hour=-1)
// of the months the days touch, in source, date, hour and sequence order.
// A month bucket holds other days too; Replay keeps only the selected
// days' events.
func selectFiles(ctx context.Context, lake Lake, from, to time.Time, sources []int64) ([]string, error) {
	if len(sources) == 0 {
		dirs, err := lake.Children(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, d := range dirs {
			if s, ok := strings.CutPrefix(d, "source="); ok {
				if id, err := strconv.ParseInt(s, 10, 64); err == nil {
					sources = append(sources, id)
				}
			}
		}
	}
	slices.Sort(sources)
	var keys []string
	files := func(prefix string, month bool) ([]string, error) {
		objs, err := lake.List(ctx, prefix)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, o := range objs {
			if p, name, ok := parseKey(o.Key); ok && p.month == month {
				if _, _, ok := parseFileName(name); ok {
					out = append(out, o.Key)
				}
			}
		}
		return out, nil
	}
	for _, src := range sources {
		var sel []string
		for m := time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(to); m = m.AddDate(0, 1, 0) {
			got, err := files(partition{source: src, hour: m, month: true}.prefix(), true)
			if err != nil {
				return nil, err
			}
			sel = append(sel, got...)
		}
		for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
			got, err := files(fmt.Sprintf("source=%d/date=%s/", src, d.Format(time.DateOnly)), false)
			if err != nil {
				return nil, err
			}
			sel = append(sel, got...)
		}
		slices.SortFunc(sel, func(a, b string) int {
			pa, na, _ := parseKey(a)
			pb, nb, _ := parseKey(b)
			if c := pa.hour.Compare(pb.hour); c != 0 {
				return c
			}
			if pa.month != pb.month {
				if pa.month {
					return -1
				}
				return 1
			}
			fa, _, _ := parseFileName(na)
			fb, _, _ := parseFileName(nb)
			return cmpUint(fa, fb)
		})
		keys = append(keys, sel...)
	}
	return keys, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// forgetMissing deletes the ledger entries of day d (and the sources) whose
// row is not in herd.events. The ledger's day is the partition the row went
// to, so looking in that day's range of herd.events is exact.
func forgetMissing(ctx context.Context, db *pgxpool.Pool, d time.Time, sources []int64) (int64, error) {
	var src any
	if len(sources) > 0 {
		src = sources
	}
	tag, err := db.Exec(ctx, `DELETE FROM herd.message_ids m
		WHERE m.day = $1::date AND ($2::bigint[] IS NULL OR m.source_id = ANY($2::bigint[]))
		  AND NOT EXISTS (
			SELECT 1 FROM herd.events e
			WHERE e.source_id = m.source_id AND e.message_id = m.message_id
			  AND e."timestamp" >= ($1::date)::timestamp AT TIME ZONE 'UTC'
			  AND e."timestamp" < ($1::date + 1)::timestamp AT TIME ZONE 'UTC')`, d, src)
	if err != nil {
		return 0, fmt.Errorf("forget ledger entries of missing rows on %s: %w", d.Format(time.DateOnly), err)
	}
	return tag.RowsAffected(), nil
}

// Locate names the lake file that holds the raw copy of a herd.events row,
// from the row's source_id, timestamp and stream_seq: in the directory of
// its hour or, for an event that was already old when it arrived, in its
// month's bucket.
func Locate(ctx context.Context, lake Lake, sourceID int64, ts time.Time, seq uint64) (string, FileEntry, error) {
	hour := partition{source: sourceID, hour: ts.UTC().Truncate(time.Hour)}
	t := ts.UTC()
	month := partition{source: sourceID, hour: time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC), month: true}
	for _, p := range []partition{hour, month} {
		key, f, err := locateIn(ctx, lake, p, seq)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return key, f, err
		}
	}
	return "", FileEntry{}, fmt.Errorf("no file in %s or %s holds stream sequence %d: %w", hour.String(), month.String(), seq, fs.ErrNotExist)
}

func locateIn(ctx context.Context, lake Lake, p partition, seq uint64) (string, FileEntry, error) {
	m, err := readManifest(ctx, lake, p.prefix())
	if err != nil {
		return "", FileEntry{}, err
	}
	for _, f := range m.Files {
		if seq < f.FirstSeq || seq > f.LastSeq {
			continue
		}
		data, err := lake.Get(ctx, p.prefix()+f.Name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", FileEntry{}, err
		}
		recs, err := decodeFile(data)
		if err != nil {
			return "", FileEntry{}, fmt.Errorf("read %s%s: %w", p.prefix(), f.Name, err)
		}
		if _, ok := seqSet(recs)[seq]; ok {
			return p.prefix() + f.Name, f, nil
		}
	}
	return "", FileEntry{}, fs.ErrNotExist
}
