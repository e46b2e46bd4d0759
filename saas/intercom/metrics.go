package intercom

import (
	"github.com/herdhq/herd/saas"
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
		m.requests = saas.Register(reg, m.requests)
		m.retries = saas.Register(reg, m.retries)
		m.rows = saas.Register(reg, m.rows)
		m.webhooks = saas.Register(reg, m.webhooks)
		m.lastSuccess = saas.Register(reg, m.lastSuccess)
	}
	return m
}
