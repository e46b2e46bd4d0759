package stripe

import (
	"github.com/herdhq/herd/saas"
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
			Name: "herd_stripe_api_requests_total",
			Help: "Requests to the Stripe API by status code (0: network error), retries included.",
		}, []string{"code"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_stripe_api_retries_total",
			Help: "Stripe API requests retried after a 429, a 5xx or a network error.",
		}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_stripe_rows_written_total",
			Help: "Rows written under the stripe schema, by table.",
		}, []string{"object"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_stripe_events_total",
			Help: "Stripe events handled, by path (api, webhook) and outcome (applied, stale, ignored, duplicate).",
		}, []string{"via", "outcome"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_stripe_last_success_timestamp_seconds",
			Help: "When the last incremental Stripe sync pass finished.",
		}),
	}
	if reg != nil {
		m.requests = saas.Register(reg, m.requests)
		m.retries = saas.Register(reg, m.retries)
		m.rows = saas.Register(reg, m.rows)
		m.events = saas.Register(reg, m.events)
		m.lastSuccess = saas.Register(reg, m.lastSuccess)
	}
	return m
}
