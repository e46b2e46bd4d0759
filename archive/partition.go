package archive

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"time"
)

// openPartition reads p's manifest and reconciles it with the files
// present, so that the manifest is the truth about the partition's rows:
//   - a file the archiver stored just before a crash, whose manifest entry
//     was never written, is adopted (its rows are in no other file);
//   - a file a rewrite (compaction, repair, privacy deletion) replaced, and
//     that the process died before deleting, is deleted (Manifest.Superseded);
//   - a rewrite's output whose manifest was never written is deleted: the
//     files the manifest lists still hold those rows;
//   - temporaries of a dead process are removed;
//   - entries whose file is gone are dropped.
//
// Code that changes a partition's files (compaction, repair, privacy
// deletion) starts here and ends with rewritePartition or addFile.
func openPartition(ctx context.Context, lake Lake, p partition, streamName string, log *slog.Logger) (*Manifest, error) {
	prefix := p.prefix()
	if c, ok := lake.(tempCleaner); ok {
		if n, err := c.cleanTemps(prefix, 0); err != nil {
			log.Warn("remove temporary files", "partition", p.String(), "err", err)
		} else if n > 0 {
			log.Info("removed temporary files of an interrupted write", "partition", p.String(), "files", n)
		}
	}
	objs, err := lake.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	man, err := readManifest(ctx, lake, prefix)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, f := range man.Files {
		known[f.Name] = true
	}
	superseded := map[string]bool{}
	for _, n := range man.Superseded {
		superseded[n] = !known[n]
	}
	present := map[string]bool{}
	changed := len(man.Superseded) > 0
	for _, o := range objs {
		name := path.Base(o.Key)
		if path.Dir(o.Key)+"/" != prefix {
			continue
		}
		_, _, tagged, ok := parseName(name)
		if !ok {
			continue
		}
		if superseded[name] || (tagged && !known[name]) {
			if err := lake.Delete(ctx, o.Key); err != nil {
				return nil, err
			}
			log.Info("removed a file an interrupted rewrite left behind", "file", o.Key)
			continue
		}
		present[name] = true
		if known[name] {
			continue
		}
		data, err := lake.Get(ctx, o.Key)
		if err != nil {
			return nil, err
		}
		recs, err := decodeFile(data)
		if err != nil || len(recs) == 0 {
			log.Error("unreadable file in the lake; ignored", "file", o.Key, "err", err)
			continue
		}
		man.Files = append(man.Files, describe(name, streamName, data, recs))
		man.Compacted = false
		changed = true
		log.Info("adopted a file stored before an interruption", "file", o.Key, "rows", len(recs))
	}
	man.Superseded = nil
	kept := man.Files[:0]
	for _, f := range man.Files {
		if present[f.Name] {
			kept = append(kept, f)
		} else {
			log.Warn("manifest lists a file that is gone; entry dropped", "partition", p.String(), "file", f.Name)
			changed = true
		}
	}
	man.Files = kept
	if changed {
		if err := writeManifest(ctx, lake, prefix, man); err != nil {
			return nil, err
		}
	}
	return man, nil
}

// readPartition returns every row of the partition's files, each file's
// checksum verified against the manifest first.
func readPartition(ctx context.Context, lake Lake, p partition, man *Manifest) ([]record, error) {
	var all []record
	for _, f := range man.Files {
		key := p.prefix() + f.Name
		data, err := lake.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if sum := checksum(data); f.SHA256 != "" && sum != f.SHA256 {
			return nil, fmt.Errorf("%s: checksum %s does not match the manifest's %s; the file was altered, leaving the partition as it is", key, sum, f.SHA256)
		}
		recs, err := decodeFile(data)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
		all = append(all, recs...)
	}
	return all, nil
}

