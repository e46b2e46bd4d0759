// Package enrich derives the columns that need more than the event body:
// browser, OS, device type and bot flag from the user agent, country,
// region, city and network from MaxMind databases, and the referrer class.
// It runs in-process in the collector (it implements collector.Enricher).
package enrich

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/herdhq/herd"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures an Enricher. The zero value parses user agents and
// classifies referrers, without geo.
type Config struct {
	// GeoIPDB is a MaxMind-format City or Country database (GeoLite2 or
	// GeoIP2). Empty: the geo columns stay NULL.
	GeoIPDB string
	// ASNDB is an optional MaxMind-format ASN database.
	ASNDB string
	// ReloadEvery is how often the database files are checked for a new
	// version (modification time and size). Default 5s.
	ReloadEvery time.Duration
	// UACacheSize and GeoCacheSize bound the parse and lookup caches, in
	// entries. Default 20000 and 50000.
	UACacheSize, GeoCacheSize int
}

func (c *Config) defaults() {
	if c.ReloadEvery <= 0 {
		c.ReloadEvery = 5 * time.Second
	}
	if c.UACacheSize <= 0 {
		c.UACacheSize = 20000
	}
	if c.GeoCacheSize <= 0 {
		c.GeoCacheSize = 50000
	}
}

// Enricher fills the user agent, bot, geo and referrer columns of events.
// It is safe for concurrent use.
type Enricher struct {
	cfg Config
	log *slog.Logger
	m   *metrics
	uas *cache[uaInfo]
	geo atomic.Pointer[geoState] // nil without a database
}

type metrics struct {
	bots    *prometheus.CounterVec
	reloads prometheus.Counter
}

// New builds an Enricher, loading the geo databases named in cfg. A named
// database that cannot be loaded is an error: the operator asked for it.
// Run must be called for the databases to be reloaded when they change.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Enricher, error) {
	cfg.defaults()
	e := &Enricher{cfg: cfg, log: log, uas: newCache[uaInfo](cfg.UACacheSize), m: &metrics{
		bots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_collector_bot_events_total", Help: "Events flagged as coming from a bot, by reason.",
		}, []string{"reason"}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_collector_geo_reloads_total", Help: "Geo databases reloaded after their file changed.",
		}),
	}}
	if reg != nil {
		if err := reg.Register(e.m.bots); err != nil {
			return nil, fmt.Errorf("register enrichment metrics: %w", err)
		}
		if err := reg.Register(e.m.reloads); err != nil {
			return nil, fmt.Errorf("register enrichment metrics: %w", err)
		}
	}
	if cfg.GeoIPDB == "" && cfg.ASNDB == "" {
		log.Info("no geo database: country, region and city stay NULL (set --geoip-db to a MaxMind City or Country database)")
		return e, nil
	}
	st := &geoState{cache: newCache[geoInfo](cfg.GeoCacheSize)}
	var err error
	if cfg.GeoIPDB != "" {
		if st.loc, err = loadDB(cfg.GeoIPDB, false); err != nil {
			return nil, err
		}
	} else {
		log.Info("no geo database: country, region and city stay NULL (set --geoip-db to a MaxMind City or Country database)")
	}
	if cfg.ASNDB != "" {
		if st.asn, err = loadDB(cfg.ASNDB, true); err != nil {
			return nil, err
		}
	}
	e.geo.Store(st)
	return e, nil
}

// Run watches the database files and reloads them when they change, until
// ctx ends. Without databases it returns at once.
func (e *Enricher) Run(ctx context.Context) error {
	if e.geo.Load() == nil {
		return nil
	}
	e.watch(ctx)
	return nil
}

// Enrich fills the derived columns of ev. The collector has already set the
// page fields, utm_*, click ids, the client IP (anonymised when asked) and
// the user agent. Enrichment never refuses an event: what cannot be derived
// stays empty.
func (e *Enricher) Enrich(ev *herd.Event) {
	en := &ev.Enrichment
	if en.UserAgent != "" {
		ua := e.userAgent(en.UserAgent)
		en.Browser, en.BrowserVersion, en.OS, en.OSVersion, en.DeviceType = ua.browser, ua.version, ua.os, ua.osVersion, ua.device
		if ua.botReason != "" {
			en.IsBot, en.BotReason = true, ua.botReason
		} else if ua.browserLike && en.LibraryName == "" && en.URL == "" && (ev.Type == herd.TypePage || ev.Type == herd.TypeTrack) {
			// Browser SDKs always send context.library and the page URL; a
			// browser agent without either is a script wearing its clothes.
			en.IsBot, en.BotReason, en.DeviceType = true, BotPattern, DeviceBot
		}
	}
	if en.IsBot {
		e.m.bots.WithLabelValues(en.BotReason).Inc()
	}
	if g, ok := e.lookupGeo(en.IP); ok {
		en.Country, en.Region, en.City, en.ASN, en.ASOrg = g.country, g.region, g.city, g.asn, g.asOrg
	}
	classify(en)
}
