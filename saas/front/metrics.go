package front

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests    *prometheus.CounterVec
	retries     prometheus.Counter
	rows        *prometheus.CounterVec
	events      *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_front_api_requests_total",
			Help: "Requests to the Front API by status code (0: network error), retries included.",
		}, []string{"code"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_front_api_retries_total",
			Help: "Front API requests retried after a 429, a 5xx or a network error.",
		}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_front_rows_written_total",
			Help: "Rows written under the front schema, by table.",
		}, []string{"object"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_front_events_total",
			Help: "Front events handled, by path (api, webhook) and outcome (applied, stale, ignored, duplicate).",
		}, []string{"via", "outcome"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_front_last_success_timestamp_seconds",
			Help: "When the last incremental Front sync pass finished.",
		}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.retries = register(reg, m.retries)
		m.rows = register(reg, m.rows)
		m.events = register(reg, m.events)
		m.lastSuccess = register(reg, m.lastSuccess)
	}
	return m
}

// register registers c, or returns the collector already registered under
// its name, so that a second Syncer in one process shares the metrics.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("herd_front metrics: " + err.Error())
	}
	return c
}
