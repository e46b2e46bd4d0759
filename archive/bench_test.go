package archive

import (
	"context"
	"testing"
	"time"
)

// BenchmarkEncodeFile is the archiver's flush of 20,000 events into one
// Parquet file: time and file size per row.
func BenchmarkEncodeFile(b *testing.B) {
	evs := genEvents(20_000, []int64{1}, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), time.Hour, 9)
	recs := make([]record, len(evs))
	for i := range evs {
		recs[i] = toRecord(&evs[i], uint64(i+1), ProvArchiver)
	}
	var size int
	for b.Loop() {
		data, err := encodeFile(context.Background(), recs)
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(size)/float64(len(recs)), "bytes/row")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/row")
}

// BenchmarkCompact measures closing one partition of 100,000 events in ten
// archiver files, a tenth of them retried copies: the cost the archiver
// pays once per hour and source, off its hot path.
func BenchmarkCompact(b *testing.B) {
	ctx := context.Background()
	hour := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	evs := genEvents(100_000, []int64{1}, hour, time.Hour, 5)
	for i := range evs {
		if i%10 == 9 {
			evs[i].MessageID = evs[i-1].MessageID // a retry
		}
	}
	p := partition{source: 1, hour: hour}
	for b.Loop() {
		b.StopTimer()
		lake := NewDir(b.TempDir())
		man := &Manifest{Version: 1}
		for f := 0; f < len(evs); f += 10_000 {
			recs := make([]record, 0, 10_000)
			for i := f; i < f+10_000; i++ {
				recs = append(recs, toRecord(&evs[i], uint64(i+1), ProvArchiver))
			}
			data, err := encodeFile(context.Background(), recs)
			if err != nil {
				b.Fatal(err)
			}
			name := fileName(uint64(f+1), uint64(f+10_000))
			if err := lake.Put(ctx, p.prefix()+name, data); err != nil {
				b.Fatal(err)
			}
			man.Files = append(man.Files, describe(name, "S", data, recs))
		}
		if err := writeManifest(ctx, lake, p.prefix(), man); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := compactPartition(ctx, lake, p, "S", nil, testLog(b))
		if err != nil || res.Duplicates != 10_000 {
			b.Fatalf("%+v %v", res, err)
		}
	}
}
