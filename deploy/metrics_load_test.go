package deploy

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd/collector"
)

// drivenElsewhere names, for metrics that need a setup of their own (a
// logical replication pair, a trimmed stream, Stripe's API), the test that
// drives each and checks it moves. The test must exist and mention the
// metric.
var drivenElsewhere = map[string]string{
	"herd_archive_errors_total":                  "../archive/metrics_test.go TestErrorsMetricHasFixedLabels",
	"herd_archive_gaps_total":                    "../archive/gap_test.go TestGapRepairedAfterTrim",
	"herd_replicate_healthy":                     "../replicate/metrics_test.go TestReplicationMetricsFollowLag",
	"herd_replicate_lag_bytes":                   "../replicate/metrics_test.go TestReplicationMetricsFollowLag",
	"herd_replicate_lag_seconds":                 "../replicate/metrics_test.go TestReplicationMetricsFollowLag",
	"herd_stream_up":                             "../stream/metrics_test.go TestStreamUpFollowsNATS",
	"herd_stripe_last_success_timestamp_seconds": "../saas/stripe/metrics_test.go TestLastSuccessAdvancesWithSyncs",
}

// TestMonitoredMetricsMoveUnderLoad runs herd's event path under load and
// checks that every metric the alerting rules and the dashboard read moves
// as its help text says, in both directions where it is a gauge: a gauge
// that stays still (herd_archive_buffered_events read 0 with thousands of
// events held in open lake files) fails here.
func TestMonitoredMetricsMoveUnderLoad(t *testing.T) {
	used := usedMetrics(t, monitoringQueries(t))
	r := startRig(t)
	ctx := context.Background()
	moved := map[string]bool{}
	// check records that metric moved as wanted; it fails the test if not.
	check := func(metric string, ok bool, format string, args ...any) {
		t.Helper()
		moved[metric] = true
		if !ok {
			t.Errorf("%s: %s", metric, fmt.Sprintf(format, args...))
		}
	}
	val := func(metric string, labels ...string) float64 {
		t.Helper()
		v, _ := r.value(t, metric, labels...)
		return v
	}
	type snapshot map[string]float64
	snap := func() snapshot {
		return snapshot{
			"accepted":      val("herd_collector_events_total", "result", "accepted"),
			"batch200":      val("herd_collector_requests_total", "route", "batch", "status", "200"),
			"replies":       val("herd_collector_request_duration_seconds", "route", "batch"),
			"publishes":     val("herd_collector_publish_seconds"),
			"streamMsgs":    val("herd_stream_messages"),
			"streamBytes":   val("herd_stream_bytes"),
			"rowsEvents":    val("herd_writer_rows_total", "table", "events"),
			"commitLag":     val("herd_writer_receive_to_commit_seconds"),
			"archivedRows":  val("herd_archive_rows_total"),
			"writerErrors":  val("herd_writer_errors_total"),
			"rejected":      val("herd_collector_events_total", "result", "rejected"),
			"unrecorded":    val("herd_collector_rejects_unrecorded_total"),
			"panics":        val("herd_collector_panics_total"),
			"limitedSource": val("herd_collector_events_total", "result", "rate_limited", "reason", "source"),
		}
	}

	t.Run("load: collector, stream, writer, archiver buffering", func(t *testing.T) {
		before := snap()
		if v := val("herd_stream_up"); v != 1 {
			t.Fatalf("herd_stream_up = %v with NATS running; want 1", v)
		}
		check("herd_stream_max_bytes", val("herd_stream_max_bytes") == float64(r.p.Stream.MaxBytes),
			"= %v, want the stream's limit %d", val("herd_stream_max_bytes"), r.p.Stream.MaxBytes)
		const requests, per = 24, 250
		var wg sync.WaitGroup
		for i := range requests {
			wg.Go(func() { r.batch(t, fmt.Sprintf("load-%d", i), per, nil) })
			if i%4 == 3 {
				wg.Wait() // four at a time: two cores are shared
			}
		}
		wg.Wait()
		const n = requests * per
		after := snap()
		check("herd_collector_events_total", after["accepted"]-before["accepted"] == n,
			"accepted rose by %v, want the %d events sent", after["accepted"]-before["accepted"], n)
		check("herd_collector_requests_total", after["batch200"]-before["batch200"] == requests,
			"batch/200 rose by %v, want %d requests", after["batch200"]-before["batch200"], requests)
		check("herd_collector_request_duration_seconds", after["replies"]-before["replies"] == requests,
			"%v replies timed, want %d", after["replies"]-before["replies"], requests)
		check("herd_collector_publish_seconds", after["publishes"]-before["publishes"] >= requests,
			"%v publishes timed, want at least %d", after["publishes"]-before["publishes"], requests)
		check("herd_stream_messages", after["streamMsgs"] > before["streamMsgs"],
			"%v before the load, %v after; want more", before["streamMsgs"], after["streamMsgs"])
		check("herd_stream_bytes", after["streamBytes"]-before["streamBytes"] >= n*50,
			"rose by %v bytes for %d events; want at least 50 a event", after["streamBytes"]-before["streamBytes"], n)

		waitFor(t, 60*time.Second, "the writer commits the load", func() bool {
			return r.rows(t, "SELECT count(*) FROM herd.events WHERE message_id LIKE 'load-%'") == n
		})
		waitFor(t, 10*time.Second, "the writer's backlog is 0", func() bool {
			return val("herd_stream_consumer_lag_messages", "consumer", "herd-writer") == 0
		})
		after = snap()
		check("herd_writer_rows_total", after["rowsEvents"]-before["rowsEvents"] == n,
			"events rows rose by %v, want %d", after["rowsEvents"]-before["rowsEvents"], n)
		check("herd_writer_receive_to_commit_seconds", after["commitLag"]-before["commitLag"] == n,
			"%v events timed receive-to-commit, want %d", after["commitLag"]-before["commitLag"], n)

		// The archiver holds every event in an open file (it writes files
		// only on stopping, in this test) and acknowledges none.
		var buffered, lag, consumerLag float64
		eventually(30*time.Second, func() bool {
			buffered, lag = val("herd_archive_buffered_events"), val("herd_archive_consumer_lag_messages")
			consumerLag = val("herd_stream_consumer_lag_messages", "consumer", "herd-archiver")
			return buffered >= n && lag > 0 && lag == consumerLag
		})
		check("herd_archive_buffered_events", buffered >= n, "= %v with %d events in open files", buffered, n)
		check("herd_archive_consumer_lag_messages", lag > 0 && lag == consumerLag,
			"= %v, JetStream says the archiver has %v messages to finish", lag, consumerLag)
		check("herd_stream_consumer_lag_messages", consumerLag > 0, "herd-archiver's backlog is %v while it holds everything", consumerLag)
	})
	if t.Failed() {
		return
	}

	t.Run("archiver yields, then writes its files", func(t *testing.T) {
		r.yield.Store(true)
		waitFor(t, 10*time.Second, "herd_archive_yielding is 1", func() bool { return val("herd_archive_yielding") == 1 })
		r.yield.Store(false)
		waitFor(t, 10*time.Second, "herd_archive_yielding is 0 again", func() bool { return val("herd_archive_yielding") == 0 })
		moved["herd_archive_yielding"] = true

		held := val("herd_archive_buffered_events")
		before := val("herd_archive_rows_total")
		if err := r.stopArchiver(); err != nil {
			t.Fatalf("stop the archiver: %v", err)
		}
		check("herd_archive_buffered_events", val("herd_archive_buffered_events") == 0,
			"= %v after the archiver wrote its files; want 0", val("herd_archive_buffered_events"))
		check("herd_archive_rows_total", val("herd_archive_rows_total")-before == held,
			"rose by %v, want the %v events that were buffered", val("herd_archive_rows_total")-before, held)
		waitFor(t, 10*time.Second, "herd-archiver's backlog is 0 once its files are written", func() bool {
			return val("herd_stream_consumer_lag_messages", "consumer", "herd-archiver") == 0
		})
	})

	t.Run("writer fails batches, then recovers", func(t *testing.T) {
		before := snap()
		// An operator's constraint that every new event breaks.
		if _, err := r.p.DB.Exec(ctx, `ALTER TABLE herd.events ADD CONSTRAINT operator_check CHECK (message_id NOT LIKE 'failing-%')`); err != nil {
			t.Fatal(err)
		}
		r.batch(t, "failing", 20, nil)
		waitFor(t, 20*time.Second, "herd_writer_failing_batches is above 0", func() bool { return val("herd_writer_failing_batches") > 0 })
		check("herd_writer_errors_total", val("herd_writer_errors_total") > before["writerErrors"], "did not rise while batches fail")
		check("herd_stream_consumer_lag_messages", val("herd_stream_consumer_lag_messages", "consumer", "herd-writer") > 0,
			"herd-writer's backlog is 0 while its batches fail")
		if _, err := r.p.DB.Exec(ctx, `ALTER TABLE herd.events DROP CONSTRAINT operator_check`); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "herd_writer_failing_batches is 0 again", func() bool { return val("herd_writer_failing_batches") == 0 })
		moved["herd_writer_failing_batches"] = true
		waitFor(t, 20*time.Second, "the held events are written", func() bool {
			return r.rows(t, "SELECT count(*) FROM herd.events WHERE message_id LIKE 'failing-%'") == 20
		})
	})

	t.Run("collector rejects, limits and panics", func(t *testing.T) {
		before := snap()
		// Two batches of events with a timestamp that is not one, each
		// carrying 2 KiB: 400 KiB of rejects, past the 256 KiB burst of a
		// source's reject budget.
		pad := strings.Repeat("x", 2048)
		for i := range 2 {
			evs := make([]map[string]any, 100)
			for j := range evs {
				evs[j] = map[string]any{"type": "track", "event": "Bad", "userId": "u", "messageId": fmt.Sprintf("bad-%d-%d", i, j),
					"timestamp": "not a time", "properties": map[string]any{"pad": pad}}
			}
			if st, reply := r.post(t, r.p.WriteKey, "/v1/batch", map[string]any{"batch": evs}); st != 400 {
				t.Fatalf("a batch of refused events: %d %.300s, want 400", st, reply)
			}
		}
		after := snap()
		check("herd_collector_events_total", after["rejected"]-before["rejected"] == 200,
			"rejected rose by %v, want the 200 events sent with a bad timestamp", after["rejected"]-before["rejected"])
		check("herd_collector_rejects_unrecorded_total", after["unrecorded"] > before["unrecorded"],
			"did not rise with 400 KiB of rejects against a 256 KiB budget")

		if st, reply := r.post(t, r.p.WriteKey, "/v1/track", map[string]any{"event": "boom", "userId": "u", "messageId": "boom-1"}); st != 500 {
			t.Fatalf("a request that meets a bug: %d %s, want 500", st, reply)
		}
		check("herd_collector_panics_total", val("herd_collector_panics_total")-before["panics"] == 1,
			"rose by %v after one request met a bug, want 1", val("herd_collector_panics_total")-before["panics"])

		// A source's bucket holds a full batch (collector.MaxBatchEvents);
		// one more than its remaining tokens, then single events, find it
		// empty.
		refused := 0
		evs := make([]map[string]any, collector.MaxBatchEvents)
		for i := range evs {
			evs[i] = map[string]any{"type": "track", "event": "Burst", "userId": "u", "messageId": fmt.Sprintf("burst-batch-%d", i)}
		}
		for i := range 10 {
			body := any(map[string]any{"batch": evs})
			path := "/v1/batch"
			if i > 0 {
				body, path = map[string]any{"event": "Burst", "userId": "u", "messageId": fmt.Sprintf("burst-%d", i)}, "/v1/track"
			}
			if st, _ := r.post(t, r.limited.WriteKey, path, body); st == 429 {
				refused++
			}
		}
		if refused == 0 {
			t.Fatal("a full batch and 9 events at once to a source limited to 1 event a second: none answered 429")
		}
		check("herd_collector_events_total", val("herd_collector_events_total", "result", "rate_limited", "reason", "source")-before["limitedSource"] == float64(refused),
			"rate_limited{reason=source} rose by %v, want the %d requests answered 429",
			val("herd_collector_events_total", "result", "rate_limited", "reason", "source")-before["limitedSource"], refused)
	})

	t.Run("herd check: equal, then a difference", func(t *testing.T) {
		start := float64(time.Now().Unix())
		waitFor(t, 20*time.Second, "a check completes with the stores equal", func() bool {
			return val("herd_check_last_run_timestamp_seconds") >= start && val("herd_check_differences") == 0 &&
				val("herd_check_events", "store", "postgres") > 0
		})
		moved["herd_check_last_run_timestamp_seconds"] = true
		pg := val("herd_check_events", "store", "postgres")
		accepted := val("herd_check_events", "store", "accepted")
		check("herd_check_events", pg == accepted && pg > 0, "postgres %v, accepted %v; want equal and above 0", pg, accepted)
		// An operator deletes rows by hand: herd.events no longer holds
		// what was accepted.
		if _, err := r.p.DB.Exec(ctx, `DELETE FROM herd.events WHERE message_id IN (SELECT message_id FROM herd.events LIMIT 7)`); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "herd_check_differences is above 0", func() bool { return val("herd_check_differences") > 0 })
		moved["herd_check_differences"] = true
		waitFor(t, 20*time.Second, "herd_check_events{store=postgres} falls by the 7 deleted rows", func() bool {
			return val("herd_check_events", "store", "postgres") == pg-7
		})
	})

	for _, n := range used {
		if moved[n] {
			continue
		}
		where, ok := drivenElsewhere[n]
		if !ok {
			t.Errorf("%s: the rules or the dashboard read it, but no test drives it: add it here or to drivenElsewhere", n)
			continue
		}
		checkDrivenElsewhere(t, n, where)
	}
}

// checkDrivenElsewhere fails unless where ("file TestName") is a test
// function that mentions metric.
func checkDrivenElsewhere(t *testing.T, metric, where string) {
	t.Helper()
	file, name, _ := strings.Cut(where, " ")
	src, err := os.ReadFile(file)
	if err != nil {
		t.Errorf("%s is driven by %s, which cannot be read: %v", metric, where, err)
		return
	}
	loc := regexp.MustCompile(`(?m)^func ` + regexp.QuoteMeta(name) + `\(t \*testing\.T\) \{$`).FindIndex(src)
	if loc == nil {
		t.Errorf("%s is driven by %s, which does not exist", metric, where)
		return
	}
	body := src[loc[1]:]
	if end := regexp.MustCompile(`(?m)^}$`).FindIndex(body); end != nil {
		body = body[:end[0]]
	}
	if !strings.Contains(string(body), metric) {
		t.Errorf("%s is driven by %s, which does not mention it", metric, where)
	}
}
