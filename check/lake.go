package check

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/archive"
	"github.com/parquet-go/parquet-go"
)

// Key is one source's hour of event time (UTC).
type Key struct {
	Source int64
	Hour   time.Time
}

// LakeCounter counts the lake's rows per source and hour of event time in
// [since, until), keeping only events whose stream sequence is at most
// floor (rows without one always count; NoFloor keeps all). sources empty
// means every source.
type LakeCounter interface {
	Counts(ctx context.Context, since, until time.Time, sources []int64, floor uint64) (map[Key]LakeCount, error)
}

// LakeCount is what the lake holds of one source's hour.
type LakeCount struct {
	Rows int64
	// Open is true when a partition holding rows of the hour is not
	// compacted (its hour has not closed, a late event or a gap repair
	// reopened it, or a file is not in its manifest): it may hold a
	// retried event twice until its compaction. A closed partition holds
	// each accepted event once.
	Open bool
}

// ManifestCounter counts what a reader of the lake sees (every *.parquet
// file under source=/date=/hour=), taking a file's row count and sequence
// range from its manifest entry when the entry matches the file's size, and
// reading the file's timestamp and stream_seq columns otherwise: a file the
// manifest does not list, a file whose sequence range straddles the floor,
// and the files of month buckets (hour=-1), whose rows are not of one hour.
// A file the manifest lists but that is gone is not counted: readers do not
// see it either. An hour is Open unless every partition holding its rows is
// compacted by its manifest's account and lists every file present.
type ManifestCounter struct {
	Lake archive.Lake
}

// Counts implements LakeCounter.
func (c ManifestCounter) Counts(ctx context.Context, since, until time.Time, sources []int64, floor uint64) (map[Key]LakeCount, error) {
	since, until = since.UTC(), until.UTC()
	if len(sources) == 0 {
		dirs, err := c.Lake.Children(ctx, "")
		if err != nil {
			return nil, fmt.Errorf("list the lake's sources in %s: %w", c.Lake, err)
		}
		for _, d := range dirs {
			if id, err := strconv.ParseInt(strings.TrimPrefix(d, "source="), 10, 64); err == nil && strings.HasPrefix(d, "source=") {
				sources = append(sources, id)
			}
		}
	}
	out := map[Key]LakeCount{}
	for _, src := range sources {
		prefix := fmt.Sprintf("source=%d/", src)
		dates, err := c.Lake.Children(ctx, prefix)
		if err != nil {
			return nil, fmt.Errorf("list %s%s: %w", c.Lake, prefix, err)
		}
		for _, d := range dates {
			day, err := time.Parse(time.DateOnly, strings.TrimPrefix(d, "date="))
			if err != nil {
				continue
			}
			inRange := !day.Add(24*time.Hour).Before(since) && day.Before(until)
			// A month bucket sits in its month's first day and holds the
			// month's events that arrived already old.
			monthOverlaps := day.Day() == 1 && day.AddDate(0, 1, 0).After(since) && day.Before(until)
			if !inRange && !monthOverlaps {
				continue
			}
			if err := c.countDate(ctx, src, prefix+d+"/", day, since, until, floor, out); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// countDate counts the hour directories (and month bucket) of one date=.
func (c ManifestCounter) countDate(ctx context.Context, src int64, prefix string, day, since, until time.Time, floor uint64, out map[Key]LakeCount) error {
	objs, err := c.Lake.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("list %s%s: %w", c.Lake, prefix, err)
	}
	type dir struct {
		files    []archive.Object
		manifest bool
	}
	dirs := map[string]*dir{}
	var order []string
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Key, prefix)
		hourDir, name, ok := strings.Cut(rel, "/")
		if !ok || strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
			continue
		}
		d := dirs[hourDir]
		if d == nil {
			d = &dir{}
			dirs[hourDir] = d
			order = append(order, hourDir)
		}
		switch {
		case name == archive.ManifestName:
			d.manifest = true
		case strings.HasSuffix(name, ".parquet"):
			d.files = append(d.files, o)
		}
	}
	for _, hourDir := range order {
		d := dirs[hourDir]
		h, err := strconv.Atoi(strings.TrimPrefix(hourDir, "hour="))
		if err != nil || !strings.HasPrefix(hourDir, "hour=") || len(d.files) == 0 {
			continue
		}
		month := h == -1
		var hour time.Time
		if !month {
			hour = day.Add(time.Duration(h) * time.Hour)
			if hour.Before(since) || !hour.Before(until) {
				continue
			}
		}
		entries := map[string]archive.FileEntry{}
		open := true
		if d.manifest {
			m, err := c.manifest(ctx, prefix+hourDir+"/")
			if err != nil {
				return err
			}
			for _, f := range m.Files {
				entries[f.Name] = f
			}
			open = !m.Compacted
		}
		rows := map[Key]int64{}
		for _, o := range d.files {
			name := path.Base(o.Key)
			e, ok := entries[name]
			if !ok || e.Bytes != o.Size {
				open = true // a file its manifest does not describe
			}
			if ok && e.Bytes == o.Size && !month {
				switch {
				case e.LastSeq <= floor:
					rows[Key{src, hour}] += e.Rows
					continue
				case e.FirstSeq > floor:
					continue
				}
			}
			if err := c.countFile(ctx, src, o.Key, since, until, floor, rows); err != nil {
				return err
			}
		}
		for k, n := range rows {
			lc := out[k]
			lc.Rows += n
			lc.Open = lc.Open || open
			out[k] = lc
		}
	}
	return nil
}

func (c ManifestCounter) manifest(ctx context.Context, dir string) (*archive.Manifest, error) {
	b, err := c.Lake.Get(ctx, dir+archive.ManifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return &archive.Manifest{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest %s%s: %w", dir, archive.ManifestName, err)
	}
	var m archive.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse manifest %s%s: %w", dir, archive.ManifestName, err)
	}
	return &m, nil
}

// seqTime is the part of an archive row a count needs.
type seqTime struct {
	Timestamp time.Time `parquet:"timestamp,timestamp(microsecond)"`
	StreamSeq int64     `parquet:"stream_seq"`
}

// countFile reads one file's timestamps and sequences and counts its rows
// per hour.
func (c ManifestCounter) countFile(ctx context.Context, src int64, key string, since, until time.Time, floor uint64, out map[Key]int64) error {
	b, err := c.Lake.Get(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed since the listing: readers no longer see it
	}
	if err != nil {
		return fmt.Errorf("read lake file %s: %w", key, err)
	}
	rows, err := parquet.Read[seqTime](bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return fmt.Errorf("read timestamp and stream_seq of lake file %s: %w", key, err)
	}
	for _, r := range rows {
		t := r.Timestamp.UTC()
		if t.Before(since) || !t.Before(until) {
			continue
		}
		if r.StreamSeq > 0 && uint64(r.StreamSeq) > floor {
			continue
		}
		out[Key{src, t.Truncate(time.Hour)}]++
	}
	return nil
}
