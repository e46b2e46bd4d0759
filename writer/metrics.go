package writer

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	batchSize    prometheus.Histogram
	copySeconds  prometheus.Histogram
	rows         *prometheus.CounterVec
	duplicates   prometheus.Counter
	lag          prometheus.Histogram
	redeliveries prometheus.Counter
	errors       prometheus.Counter
	failures     *prometheus.CounterVec
	failing      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herd_writer_batch_size", Help: "Events per committed batch (a stream message may hold several).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		copySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herd_writer_commit_seconds", Help: "Time to COPY and commit one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_writer_rows_total", Help: "Rows written, by table.",
		}, []string{"table"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_writer_duplicates_total", Help: "Events skipped because their messageId was already stored.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herd_writer_receive_to_commit_seconds", Help: "From the collector receiving an event to its commit in Postgres.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_writer_redeliveries_total", Help: "Messages delivered more than once by JetStream.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_writer_errors_total", Help: "Failed batch writes (retried).",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_writer_batch_failures_total",
			Help: "Failed batch writes by reason (partition, constraint, schema, data, connection, resources, shutdown, conflict, other); the batch stays in the stream and is retried, never rejected.",
		}, []string{"reason"}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_writer_failing_batches",
			Help: "Batches whose write currently fails and is being retried; above 0 for long, the writer is stuck and the log says why.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.batchSize, m.copySeconds, m.rows, m.duplicates, m.lag, m.redeliveries, m.errors, m.failures, m.failing)
	}
	return m
}
