package stream

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes the events stream's depth and its durable consumers'
// backlog, read from JetStream on every scrape: what the collector has
// stored and the writer and archiver have not finished. The caller
// registers it: reg.MustRegister(stream.NewCollector(js, cfg, log)).
//
// When JetStream does not answer, herd_stream_up is 0 and the other
// metrics are left out, so that the rest of /metrics still scrapes.
type Collector struct {
	js      jetstream.JetStream
	cfg     Config
	log     *slog.Logger
	timeout time.Duration

	up, messages, bytes, maxBytes, consumerLag, consumerAckPending *prometheus.Desc
}

// NewCollector returns a collector for the stream cfg names. A nil log
// discards.
func NewCollector(js jetstream.JetStream, cfg Config, log *slog.Logger) *Collector {
	cfg.Defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cons := []string{"consumer"}
	return &Collector{
		js: js, cfg: cfg, log: log, timeout: 5 * time.Second,
		up:       prometheus.NewDesc("herd_stream_up", "1 when JetStream answered for the events stream at this scrape, 0 otherwise.", nil, nil),
		messages: prometheus.NewDesc("herd_stream_messages", "Messages held by the events stream (events and frames not yet trimmed).", nil, nil),
		bytes:    prometheus.NewDesc("herd_stream_bytes", "Bytes held by the events stream.", nil, nil),
		maxBytes: prometheus.NewDesc("herd_stream_max_bytes", "The events stream's size limit; past it the collector's publishes are refused (503).", nil, nil),
		consumerLag: prometheus.NewDesc("herd_stream_consumer_lag_messages",
			"Stream messages a durable consumer (herd-writer, herd-archiver) has not finished: not yet delivered plus delivered and not acknowledged.", cons, nil),
		consumerAckPending: prometheus.NewDesc("herd_stream_consumer_ack_pending_messages",
			"Messages delivered to a durable consumer and not yet acknowledged (held in a batch or an open lake file).", cons, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.messages, c.bytes, c.maxBytes, c.consumerLag, c.consumerAckPending} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	s, err := c.js.Stream(ctx, c.cfg.Name)
	var info *jetstream.StreamInfo
	if err == nil {
		info, err = s.Info(ctx)
	}
	if err != nil {
		c.log.Warn("stream metrics: read stream info; herd_stream_up is 0", "stream", c.cfg.Name, "err", err)
		gauge(c.up, 0)
		return
	}
	gauge(c.up, 1)
	gauge(c.messages, float64(info.State.Msgs))
	gauge(c.bytes, float64(info.State.Bytes))
	gauge(c.maxBytes, float64(info.Config.MaxBytes))
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		if ci.Config.Durable == "" {
			continue // ephemeral readers (replay, repair) come and go
		}
		gauge(c.consumerLag, float64(ci.NumPending+uint64(ci.NumAckPending)), ci.Name)
		gauge(c.consumerAckPending, float64(ci.NumAckPending), ci.Name)
	}
	if err := lister.Err(); err != nil {
		c.log.Warn("stream metrics: list consumers", "stream", c.cfg.Name, "err", err)
	}
}
