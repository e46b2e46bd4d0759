package salesforce

import (
	"github.com/herdhq/herd/saas"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests    *prometheus.CounterVec
	retries     prometheus.Counter
	rows        *prometheus.CounterVec
	tokens      prometheus.Counter
	lastSuccess prometheus.Gauge
	apiUsed     *budget // read by the usage gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_salesforce_api_requests_total",
			Help: "Requests to the Salesforce API by status code (0: network error), retries included.",
		}, []string{"code"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_salesforce_api_retries_total",
			Help: "Salesforce API requests retried after a 429, a 5xx or a network error.",
		}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_salesforce_rows_written_total",
			Help: "Rows written under the salesforce schema, by object.",
		}, []string{"object"}),
		tokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_salesforce_token_renewals_total",
			Help: "Access tokens obtained from Salesforce's token endpoint (first sign-in, expiry, or an expired session).",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_salesforce_last_success_timestamp_seconds",
			Help: "When the last Salesforce sync pass finished without error.",
		}),
	}
	if reg != nil {
		m.requests = saas.Register(reg, m.requests)
		m.retries = saas.Register(reg, m.retries)
		m.rows = saas.Register(reg, m.rows)
		m.tokens = saas.Register(reg, m.tokens)
		m.lastSuccess = saas.Register(reg, m.lastSuccess)
		saas.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herd_salesforce_api_usage_ratio",
			Help: "Share of the org's DailyApiRequests used, as last read from Salesforce (all clients, not only herd).",
		}, func() float64 {
			b := m.apiUsed
			if b == nil {
				return 0
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.max <= 0 {
				return 0
			}
			return float64(b.used) / float64(b.max)
		}))
	}
	return m
}
