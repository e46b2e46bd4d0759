package saas

import (
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Progress reports a backfill of one object as it goes: a log line at most
// every Every with the rows so far, the rate, and, when the API gave a total,
// the share done and an estimate of the time left; and one line at the end.
type Progress struct {
	Log    *slog.Logger
	Source string // "intercom"
	Object string // "contacts"
	Every  time.Duration

	mu          sync.Mutex
	start, last time.Time
	rows, total int64
	startRows   int64 // rows an earlier run loaded: not part of the rate
	now         func() time.Time
}

// NewProgress starts reporting the backfill of object. total is what the
// API says there is (0: unknown); rows counts what an earlier, interrupted
// run already loaded.
func NewProgress(log *slog.Logger, source, object string, total, rows int64) *Progress {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Progress{Log: log, Source: source, Object: object, Every: 10 * time.Second, total: total, rows: rows, startRows: rows, now: time.Now}
	p.start = p.now()
	p.last = p.start
	return p
}

// SetTotal records the total the API gave once it is known.
func (p *Progress) SetTotal(total int64) {
	p.mu.Lock()
	p.total = total
	p.mu.Unlock()
}

// Add counts n more rows written, and logs when Every has passed.
func (p *Progress) Add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rows += int64(n)
	now := p.now()
	if now.Sub(p.last) < p.Every {
		return
	}
	p.last = now
	p.Log.Info("backfill in progress", p.attrs(now)...)
}

// Rows is how many rows were counted so far.
func (p *Progress) Rows() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rows
}

// Done logs the end of the object's backfill.
func (p *Progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Log.Info("backfill done", p.attrs(p.now())...)
}

func (p *Progress) attrs(now time.Time) []any {
	elapsed := now.Sub(p.start)
	a := []any{"source", p.Source, "object", p.Object, "rows", p.rows, "elapsed", elapsed.Round(time.Second)}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.rows-p.startRows) / elapsed.Seconds()
		a = append(a, "rows_per_s", int64(rate))
	}
	if p.total > 0 {
		a = append(a, "total", p.total, "percent", min(100, 100*p.rows/p.total))
		if left := p.total - p.rows; left > 0 && rate > 0 {
			a = append(a, "eta", (time.Duration(float64(left)/rate) * time.Second).Round(time.Second))
		}
	}
	return a
}

// Freshness publishes how fresh a connector's tables are:
// herd_saas_lag_seconds{source} is the age of the instant before which every
// change the source made is in the warehouse (the oldest synced_until of its
// objects), and herd_saas_newest_change_age_seconds{source} the age of the
// newest change applied (its updated_at in the source). Both grow while
// nothing is applied; the first only while passes fail or lag.
type Freshness struct {
	mu            sync.Mutex
	syncedUntil   time.Time
	newestApplied time.Time
	now           func() time.Time
}

var (
	freshnessMu sync.Mutex
	freshness   = map[prometheus.Registerer]map[string]*Freshness{}
)

// NewFreshness returns source's Freshness, registered on reg (nil: not
// exported). Connectors of one name in one process share it.
func NewFreshness(reg prometheus.Registerer, source string) *Freshness {
	if reg == nil {
		return &Freshness{now: time.Now}
	}
	freshnessMu.Lock()
	defer freshnessMu.Unlock()
	if f := freshness[reg][source]; f != nil {
		return f
	}
	f := &Freshness{now: time.Now}
	labels := prometheus.Labels{"source": source}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "herd_saas_lag_seconds",
		Help:        "Age of the instant before which every change in the SaaS source is in the warehouse (NaN before the first incremental pass).",
		ConstLabels: labels,
	}, func() float64 { return f.age(func(f *Freshness) time.Time { return f.syncedUntil }) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "herd_saas_newest_change_age_seconds",
		Help:        "Age of the newest change applied from the SaaS source, by the source's own updated time (NaN before any).",
		ConstLabels: labels,
	}, func() float64 { return f.age(func(f *Freshness) time.Time { return f.newestApplied }) }))
	if freshness[reg] == nil {
		freshness[reg] = map[string]*Freshness{}
	}
	freshness[reg][source] = f
	return f
}

func (f *Freshness) age(of func(*Freshness) time.Time) float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := of(f)
	if t.IsZero() {
		return math.NaN()
	}
	return f.now().Sub(t).Seconds()
}

// SyncedUntil records that every change before t is in the warehouse.
func (f *Freshness) SyncedUntil(t time.Time) {
	f.mu.Lock()
	if t.After(f.syncedUntil) {
		f.syncedUntil = t
	}
	f.mu.Unlock()
}

// Applied records a change applied, by the source's updated time.
func (f *Freshness) Applied(updated time.Time) {
	f.mu.Lock()
	if updated.After(f.newestApplied) {
		f.newestApplied = updated
	}
	f.mu.Unlock()
}
