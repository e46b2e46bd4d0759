package archive

import (
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
		data, err := encodeFile(recs)
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(size)/float64(len(recs)), "bytes/row")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/row")
}
