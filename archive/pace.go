package archive

import (
	"context"
	"runtime"
	"time"
)

// Encoding a lake file (decoding the held events, building Parquet pages,
// zstd) is a second or so of one core for a full file. Run in one go it took
// a core from the collector's requests exactly when they arrived fastest (a
// file fills fastest then), and the reply tail showed it. A pacer spreads
// that work out: it runs in slices of about a millisecond, gives the
// processor back after each (runtime.Gosched, so waiting request goroutines
// run first), and pauses between slices so that, over time, the encoding
// takes at most its share of one core. The file is the same; it is only
// written more slowly, well within what the archiver has to keep up with
// (at 10,000 events/s a file's worth of events arrives in 10 s; at a
// quarter of a core it is encoded in a few).

// DefaultEncodeShare is Config.EncodeShare's default.
const DefaultEncodeShare = 0.25

// paceSlice is how long encoding runs before it yields.
const paceSlice = time.Millisecond

// maxSlice bounds what one step counts as work: a longer gap since the
// last step is the goroutine kept off the processor or idle, and paying for
// it in full would pause a flush for minutes after a quiet spell.
const maxSlice = 20 * paceSlice

// pacer paces one goroutine's CPU-bound work. The zero value (and nil) only
// yields.
type pacer struct {
	share float64 // of one core; 0 or >= 1: yield only, no pauses
	began time.Time
	now   func() time.Time    // time.Now; tests replace it
	sleep func(time.Duration) // a pause that ends with the pacer's context; tests replace it
	slept time.Duration       // total paused, for tests and metrics
}

// newPacer paces at share of a core; its pauses end when ctx does, so
// that a stopping archiver drains at once.
func newPacer(ctx context.Context, share float64) *pacer {
	return &pacer{share: share, now: time.Now, sleep: func(d time.Duration) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}}
}

// start marks the beginning of a unit of work (a file's encoding): the
// time before it, idle or not, is not paid for.
func (p *pacer) start() {
	if p != nil {
		p.began = p.now()
	}
}

// step marks a point where the work may be paused: between small units (a
// few hundred rows). It costs a clock read.
func (p *pacer) step() {
	if p == nil {
		return
	}
	now := p.now()
	if p.began.IsZero() {
		p.began = now
		return
	}
	ran := min(now.Sub(p.began), maxSlice)
	if ran < paceSlice {
		return
	}
	if p.share > 0 && p.share < 1 {
		// Wall time stands for CPU time: when the goroutine was kept
		// off the processor meanwhile, the pause is longer than it need
		// be, which errs on the requests' side.
		pause := time.Duration(float64(ran) * (1 - p.share) / p.share)
		p.sleep(pause)
		p.slept += pause
	} else {
		runtime.Gosched()
	}
	p.began = p.now()
}

type pacerKey struct{}

// withPacer returns ctx carrying p: the encoding done under ctx (the
// archiver's flushes and, in the same process, its compactions and
// repairs) is paced by it. Commands run by hand carry none and run flat out.
func withPacer(ctx context.Context, p *pacer) context.Context {
	return context.WithValue(ctx, pacerKey{}, p)
}

func pacerOf(ctx context.Context) *pacer {
	p, _ := ctx.Value(pacerKey{}).(*pacer)
	return p
}
