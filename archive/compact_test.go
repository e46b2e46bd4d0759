package archive

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd"
)

// failingLake fails the n-th call that matches, as a process dying there
// would leave the lake.
type failingLake struct {
	Lake
	op    string // "put" or "delete"
	match func(key string) bool
	n     int
}

var errDied = errors.New("died here")

func (l *failingLake) hit(op, key string) bool {
	if op == l.op && l.match(key) {
		l.n--
		return l.n == 0
	}
	return false
}

func (l *failingLake) Put(ctx context.Context, key string, data []byte) error {
	if l.hit("put", key) {
		return errDied
	}
	return l.Lake.Put(ctx, key, data)
}

func (l *failingLake) Delete(ctx context.Context, key string) error {
	if l.hit("delete", key) {
		return errDied
	}
	return l.Lake.Delete(ctx, key)
}

// seedPartition writes files as the archiver does: three files whose
// events repeat (a retry), 30 distinct message ids in all.
func seedPartition(t *testing.T, lake Lake, p partition) {
	t.Helper()
	ctx := context.Background()
	man := &Manifest{Version: 1}
	seq := uint64(1)
	for f := range 3 {
		var recs []record
		for i := range 15 {
			id := (f*15 + i) % 30 // the third file repeats the first 15
			ev := herd.Event{MessageID: fmt.Sprintf("m-%02d", id), SourceID: p.source, Type: herd.TypeTrack, Event: "E",
				Timestamp: p.hour.Add(time.Duration(59-id) * time.Minute), ReceivedAt: p.hour}
			recs = append(recs, toRecord(&ev, seq, ProvArchiver))
			seq++
		}
		name := fileName(uint64(recs[0].StreamSeq), uint64(recs[len(recs)-1].StreamSeq))
		data, err := encodeFile(context.Background(), recs)
		if err != nil {
			t.Fatal(err)
		}
		if err := lake.Put(ctx, p.prefix()+name, data); err != nil {
			t.Fatal(err)
		}
		man.Files = append(man.Files, describe(name, "S", data, recs))
	}
	if err := writeManifest(ctx, lake, p.prefix(), man); err != nil {
		t.Fatal(err)
	}
}

// A compaction interrupted at any step leaves a partition that the next
// open brings to exactly one copy of each event: the old files or the new.
func TestCompactionInterrupted(t *testing.T) {
	t.Parallel()
	isData := func(k string) bool { return strings.HasSuffix(k, ".parquet") }
	isManifest := func(k string) bool { return path.Base(k) == ManifestName }
	for _, tc := range []struct {
		name  string
		op    string
		match func(string) bool
		n     int
	}{
		{"after storing the new file", "put", isManifest, 1},
		{"after the manifest, before deleting", "delete", isData, 1},
		{"after deleting one old file", "delete", isData, 2},
		{"before the final manifest", "put", isManifest, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			lake := NewDir(t.TempDir())
			p := partition{source: 7, hour: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
			seedPartition(t, lake, p)
			if _, err := compactPartition(ctx, &failingLake{Lake: lake, op: tc.op, match: tc.match, n: tc.n}, p, "S", nil, testLog(t)); !errors.Is(err, errDied) {
				t.Fatalf("compaction: %v, want it to die", err)
			}
			// What the manifest lists is always one copy of each event or
			// the three files (45 rows) it had; never both.
			man, err := openPartition(ctx, lake, p, "S", testLog(t))
			if err != nil {
				t.Fatal(err)
			}
			recs := lakeRecords(t, lake)
			if !(len(recs) == 30 && man.Compacted) && !(len(recs) == 45 && !man.Compacted) {
				t.Fatalf("after reopening: %d rows, compacted %v", len(recs), man.Compacted)
			}
			res, err := compactPartition(ctx, lake, p, "S", nil, testLog(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("recovered: %+v", res)
			recs = lakeRecords(t, lake)
			checkUnique(t, recs, 30)
			objs, _ := lake.List(ctx, "")
			var names []string
			for _, o := range objs {
				names = append(names, path.Base(o.Key))
			}
			sort.Strings(names)
			if len(names) != 2 || names[0] != ManifestName || !strings.Contains(names[1], ".c") {
				t.Fatalf("files %v, want the manifest and one compacted file", names)
			}
		})
	}
}

func TestTaggedNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		first, last   uint64
		tagged, valid bool
	}{
		{"part-3-9.parquet", 3, 9, false, true},
		{taggedName(3, 9, "c", 2), 3, 9, true, true},
		{"part-3-9.r14.parquet", 3, 9, true, true},
		{"part-3-9..parquet", 0, 0, false, false},
		{"part-3-9.C1.parquet", 0, 0, false, false},
		{"part-9-3.c1.parquet", 0, 0, false, false},
		{"part-3-9.c1.parquet.tmp", 0, 0, false, false},
	} {
		f, l, tagged, ok := parseName(tc.name)
		if ok != tc.valid || (ok && (f != tc.first || l != tc.last || tagged != tc.tagged)) {
			t.Errorf("parseName(%q) = %d %d %v %v", tc.name, f, l, tagged, ok)
		}
	}
}
