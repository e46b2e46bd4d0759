package archive

import "github.com/prometheus/client_golang/prometheus"

// The operations herd_archive_errors_total counts failures of, its only
// label values: a fixed set, so a failing lake cannot grow one series per
// file (the file or partition goes to the log line instead).
const (
	opStore    = "store"    // put a Parquet file
	opManifest = "manifest" // read or write a partition's manifest
	opLoad     = "load"     // load a partition's manifest on first use
	opCheck    = "check"    // look for a redelivered message in stored files
	opLedger   = "ledger"   // read herd.privacy_erased before storing
	opGaps     = "gaps"     // take the stream's recorded gaps into the lake
	opRepair   = "repair"   // repair recorded gaps
	opList     = "list"     // list the lake's partitions
	opCompact  = "compact"  // compact a closed partition
	opErase    = "erase"    // serve a privacy erasure
	opLease    = "lease"    // renew or drop the archiver's lease file
)

var errorOps = []string{opStore, opManifest, opLoad, opCheck, opLedger, opGaps, opRepair, opList, opCompact, opErase, opLease}

type metrics struct {
	files        prometheus.Counter
	rows         prometheus.Counter
	bytes        prometheus.Counter
	writeSeconds prometheus.Histogram
	errors       *prometheus.CounterVec
	skipped      prometheus.Counter
	undecodable  prometheus.Counter
	buffered     prometheus.Gauge
	lag          prometheus.Gauge
	yielding     prometheus.Gauge
	gaps         prometheus.Counter
	repaired     *prometheus.CounterVec
	compactions  prometheus.Counter
	duplicates   prometheus.Counter
	erased       prometheus.Counter
	repairSkip   *prometheus.CounterVec
	ledgerDrop   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		files: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_archive_files_total", Help: "Parquet files written to the lake.",
		}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_archive_rows_total", Help: "Events written to the lake.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_archive_bytes_total", Help: "Bytes of Parquet written to the lake.",
		}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herd_archive_write_seconds", Help: "Time to encode and store one file and its manifest.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_archive_errors_total", Help: "Failed lake operations (most retried), by operation: store, manifest, load, check, ledger, gaps, repair, list, compact, erase, lease.",
		}, []string{"op"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_archive_redelivered_skipped_total", Help: "Redelivered events found already archived and acked without rewriting.",
		}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_archive_undecodable_total", Help: "Stream messages that are not events (the writer records them in herd.rejects).",
		}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_archive_buffered_events", Help: "Events held in open files, not yet acked.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_archive_consumer_lag_messages", Help: "Stream messages not yet archived (pending plus unacknowledged).",
		}),
		yielding: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_archive_yielding", Help: "1 while the archiver stands aside because the Postgres writer is far behind.",
		}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_archive_gaps_total", Help: "Ranges of events the stream trimmed before the archiver had them (recorded in the lake's _gaps.json until repaired).",
		}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_archive_repaired_rows_total", Help: "Events a gap repair added to the lake, by where it found them (stream, postgres).",
		}, []string{"from"}),
		compactions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_archive_compactions_total", Help: "Closed partitions compacted into one sorted, deduplicated file.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_archive_duplicates_dropped_total", Help: "Second copies of a message id (client retries, redeliveries) that compaction dropped.",
		}),
		erased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_archive_erased_rows_total", Help: "Events removed from the lake by privacy deletions the archiver served.",
		}),
		repairSkip: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_archive_repair_skipped_total", Help: "Events a gap repair found but left out of the lake: erased by a privacy request, or of a suppressed person.",
		}, []string{"reason"}),
		ledgerDrop: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_archive_ledger_dropped_total", Help: "Events the archiver or a compaction left out of the lake on the warehouse's word: erased (herd.privacy_erased), ledger (herd.message_ids names another copy), rejected (refused by the writer, never stored).",
		}, []string{"reason"}),
	}
	for _, op := range errorOps {
		m.errors.WithLabelValues(op)
	}
	for _, r := range []string{dropErased, dropElsewhere, dropRejected} {
		m.ledgerDrop.WithLabelValues(r)
	}
	for _, r := range []string{"erased", "suppressed"} {
		m.repairSkip.WithLabelValues(r)
	}
	for _, from := range []string{ProvStream, ProvPostgres} {
		m.repaired.WithLabelValues(from)
	}
	if reg != nil {
		reg.MustRegister(m.files, m.rows, m.bytes, m.writeSeconds, m.errors, m.skipped, m.undecodable, m.buffered, m.lag, m.yielding,
			m.gaps, m.repaired, m.compactions, m.duplicates, m.erased, m.repairSkip, m.ledgerDrop)
	}
	return m
}
