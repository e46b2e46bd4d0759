package archive

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd"
	"github.com/parquet-go/parquet-go"
)

// EraseOptions selects which events Erase removes from the lake.
type EraseOptions struct {
	// Sources limits the lake's source directories searched; empty: all.
	Sources []int64
	// Match reports whether an event is to be removed.
	Match func(e *herd.Event) bool
	// DryRun finds the matching events (Found) without rewriting anything.
	DryRun bool
	// Found, when set, is called with each matching event and its file.
	Found func(key string, e *herd.Event)
	// Progress, when set, is called after each file examined.
	Progress func(EraseProgress)
}

// EraseProgress reports one examined file.
type EraseProgress struct {
	Key     string
	Index   int // 1-based, of Total
	Total   int
	Rows    int64 // rows the file held
	Removed int64 // rows removed (or, in a dry run, matched)
}

// HourKey is a source and an hour of event time (UTC).
type HourKey struct {
	SourceID int64
	Hour     time.Time
}

// EraseResult sums an Erase.
type EraseResult struct {
	Files     int // files examined
	Rewritten int // files rewritten without the matching rows
	Removed   int64
	// ByHour counts removed rows per source and hour of their event time:
	// a month bucket's rows count in their own hours.
	ByHour map[HourKey]int64
}

// erasedMeta marks a file Erase rewrote, with the time it did: a rerun
// after a crash between the file and its manifest entry finds the entry
// stale and a file that says why, and repairs the entry.
const erasedMeta = "herd.erased_at"

// Erase rewrites every lake file holding events that opt.Match selects,
// without them, and updates the file's manifest entry (rows, bytes,
// checksum, event-time range). A file keeps its name and its entry keeps
// the range of stream sequences the file was made from: those messages
// were archived, and the archiver must still treat them as done. A file
// left without rows stays, empty, so that its manifest entry says where
// its events went. Each file is stored whole (Lake.Put is atomic), then
// its partition's manifest once the partition's files are done; a crash in
// between leaves a file whose entry Erase repairs when run again.
//
// Erase reads every file of the selected sources: a lake holds events
// longer than the warehouse, so Postgres cannot say which files to read.
func Erase(ctx context.Context, lake Lake, opt EraseOptions) (EraseResult, error) {
	res := EraseResult{ByHour: map[HourKey]int64{}}
	if opt.Match == nil {
		return res, fmt.Errorf("erase: no match function")
	}
	sources := opt.Sources
	if len(sources) == 0 {
		dirs, err := lake.Children(ctx, "")
		if err != nil {
			return res, err
		}
		for _, d := range dirs {
			if s, ok := strings.CutPrefix(d, "source="); ok {
				if id, err := strconv.ParseInt(s, 10, 64); err == nil {
					sources = append(sources, id)
				}
			}
		}
	}
	// The files, grouped by partition directory in listing order.
	var keys []string
	for _, src := range sources {
		objs, err := lake.List(ctx, fmt.Sprintf("source=%d/", src))
		if err != nil {
			return res, err
		}
		for _, o := range objs {
			if _, name, ok := parseKey(o.Key); ok {
				if _, _, ok := parseFileName(name); ok {
					keys = append(keys, o.Key)
				}
			}
		}
	}
	var (
		dir   string
		man   *Manifest
		dirty bool
	)
	flush := func() error {
		if dirty && !opt.DryRun {
			if err := writeManifest(ctx, lake, dir, man); err != nil {
				return fmt.Errorf("erase: store manifest of %s: %w", dir, err)
			}
		}
		dirty = false
		return nil
	}
	for i, key := range keys {
		if d := path.Dir(key) + "/"; d != dir {
			if err := flush(); err != nil {
				return res, err
			}
			m, err := readManifest(ctx, lake, d)
			if err != nil {
				return res, err
			}
			dir, man = d, m
		}
		name := path.Base(key)
		data, err := lake.Get(ctx, key)
		if err != nil {
			return res, err
		}
		recs, err := decodeFile(data)
		if err != nil {
			return res, fmt.Errorf("erase: read %s: %w; the file is not valid Parquet: restore it or remove it from the lake and its manifest", key, err)
		}
		keep := make([]record, 0, len(recs))
		var removed int64
		for j := range recs {
			e := recs[j].event()
			if !opt.Match(&e) {
				keep = append(keep, recs[j])
				continue
			}
			removed++
			if opt.Found != nil {
				opt.Found(key, &e)
			}
			h := HourKey{SourceID: recs[j].SourceID, Hour: recs[j].Timestamp.UTC().Truncate(time.Hour)}
			res.ByHour[h]++
		}
		res.Files++
		res.Removed += removed
		switch {
		case opt.DryRun:
		case removed > 0:
			first, last, _ := parseFileName(name)
			out, err := encodeErased(keep, first, last)
			if err != nil {
				return res, fmt.Errorf("erase: rewrite %s: %w", key, err)
			}
			if err := lake.Put(ctx, key, out); err != nil {
				return res, fmt.Errorf("erase: rewrite %s: %w", key, err)
			}
			updateEntry(man, name, out, keep)
			dirty = true
			res.Rewritten++
		default:
			// A file rewritten by an earlier, interrupted run: its entry
			// may still describe the old bytes.
			if f := entryOf(man, name); f != nil && f.SHA256 != checksum(data) && wasErased(data) {
				updateEntry(man, name, data, recs)
				dirty = true
			}
		}
		if opt.Progress != nil {
			opt.Progress(EraseProgress{Key: key, Index: i + 1, Total: len(keys), Rows: int64(len(recs)), Removed: removed})
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	return res, nil
}

// encodeErased writes what is left of a file; it may be nothing. The
// sequence range of the original file stays in the metadata, as in its name.
func encodeErased(recs []record, first, last uint64) ([]byte, error) {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[record](&buf,
		parquet.Compression(&parquet.Zstd),
		parquet.CreatedBy("herd", "", ""),
		parquet.KeyValueMetadata("herd.first_seq", strconv.FormatUint(first, 10)),
		parquet.KeyValueMetadata("herd.last_seq", strconv.FormatUint(last, 10)),
		parquet.KeyValueMetadata(erasedMeta, time.Now().UTC().Format(time.RFC3339)),
	)
	if len(recs) > 0 {
		if _, err := w.Write(recs); err != nil {
			return nil, fmt.Errorf("encode %d rows as parquet: %w", len(recs), err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("finish parquet file of %d rows: %w", len(recs), err)
	}
	return buf.Bytes(), nil
}

func wasErased(data []byte) bool {
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return false
	}
	_, ok := f.Lookup(erasedMeta)
	return ok
}

func entryOf(m *Manifest, name string) *FileEntry {
	for i := range m.Files {
		if m.Files[i].Name == name {
			return &m.Files[i]
		}
	}
	return nil
}

// updateEntry makes the manifest entry of a rewritten file describe its
// new bytes and rows; the stream and sequence range stay. A file the
// manifest did not list (stored just before a crash) is left for the
// archiver to adopt.
func updateEntry(m *Manifest, name string, data []byte, recs []record) {
	f := entryOf(m, name)
	if f == nil {
		return
	}
	d := describe(name, f.Stream, data, recs)
	f.Rows, f.Bytes, f.SHA256 = d.Rows, d.Bytes, d.SHA256
	if len(recs) > 0 {
		f.MinTimestamp, f.MaxTimestamp = d.MinTimestamp, d.MaxTimestamp
	}
}
