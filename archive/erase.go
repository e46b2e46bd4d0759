package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
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
// checksum, event-time range) and so the partition's sums (Rows, MinSeq,
// MaxSeq; a compacted partition stays compacted: what is left is still
// sorted and holds each message id once). A file keeps its name and its
// entry keeps the range of stream sequences the file was made from, and
// the file lists the sequences it lost (erasedSeqsMeta): those messages
// were archived, and an archiver that sees one again must treat it as done.
// A file left without rows stays, empty, so that its manifest entry says
// where its events went. Each partition is first opened as the archiver
// opens it (openPartition: an interrupted rewrite is finished or undone);
// each file is stored whole (Lake.Put is atomic), then the partition's
// manifest once its files are done; a crash in between leaves a file whose
// entry Erase repairs when run again.
//
// Erase changes files the archiver writes: while an archiver runs, ask it
// to erase (RequestErase; it does so between its own writes) rather than
// calling Erase beside it. Erase reads every file of the selected sources:
// a lake holds events longer than the warehouse, so Postgres cannot say
// which files to read.
func Erase(ctx context.Context, lake Lake, opt EraseOptions) (EraseResult, error) {
	return erase(ctx, lake, opt, "", slog.New(slog.DiscardHandler))
}

func erase(ctx context.Context, lake Lake, opt EraseOptions, streamName string, log *slog.Logger) (EraseResult, error) {
	res := EraseResult{ByHour: map[HourKey]int64{}}
	if opt.Match == nil {
		return res, fmt.Errorf("erase: no match function")
	}
	parts, err := listPartitions(ctx, lake, opt.Sources, time.Time{})
	if err != nil {
		return res, fmt.Errorf("erase: list the lake's partitions: %w", err)
	}
	// Each partition's manifest, reconciled with its files, and the files
	// in manifest order: the total is known before the first is read.
	type part struct {
		p   partition
		man *Manifest
	}
	var (
		todo  []part
		total int
	)
	for _, p := range parts {
		var man *Manifest
		if opt.DryRun {
			// Change nothing; look at every file a reader sees.
			man, err = listedFiles(ctx, lake, p)
		} else {
			man, err = openPartition(ctx, lake, p, streamName, log)
		}
		if err != nil {
			return res, fmt.Errorf("erase: open %s: %w", p.String(), err)
		}
		todo = append(todo, part{p, man})
		total += len(man.Files)
	}
	i := 0
	for _, pt := range todo {
		dirty := false
		for fi := range pt.man.Files {
			i++
			name := pt.man.Files[fi].Name
			key := pt.p.prefix() + name
			data, err := lake.Get(ctx, key)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return res, err
			}
			recs, err := decodeFile(data)
			if err != nil {
				return res, fmt.Errorf("erase: read %s: %w; the file is not valid Parquet: restore it or remove it from the lake and its manifest", key, err)
			}
			keep := make([]record, 0, len(recs))
			var gone []uint64
			for j := range recs {
				e := recs[j].event()
				if !opt.Match(&e) {
					keep = append(keep, recs[j])
					continue
				}
				gone = append(gone, uint64(recs[j].StreamSeq))
				if opt.Found != nil {
					opt.Found(key, &e)
				}
				h := HourKey{SourceID: recs[j].SourceID, Hour: recs[j].Timestamp.UTC().Truncate(time.Hour)}
				res.ByHour[h]++
			}
			removed := int64(len(gone))
			res.Files++
			res.Removed += removed
			switch {
			case opt.DryRun:
			case removed > 0:
				f := &pt.man.Files[fi]
				out, err := encodeErased(keep, f.FirstSeq, f.LastSeq, append(erasedSeqs(data), gone...))
				if err != nil {
					return res, fmt.Errorf("erase: rewrite %s: %w", key, err)
				}
				if err := lake.Put(ctx, key, out); err != nil {
					return res, fmt.Errorf("erase: rewrite %s: %w", key, err)
				}
				updateEntry(pt.man, name, out, keep)
				dirty = true
				res.Rewritten++
			default:
				// A file rewritten by an earlier, interrupted run: its entry
				// may still describe the old bytes.
				if f := entryOf(pt.man, name); f != nil && f.SHA256 != checksum(data) && wasErased(data) {
					updateEntry(pt.man, name, data, recs)
					dirty = true
				}
			}
			if opt.Progress != nil {
				opt.Progress(EraseProgress{Key: key, Index: i, Total: total, Rows: int64(len(recs)), Removed: removed})
			}
		}
		if dirty {
			if err := writeManifest(ctx, lake, pt.p.prefix(), pt.man); err != nil {
				return res, fmt.Errorf("erase: store manifest of %s: %w", pt.p.String(), err)
			}
		}
	}
	return res, nil
}

// erasedSeqsMeta lists, in a file Erase rewrote, the stream sequences of
// the rows it removed (comma-separated): the archiver counts them as
// archived, so a redelivered message does not bring an erased event back.
const erasedSeqsMeta = "herd.erased_seqs"

// encodeErased writes what is left of a file; it may be nothing. The
// sequence range of the original file stays in the metadata, as in its name,
// and the sequences of the removed rows are listed.
func encodeErased(recs []record, first, last uint64, gone []uint64) ([]byte, error) {
	slices.Sort(gone)
	gone = slices.Compact(gone)
	seqs := make([]string, len(gone))
	for i, s := range gone {
		seqs[i] = strconv.FormatUint(s, 10)
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[record](&buf,
		parquet.Compression(lakeZstd),
		parquet.CreatedBy("herd", "", ""),
		parquet.KeyValueMetadata("herd.first_seq", strconv.FormatUint(first, 10)),
		parquet.KeyValueMetadata("herd.last_seq", strconv.FormatUint(last, 10)),
		parquet.KeyValueMetadata(erasedMeta, time.Now().UTC().Format(time.RFC3339)),
		parquet.KeyValueMetadata(erasedSeqsMeta, strings.Join(seqs, ",")),
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

// listedFiles is a manifest naming the partition's Parquet files as listed.
func listedFiles(ctx context.Context, lake Lake, p partition) (*Manifest, error) {
	objs, err := lake.List(ctx, p.prefix())
	if err != nil {
		return nil, err
	}
	m := &Manifest{}
	for _, o := range objs {
		if q, name, ok := parseKey(o.Key); ok && q == p {
			if first, last, ok := parseFileName(name); ok {
				m.Files = append(m.Files, FileEntry{Name: name, FirstSeq: first, LastSeq: last})
			}
		}
	}
	return m, nil
}

// erasedSeqs returns the sequences a file's earlier erasures removed.
func erasedSeqs(data []byte) []uint64 {
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil
	}
	v, ok := f.Lookup(erasedSeqsMeta)
	if !ok || v == "" {
		return nil
	}
	var out []uint64
	for _, s := range strings.Split(v, ",") {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
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
