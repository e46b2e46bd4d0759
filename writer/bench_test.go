package writer

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
)

// BenchmarkCopy is one writer batch through the insert path: the message ids
// claimed in the ledger, then the claimed rows COPYed into herd.events, in
// one transaction. Every
// operation writes rows never seen before, so nothing is skipped as a
// duplicate.
func BenchmarkCopy(b *testing.B) {
	ctx := context.Background()
	db := pgtest.Pool(b, pgtest.New(b))
	if _, err := schemas.Migrate(ctx, db); err != nil {
		b.Fatal(err)
	}
	var src int64
	if err := db.QueryRow(ctx, `INSERT INTO herd.sources (name, write_key, kind) VALUES ('bench', 'bench-key', 'server') RETURNING id`).Scan(&src); err != nil {
		b.Fatal(err)
	}
	s := NewStore(db)
	at := time.Now().UTC()
	ctxJSON := []byte(`{"library":{"name":"analytics.js","version":"5.2.0"},"page":{"url":"https://shop.example.com/p/sku-1234","path":"/p/sku-1234","title":"A book"},"locale":"en-GB"}`)
	props := []byte(`{"product_id":"sku-1234","price":19.99,"currency":"EUR","category":"books"}`)
	for _, size := range []int{100, 2000} {
		b.Run("batch"+strconv.Itoa(size), func(b *testing.B) {
			rows := make([]Row, size)
			seq := uint64(0)
			ops := 0
			b.ReportAllocs()
			for b.Loop() {
				ops++
				b.StopTimer()
				for i := range rows {
					seq++
					rows[i] = Row{Seq: seq, Event: herd.Event{
						MessageID: "b" + strconv.Itoa(size) + "-" + strconv.FormatUint(seq, 10), SourceID: src,
						Type: herd.TypeTrack, Event: "Product Viewed", UserID: "user-" + strconv.Itoa(i%1000),
						Timestamp: at, ReceivedAt: at, Context: ctxJSON, Properties: props,
						Enrichment: herd.Enrichment{URL: "https://shop.example.com/p/sku-1234", Path: "/p/sku-1234",
							IP: "203.0.113.7", LibraryName: "analytics.js", LibraryVersion: "5.2.0"},
					}}
				}
				b.StartTimer()
				res, err := s.Write(ctx, rows, nil)
				if err != nil {
					b.Fatal(err)
				}
				if res.Inserted != int64(size) {
					b.Fatalf("inserted %d of %d rows", res.Inserted, size)
				}
			}
			b.ReportMetric(float64(ops*size)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