// rewritePartition replaces every file of the partition with one file of
// recs (none when recs is empty), crash-safe: the new file is stored, then
// the manifest that lists it alone and names the old files as superseded,
// then the old files are deleted and the manifest written once more without
// them. A crash at any point leaves a partition that openPartition brings
// to one state or the other, never both. compacted records that recs are
// the partition's closed, deduplicated, sorted content. tag names the
// rewrite in the file name ("c" compaction; "p" privacy deletion).
func rewritePartition(ctx context.Context, lake Lake, p partition, man *Manifest, recs []record, streamName, tag string, compacted bool) error {
	old := make([]string, 0, len(man.Files))
	for _, f := range man.Files {
		old = append(old, f.Name)
	}
	man.Generation++
	var files []FileEntry
	if len(recs) > 0 {
		entry, err := putFile(ctx, lake, p, recs, streamName, tag, man.Generation)
		if err != nil {
			return err
		}
		files = append(files, entry)
	}
	// Once the new file is stored, finish the swap even when ctx ends (a
	// graceful stop): an unlisted rewrite beside the files it replaces is
	// what a reader's glob would count twice until the partition is next
	// opened.
	ctx, cancel := finishing(ctx)
	defer cancel()
	man.Files, man.Superseded, man.Compacted = files, old, compacted
	if compacted {
		now := time.Now().UTC()
		man.CompactedAt = &now
	}
	if err := writeManifest(ctx, lake, p.prefix(), man); err != nil {
		return err
	}
	for _, n := range old {
		if err := lake.Delete(ctx, p.prefix()+n); err != nil {
			return err
		}
	}
	man.Superseded = nil
	return writeManifest(ctx, lake, p.prefix(), man)
}

// addFile adds a file of recs to the partition (a gap repair's rows): the
// file is stored, then listed; the partition is no longer compacted.
func addFile(ctx context.Context, lake Lake, p partition, man *Manifest, recs []record, streamName, tag string) (FileEntry, error) {
	man.Generation++
	entry, err := putFile(ctx, lake, p, recs, streamName, tag, man.Generation)
	if err != nil {
		return entry, err
	}
	ctx, cancel := finishing(ctx)
	defer cancel()
	man.Files = append(man.Files, entry)
	man.Compacted = false
	return entry, writeManifest(ctx, lake, p.prefix(), man)
}

// finishing is the context for the steps that must follow a stored file
// (listing it, removing what it replaced): not ended by ctx, bounded in
// time.
func finishing(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
}

func putFile(ctx context.Context, lake Lake, p partition, recs []record, streamName, tag string, gen int) (FileEntry, error) {
	first, last := uint64(recs[0].StreamSeq), uint64(recs[0].StreamSeq)
	for i := range recs {
		first, last = min(first, uint64(recs[i].StreamSeq)), max(last, uint64(recs[i].StreamSeq))
	}
	name := taggedName(first, last, tag, gen)
	data, err := encodeFile(ctx, recs)
	if err != nil {
		return FileEntry{}, fmt.Errorf("%s%s: %w", p.prefix(), name, err)
	}
	if err := lake.Put(ctx, p.prefix()+name, data); err != nil {
		return FileEntry{}, err
	}
	return describe(name, streamName, data, recs), nil
}

// dedupSort keeps the first copy (lowest stream sequence) of each message
// id and orders the rows by (timestamp, message_id): a closed partition's
// layout. It returns how many copies it dropped.
func dedupSort(recs []record) ([]record, int) {
	slices.SortFunc(recs, func(a, b record) int {
		return cmp.Or(cmp.Compare(a.MessageID, b.MessageID), cmp.Compare(a.StreamSeq, b.StreamSeq))
	})
	out := recs[:0]
	for i := range recs {
		if len(out) > 0 && out[len(out)-1].MessageID == recs[i].MessageID {
			continue
		}
		out = append(out, recs[i])
	}
	dropped := len(recs) - len(out)
	slices.SortFunc(out, func(a, b record) int {
		return cmp.Or(a.Timestamp.Compare(b.Timestamp), cmp.Compare(a.MessageID, b.MessageID))
	})
	return out, dropped
}
