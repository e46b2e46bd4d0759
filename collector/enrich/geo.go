package enrich

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/oschwald/geoip2-golang"
)

// geoInfo is what the databases say about one address.
type geoInfo struct {
	country, region, city string
	asn                   int64
	asOrg                 string
}

// geoDB is one loaded MaxMind database and the file version it came from.
type geoDB struct {
	r       *geoip2.Reader
	city    bool // a City (or Enterprise) database; otherwise Country
	modTime time.Time
	size    int64
}

// geoState is swapped as a whole when a database file changes, so that a
// lookup never mixes two versions and the per-address cache is dropped with
// the data it was filled from.
type geoState struct {
	loc, asn *geoDB
	cache    *cache[geoInfo]
}

// loadDB reads a database file into memory. Reading rather than mapping
// the file keeps lookups safe when the file is overwritten in place, which
// the usual update tools do; a City database is some tens of megabytes.
func loadDB(path string, wantASN bool) (*geoDB, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("geo database %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read geo database %s: %w", path, err)
	}
	r, err := geoip2.FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("open geo database %s: %w", path, err)
	}
	typ := r.Metadata().DatabaseType
	db := &geoDB{r: r, modTime: st.ModTime(), size: st.Size()}
	switch {
	case wantASN && strings.Contains(typ, "ASN"):
	case wantASN:
		return nil, fmt.Errorf("geo database %s is %q, want an ASN database", path, typ)
	case strings.Contains(typ, "City"), strings.Contains(typ, "Enterprise"):
		db.city = true
	case strings.Contains(typ, "Country"):
	default:
		return nil, fmt.Errorf("geo database %s is %q, want a City or Country database", path, typ)
	}
	return db, nil
}

// changed reports whether the file at path differs from the loaded one.
func (db *geoDB) changed(path string) bool {
	st, err := os.Stat(path)
	if err != nil {
		// Missing during a replace: keep what we have, look again later.
		return false
	}
	return db == nil || !st.ModTime().Equal(db.modTime) || st.Size() != db.size
}

// lookupGeo fills the geo columns for ip, through the cache.
func (e *Enricher) lookupGeo(ip string) (geoInfo, bool) {
	st := e.geo.Load()
	if st == nil || ip == "" {
		return geoInfo{}, false
	}
	if g, ok := st.cache.get(ip); ok {
		return g, true
	}
	var g geoInfo
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return g, false
	}
	if a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
		st.cache.put(ip, g)
		return g, true
	}
	nip := net.IP(a.AsSlice())
	if st.loc != nil {
		if st.loc.city {
			if c, err := st.loc.r.City(nip); err == nil {
				g.country = c.Country.IsoCode
				if g.country == "" {
					g.country = c.RegisteredCountry.IsoCode
				}
				if len(c.Subdivisions) > 0 {
					g.region = first(c.Subdivisions[0].Names["en"], c.Subdivisions[0].IsoCode)
				}
				g.city = c.City.Names["en"]
			}
		} else if c, err := st.loc.r.Country(nip); err == nil {
			g.country = first(c.Country.IsoCode, c.RegisteredCountry.IsoCode)
		}
	}
	if st.asn != nil {
		if r, err := st.asn.r.ASN(nip); err == nil {
			g.asn, g.asOrg = int64(r.AutonomousSystemNumber), r.AutonomousSystemOrganization
		}
	}
	st.cache.put(ip, g)
	return g, true
}

// watch reloads the databases when their files change, until ctx ends.
func (e *Enricher) watch(ctx context.Context) {
	t := time.NewTicker(e.cfg.ReloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.reload()
		}
	}
}

// reload swaps in new versions of the changed files. A file that fails to
// load (half written, corrupt) leaves the current data in place and is tried
// again on the next tick, since its recorded version is not updated.
func (e *Enricher) reload() {
	cur := e.geo.Load()
	if cur == nil {
		return
	}
	next := &geoState{loc: cur.loc, asn: cur.asn}
	swapped := false
	if e.cfg.GeoIPDB != "" && cur.loc.changed(e.cfg.GeoIPDB) {
		db, err := loadDB(e.cfg.GeoIPDB, false)
		if err != nil {
			e.log.Warn("geo database changed but cannot be loaded; keeping the previous one", "err", err)
		} else {
			next.loc, swapped = db, true
		}
	}
	if e.cfg.ASNDB != "" && cur.asn.changed(e.cfg.ASNDB) {
		db, err := loadDB(e.cfg.ASNDB, true)
		if err != nil {
			e.log.Warn("ASN database changed but cannot be loaded; keeping the previous one", "err", err)
		} else {
			next.asn, swapped = db, true
		}
	}
	if !swapped {
		return
	}
	next.cache = newCache[geoInfo](e.cfg.GeoCacheSize)
	e.geo.Store(next)
	e.m.reloads.Inc()
	e.log.Info("geo database reloaded", "geoip_db", e.cfg.GeoIPDB, "asn_db", e.cfg.ASNDB)
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
