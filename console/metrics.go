package console

import "github.com/prometheus/client_golang/prometheus"

// metrics are the console's Prometheus metrics.
type metrics struct {
	signIns  *prometheus.CounterVec // by result: ok, refused, limited, unavailable
	sessions prometheus.GaugeFunc
	viewers  prometheus.GaugeFunc
	queries  *prometheus.CounterVec // /api/query by result: ok, error
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_console_sign_ins_total", Help: "Console sign-in attempts by result: ok, refused (wrong user or password), limited (429), unavailable.",
		}, []string{"result"}),
		sessions: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herd_console_sessions", Help: "Open console sessions, each holding one Postgres connection as its user.",
		}, func() float64 { return float64(s.sessions.count()) }),
		viewers: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herd_console_live_streams", Help: "Open live-event streams.",
		}, func() float64 { return float64(s.live.count()) }),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_console_queries_total", Help: "Queries run in the console by result: ok, error.",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.signIns, m.sessions, m.viewers, m.queries)
	}
	return m
}
