package replicate

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes Status as Prometheus metrics, read on every scrape.
// The caller registers it: reg.MustRegister(replicate.NewCollector(...)).
type Collector struct {
	wh      *pgxpool.Pool
	log     *slog.Logger
	timeout time.Duration

	up, lagBytes, lagSeconds, safeWAL, slotLost *prometheus.Desc
	applyErrors, syncErrors, tableReady, drift  *prometheus.Desc
}

// NewCollector returns a collector for the replications recorded on the
// warehouse wh. A nil log discards.
func NewCollector(wh *pgxpool.Pool, log *slog.Logger) *Collector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sub := []string{"subscription"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("herd_replicate_"+name, help, labels, nil)
	}
	return &Collector{
		wh: wh, log: log, timeout: 10 * time.Second,
		up:          d("healthy", "1 when the replication streams without problems, 0 otherwise (see herd replicate status).", []string{"subscription", "health"}),
		lagBytes:    d("lag_bytes", "WAL written on the source and not yet confirmed by the warehouse.", sub),
		lagSeconds:  d("lag_seconds", "Replay lag of the subscription's WAL sender on the source; while behind, at least the time since the warehouse last confirmed anything.", sub),
		safeWAL:     d("slot_safe_wal_size_bytes", "WAL the source may still write before the slot is lost (max_slot_wal_keep_size).", sub),
		slotLost:    d("slot_lost", "1 when the source invalidated the slot; recover with herd replicate resync --all.", sub),
		applyErrors: d("apply_errors_total", "Errors applying changes on the warehouse (pg_stat_subscription_stats).", sub),
		syncErrors:  d("sync_errors_total", "Errors during initial table copies (pg_stat_subscription_stats).", sub),
		tableReady:  d("table_ready", "1 when the table's initial copy is done and it streams.", []string{"subscription", "table"}),
		drift:       d("drift_reported", "Schema changes on the source herd reported instead of applying.", sub),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.lagBytes, c.lagSeconds, c.safeWAL, c.slotLost, c.applyErrors, c.syncErrors, c.tableReady, c.drift} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	sts, err := Status(ctx, c.wh, "")
	if err != nil {
		c.log.Warn("replicate metrics: read status", "err", err)
		ch <- prometheus.NewInvalidMetric(c.up, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range sts {
		healthy := 0.0
		if s.Health == HealthOK {
			healthy = 1
		}
		gauge(c.up, healthy, s.Name, s.Health)
		if s.Mode != ModeLogical {
			continue
		}
		if s.LagBytes >= 0 {
			gauge(c.lagBytes, float64(s.LagBytes), s.Name)
		}
		if s.LagSeconds >= 0 {
			gauge(c.lagSeconds, s.LagSeconds, s.Name)
		}
		if s.SafeWALSize != nil {
			gauge(c.safeWAL, float64(*s.SafeWALSize), s.Name)
		}
		lost := 0.0
		if s.Health == HealthSlotLost {
			lost = 1
		}
		gauge(c.slotLost, lost, s.Name)
		ch <- prometheus.MustNewConstMetric(c.applyErrors, prometheus.CounterValue, float64(s.ApplyErrors), s.Name)
		ch <- prometheus.MustNewConstMetric(c.syncErrors, prometheus.CounterValue, float64(s.SyncErrors), s.Name)
		for _, t := range s.Tables {
			ready := 0.0
			if t.State == "ready" {
				ready = 1
			}
			gauge(c.tableReady, ready, s.Name, t.Table)
		}
		n := 0
		for _, d := range s.Drift {
			if d.State == "reported" {
				n++
			}
		}
		gauge(c.drift, float64(n), s.Name)
	}
}
