package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/internal/natstest"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/prometheus/client_golang/prometheus"
)

// testLake is a lake on disk or on an in-process S3 server.
type testLake struct {
	name string
	open func(t *testing.T) Lake
}

var testLakes = []testLake{
	{"dir", func(t *testing.T) Lake { return NewDir(t.TempDir()) }},
	{"s3", func(t *testing.T) Lake {
		backend := s3mem.New()
		if err := backend.CreateBucket("lake"); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(gofakes3.New(backend).Server())
		t.Cleanup(srv.Close)
		lake, err := Open("s3://lake/herd", S3Config{Endpoint: srv.URL, AccessKey: "test", SecretKey: "test-secret", PathStyle: true})
		if err != nil {
			t.Fatal(err)
		}
		return lake
	}},
}

// localCopy returns a directory DuckDB can glob: the lake itself, or a copy
// of the bucket (DuckDB's S3 support is an extension fetched at run time,
// and tests stay offline).
func localCopy(t *testing.T, lake Lake) string {
	t.Helper()
	if d, ok := lake.(*Dir); ok {
		return d.root
	}
	ctx := context.Background()
	objs, err := lake.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, o := range objs {
		b, err := lake.Get(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(o.Key))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// post sends a batch body and returns the status.
func post(t *testing.T, url string, body []byte) int {
	t.Helper()
	res, err := http.Post(url+"/v1/batch", "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// batchBody makes a batch of n events of one hour, message ids prefix-i.
func batchBody(writeKey, prefix string, n int, hour time.Time) []byte {
	var items []string
	for i := range n {
		ts := hour.Add(time.Duration(i) * time.Minute % time.Hour).Add(time.Duration(i) * time.Millisecond)
		items = append(items, fmt.Sprintf(`{"type":"track","event":"Retried","anonymousId":"a-%d","messageId":"%s-%d","timestamp":%q,"properties":{"i":%d}}`,
			i, prefix, i, ts.Format(time.RFC3339Nano), i))
	}
	return []byte(`{"writeKey":"` + writeKey + `","batch":[` + strings.Join(items, ",") + `]}`)
}

// Acceptance 1 of issue 16: the same events sent three times in separate
// requests, and events sent through a collector whose JetStream
// acknowledgement times out after they were stored (the client gets an
// error and retries), are each once in the lake once their hour is closed,
// by a plain DuckDB count(*), equal to Postgres. The stream holds every
// copy (frames carry no Nats-Msg-Id), so the lake's files do too until the
// compaction of the closed hour.
func TestRetriesOnceInClosedPartition(t *testing.T) {
	t.Parallel()
	for _, tl := range testLakes {
		t.Run(tl.name, func(t *testing.T) {
			t.Parallel()
			p := herdtest.Start(t, herdtest.Options{})
			ctx := context.Background()
			lake := tl.open(t)

			// A second collector on the same stream whose wait for
			// JetStream's acknowledgement always times out: the events are
			// stored, the client is told they were not.
			slow, err := collector.New(collector.Config{Stream: p.Stream, PublishTimeout: time.Nanosecond}, natstest.Connect(t, p.NATS), p.Log, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			cctx, cancel := context.WithCancel(ctx)
			t.Cleanup(cancel)
			if err := slow.Start(cctx); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go slow.Serve(ln) //nolint:errcheck
			t.Cleanup(func() { _ = slow.Shutdown(context.Background()) })
			slowURL := "http://" + ln.Addr().String()

			// An hour that ended two hours ago: closed once its files are
			// written.
			hour := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
			const nA, nB = 60, 40
			a := batchBody(p.WriteKey, "thrice", nA, hour)
			for range 3 {
				if st := post(t, p.URL, a); st != 200 {
					t.Fatalf("send: %d", st)
				}
			}
			b := batchBody(p.WriteKey, "timedout", nB, hour)
			if st := post(t, slowURL, b); st == 200 {
				t.Fatal("the collector with a 1ns publish timeout answered 200; the test needs it to time out")
			}
			// The retry, after the timeout: the first copy is in the stream.
			if st := post(t, p.URL, b); st != 200 {
				t.Fatalf("retry: %d", st)
			}
			var distinct int64 = nA + nB
			q := `SELECT count(*) FROM herd.events WHERE source_id = $1`
			if got := p.WaitRows(t, distinct, 15*time.Second, q, p.Source.ID); got != distinct {
				t.Fatalf("herd.events holds %d rows, want %d", got, distinct)
			}

			// The S3 lake is compacted by `herd archive compact` (Compact)
			// once the archiver stopped; the directory by the archiver
			// itself.
			cfg := Config{Stream: p.Stream, FileMaxAge: time.Second, CompactEvery: 200 * time.Millisecond}
			if tl.name == "s3" {
				cfg.CloseAfter = -1
			}
			ar := New(cfg, lake, p.JS, testLog(t), nil)
			r := startArchiver(t, ar)
			waitFor(t, 30*time.Second, "the archiver to take every message", func() (bool, string) {
				st, err := Lag(ctx, p.JS, cfg)
				if err != nil {
					return false, err.Error()
				}
				return st.Lag == 0, fmt.Sprintf("%+v", st)
			})
			if tl.name == "s3" {
				if err := r.stop(); err != nil {
					t.Fatal(err)
				}
				// Before compaction the lake holds every copy the stream had.
				if got := len(lakeRecords(t, lake)); got != 3*nA+2*nB {
					t.Fatalf("before compaction the lake holds %d rows, want %d (every copy in the stream)", got, 3*nA+2*nB)
				}
				res, err := Compact(ctx, lake, CompactOptions{Before: time.Now(), Stream: p.Stream.Name})
				if err != nil {
					t.Fatal(err)
				}
				if res.Partitions != 1 || res.Duplicates != 2*nA+nB || res.Rows != distinct {
					t.Fatalf("compact: %+v, want one partition, %d rows, %d duplicates dropped", res, distinct, 2*nA+nB)
				}
			} else {
				compacted := func(rows int64) {
					t.Helper()
					waitFor(t, 30*time.Second, "the closed hour to be compacted", func() (bool, string) {
						cs, err := Counts(ctx, lake, time.Time{})
						if err != nil {
							return false, err.Error()
						}
						return len(cs) == 1 && cs[0].Compacted && cs[0].Rows == rows, fmt.Sprintf("%+v", cs)
					})
				}
				compacted(distinct)
				// A late event, and one more retry, reopen the closed hour
				// until it is compacted again.
				if st := post(t, p.URL, a); st != 200 {
					t.Fatalf("send: %d", st)
				}
				if st := post(t, p.URL, batchBody(p.WriteKey, "late", 1, hour)); st != 200 {
					t.Fatalf("send: %d", st)
				}
				distinct++
				if got := p.WaitRows(t, distinct, 15*time.Second, q, p.Source.ID); got != distinct {
					t.Fatalf("herd.events holds %d rows, want %d", got, distinct)
				}
				compacted(distinct)
				if err := r.stop(); err != nil {
					t.Fatal(err)
				}
				if got := counterValue(ar.m.duplicates); got != 3*nA+nB {
					t.Errorf("herd_archive_duplicates_dropped_total = %v, want %d", got, 3*nA+nB)
				}
				if got := counterValue(ar.m.compactions); got != 2 {
					t.Errorf("herd_archive_compactions_total = %v, want 2", got)
				}
			}

			// What herd check reads: the manifest's count and sequences.
			cs, err := Counts(ctx, lake, hour.Add(-time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) != 1 || !cs[0].Compacted || cs[0].Rows != distinct || cs[0].Files != 1 || !cs[0].Hour.Equal(hour) ||
				cs[0].Source != p.Source.ID || cs[0].MinSeq == 0 || cs[0].MaxSeq < cs[0].MinSeq {
				t.Fatalf("counts %+v, want one compacted partition of %d rows in one file", cs, distinct)
			}

			dir := localCopy(t, lake)
			got := duckdb(t, fmt.Sprintf(`SELECT count(*) AS n, count(DISTINCT message_id) AS ids, min(provenance) AS prov, max(provenance) AS prov2
				FROM read_parquet('%s/source=*/date=*/hour=*/*.parquet', hive_partitioning = true)`, dir))
			var pg int64
			if err := p.DB.QueryRow(ctx, q, p.Source.ID).Scan(&pg); err != nil {
				t.Fatal(err)
			}
			if str(got[0]["n"]) != fmt.Sprint(pg) || str(got[0]["ids"]) != fmt.Sprint(pg) {
				t.Fatalf("duckdb count(*) %s (distinct ids %s), postgres %d", str(got[0]["n"]), str(got[0]["ids"]), pg)
			}
			if str(got[0]["prov"]) != ProvArchiver || str(got[0]["prov2"]) != ProvArchiver {
				t.Fatalf("provenance %v..%v, want %s", got[0]["prov"], got[0]["prov2"], ProvArchiver)
			}
			// The closed partition is sorted by (timestamp, message_id).
			recs := lakeRecords(t, lake)
			for i := 1; i < len(recs); i++ {
				a, b := recs[i-1], recs[i]
				if a.Timestamp.After(b.Timestamp) || a.Timestamp.Equal(b.Timestamp) && a.MessageID > b.MessageID {
					t.Fatalf("compacted file out of order at row %d: %s %s after %s %s", i, b.Timestamp, b.MessageID, a.Timestamp, a.MessageID)
				}
			}
		})
	}
}
