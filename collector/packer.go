package collector

import (
	"fmt"
	"sync"
	"time"

	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats.go"
)

// Group commit. Requests to one source hand their encoded events to the
// source's packer, which gathers them into frames (see stream.FrameMagic):
// one JetStream message, stored, delivered and acknowledged once for all of
// them. A frame is sent at once when fewer than maxInFlight frames of its
// subject await their acknowledgement, so a lone request waits for one round
// trip as before; under load, the events that arrive during a round trip
// ride together in the next frame. Each request is answered once every
// frame holding its events is acknowledged.

// maxInFlight is how many frames per subject may await their
// acknowledgement before new events wait for one of them to return.
const maxInFlight = 2

// frame is a message being filled, then in flight.
type frame struct {
	buf    []byte
	events int
	done   chan struct{} // closed once acknowledged or failed
	err    error
}

type packer struct {
	c       *Collector
	subject string

	mu       sync.Mutex
	open     *frame
	inFlight int
}

func (c *Collector) packerFor(subject string) *packer {
	if p, ok := c.packers.Load(subject); ok {
		return p.(*packer)
	}
	p, _ := c.packers.LoadOrStore(subject, &packer{c: c, subject: subject})
	return p.(*packer)
}

// add copies one encoded event into the open frame and returns that frame.
// A frame that would grow past stream.MaxFrameBytes is sent first, whatever
// is in flight.
func (p *packer) add(event []byte) *frame {
	p.mu.Lock()
	var full *frame
	if p.open != nil && len(p.open.buf)+stream.FrameEntrySize(len(event)) > stream.MaxFrameBytes {
		full = p.take()
	}
	if p.open == nil {
		p.open = &frame{buf: make([]byte, 0, max(16<<10, 2*len(event))), done: make(chan struct{})}
	}
	f := p.open
	f.buf = stream.AppendFrameEntry(f.buf, event)
	f.events++
	p.mu.Unlock()
	if full != nil {
		p.send(full)
	}
	return f
}

// kick sends the open frame unless enough frames are in flight already; one
// returning sends it then.
func (p *packer) kick() {
	p.mu.Lock()
	var f *frame
	if p.open != nil && p.inFlight < maxInFlight {
		f = p.take()
	}
	p.mu.Unlock()
	if f != nil {
		p.send(f)
	}
}

// take removes the open frame for sending; p.mu is held.
func (p *packer) take() *frame {
	f := p.open
	p.open = nil
	p.inFlight++
	return f
}

// send publishes f and, once JetStream answers (or does not within the
// publish timeout), releases its requests and sends the frame that filled
// meanwhile.
func (p *packer) send(f *frame) {
	p.c.m.frameEvents.Observe(float64(f.events))
	m := nats.NewMsg(p.subject)
	m.Data = f.buf
	fut, err := p.c.js.PublishMsgAsync(m)
	if err != nil {
		p.finish(f, err)
		return
	}
	go func() {
		t := time.NewTimer(p.c.cfg.PublishTimeout)
		defer t.Stop()
		select {
		case <-fut.Ok():
			p.finish(f, nil)
		case err := <-fut.Err():
			p.finish(f, err)
		case <-t.C:
			p.finish(f, fmt.Errorf("no acknowledgement from JetStream within %s", p.c.cfg.PublishTimeout))
		}
	}()
}

func (p *packer) finish(f *frame, err error) {
	f.err = err
	close(f.done)
	p.mu.Lock()
	p.inFlight--
	p.mu.Unlock()
	p.kick()
}
