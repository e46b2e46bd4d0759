package collector

import (
	"errors"
	"strings"

	"github.com/herdhq/herd"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	events   *prometheus.CounterVec
	publish  prometheus.Histogram
	// overBudget counts events refused because their request had stored
	// its budget (see storeBudget).
	overBudget prometheus.Counter
	// unrecorded counts rejects past their source's reject budget.
	unrecorded prometheus.Counter
	// decompressed counts what gzip bodies decompress to.
	decompressed prometheus.Counter
	// frameEvents is how many events share a stream message: 1 when idle,
	// more as concurrent requests ride the same frame.
	frameEvents prometheus.Histogram
	// panics counts requests answered 500 because handling them panicked.
	panics prometheus.Counter
	// connsRefused counts connections closed for MaxConnsPerClient;
	// busy counts requests answered 503 for want of decode room.
	connsRefused prometheus.Counter
	busy         prometheus.Counter
	// streamWaits counts requests that waited for the stream byte rate.
	streamWaits prometheus.Counter
	// routes caches requests' and duration's children.
	routes routeCache
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_collector_requests_total", Help: "HTTP requests by route and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herd_collector_request_duration_seconds", Help: "Time to answer a request, by route.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 3},
		}, []string{"route"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_collector_events_total", Help: "Events accepted, and rejected by reason.",
		}, []string{"result", "reason"}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herd_collector_publish_seconds", Help: "Time from first publish to the last JetStream acknowledgement of a request.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .5, 1, 3},
		}),
		streamWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_collector_stream_rate_waits_total",
			Help: "Requests that waited for the stream byte rate the memory budget sets before they were published.",
		}),
		overBudget: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_collector_over_budget_events_total", Help: "Events refused because their request would have stored more than its budget (twice its body, plus 512 bytes an event and 64 KiB).",
		}),
		unrecorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_collector_rejects_unrecorded_total", Help: "Refused events and requests not recorded in herd.rejects because their source was over its reject budget (a summary reject records how many).",
		}),
		decompressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_collector_decompressed_bytes_total", Help: "Bytes produced by decompressing request bodies.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_collector_panics_total", Help: "Requests answered 500 because herd failed while handling them (a bug: the log holds the stack).",
		}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_collector_conns_refused_total", Help: "Connections closed at once because their client network held as many open as allowed (MaxConnsPerClient).",
		}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_collector_busy_requests_total", Help: "Requests answered 503 because the bodies being decoded filled the collector's decode room (DecodeBytes) for longer than DecodeWait.",
		}),
		frameEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herd_collector_frame_events", Help: "Events per stream message (frame): requests arriving while earlier frames await JetStream share the next.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.events, m.publish, m.frameEvents, m.overBudget, m.unrecorded, m.decompressed, m.panics, m.connsRefused, m.busy, m.streamWaits)
	}
	m.routes.m = m
	return m
}

// reasonCode maps a refusal to a small set of metric labels.
func reasonCode(err error) string {
	if errors.Is(err, herd.ErrTooLarge) {
		return "too_large"
	}
	s := err.Error()
	switch {
	case strings.Contains(s, "limit is"):
		return "too_large"
	case strings.Contains(s, "timestamp"), strings.Contains(s, "sentAt"):
		return "timestamp"
	case strings.Contains(s, "UTF-8"), strings.Contains(s, "NUL"):
		return "encoding"
	case strings.Contains(s, "JSON"), strings.Contains(s, "gzip"), strings.Contains(s, "nests"):
		return "malformed"
	}
	return "invalid"
}
