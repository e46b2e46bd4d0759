package collector

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// routeCache caches the request counter and duration histogram of each
// route and status: a vector's WithLabelValues hashes its labels, takes a
// lock and (for the status) formats a number on every request.
type routeCache struct {
	m        *metrics
	counters sync.Map // routeStatus → prometheus.Counter
	timers   sync.Map // route label → prometheus.Observer
}

type routeStatus struct {
	route  string
	status int
}

func (r *routeCache) request(route string, status int) prometheus.Counter {
	k := routeStatus{route, status}
	if c, ok := r.counters.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c, _ := r.counters.LoadOrStore(k, r.m.requests.WithLabelValues(route, strconv.Itoa(status)))
	return c.(prometheus.Counter)
}

func (r *routeCache) duration(route string) prometheus.Observer {
	if o, ok := r.timers.Load(route); ok {
		return o.(prometheus.Observer)
	}
	o, _ := r.timers.LoadOrStore(route, r.m.duration.WithLabelValues(route))
	return o.(prometheus.Observer)
}
