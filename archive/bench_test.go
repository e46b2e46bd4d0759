package archive

import (
	"context"
	"slices"
	"sync"
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

// BenchmarkEncodeBesideRequests is what a file's encoding does to the
// requests beside it, in one process as in herd up: request-like work (40 µs
// of CPU each, 5,000 a second, scheduled open loop, each on its own
// goroutine) runs while a 50,000-row file is encoded, unpaced ("flat", as
// the archiver did) and paced at the default share. Reported: the requests'
// latency from their scheduled start, p50 and p99, and the encoding's wall
// time.
func BenchmarkEncodeBesideRequests(b *testing.B) {
	evs := genEvents(50_000, []int64{1}, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), time.Hour, 9)
	recs := make([]record, len(evs))
	for i := range evs {
		recs[i] = toRecord(&evs[i], uint64(i+1), ProvArchiver)
	}
	for _, mode := range []string{"flat", "paced"} {
		b.Run(mode, func(b *testing.B) {
			var lat []time.Duration
			var encoding time.Duration
			for b.Loop() {
				ctx := context.Background()
				if mode == "paced" {
					ctx = withPacer(ctx, newPacer(ctx, DefaultEncodeShare))
				}
				stop := make(chan struct{})
				got := make(chan []time.Duration)
				go openLoop(stop, got, 200*time.Microsecond, 40*time.Microsecond)
				start := time.Now()
				if _, err := encodeFile(ctx, recs); err != nil {
					b.Fatal(err)
				}
				encoding += time.Since(start)
				close(stop)
				lat = append(lat, <-got...)
			}
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
			b.ReportMetric(ms(encoding)/float64(b.N), "encode-ms")
		})
	}
}

// openLoop starts a request every interval, each busy for work, until stop
// closes, and sends every request's latency from its scheduled start.
func openLoop(stop <-chan struct{}, out chan<- []time.Duration, interval, work time.Duration) {
	var (
		mu  sync.Mutex
		lat []time.Duration
		wg  sync.WaitGroup
	)
	next := time.Now()
	for {
		select {
		case <-stop:
			wg.Wait()
			out <- lat
			return
		default:
		}
		for now := time.Now(); !next.After(now); next = next.Add(interval) {
			wg.Add(1)
			go func(due time.Time) {
				defer wg.Done()
				for t := time.Now(); time.Since(t) < work; {
				}
				d := time.Since(due)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}(next)
		}
		time.Sleep(time.Until(next))
	}
}
