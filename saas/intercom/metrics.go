package intercom

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests    *prometheus.CounterVec
	retries     prometheus.Counter
	rows        *prometheus.CounterVec
	webhooks    *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_intercom_api_requests_total",
			Help: "Requests to the Intercom API by status code (0: network error), retries included.",
		}, []string{"code"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_intercom_api_retries_total",
			Help: "Intercom API requests retried after a 429, a 5xx or a network error.",
		}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_intercom_rows_written_total",
			Help: "Rows written under the intercom schema, by table.",
		}, []string{"object"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_intercom_webhooks_total",
			Help: "Intercom notifications handled, by outcome (applied, ignored, failed).",
		}, []string{"outcome"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_intercom_last_success_timestamp_seconds",
			Help: "When the last Intercom sync pass finished.",
		}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.retries = register(reg, m.retries)
		m.rows = register(reg, m.rows)
		m.webhooks = register(reg, m.webhooks)
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
		panic("herd_intercom metrics: " + err.Error())
	}
	return c
}
