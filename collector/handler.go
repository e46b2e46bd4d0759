package collector

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"
)

// route kinds
const (
	routeUnknown = iota
	routeEvent   // single event; type from the path
	routeBatch
	routeMetrics
	routeSettings
	routeStatic
	routeWebhook
	routeHealth
)

var pathTypes = map[string]string{
	"track": herd.TypeTrack, "t": herd.TypeTrack,
	"page": herd.TypePage, "p": herd.TypePage,
	"screen": herd.TypeScreen, "s": herd.TypeScreen,
	"identify": herd.TypeIdentify, "i": herd.TypeIdentify,
	"group": herd.TypeGroup, "g": herd.TypeGroup,
	"alias": herd.TypeAlias, "a": herd.TypeAlias,
}

// classify maps a path to its route, the event type it implies and its
// metrics label.
func (c *Collector) classify(path string) (kind int, typ, label string) {
	if _, ok := c.cfg.Static[path]; ok {
		return routeStatic, "", "static"
	}
	if _, ok := c.webhooks[path]; ok {
		return routeWebhook, "", "webhook"
	}
	p := strings.TrimSuffix(path, "/")
	p = strings.TrimPrefix(p, "/v1")
	if strings.HasPrefix(p, "/projects/") && strings.HasSuffix(p, "/settings") {
		return routeSettings, "", "settings"
	}
	name := strings.TrimPrefix(p, "/")
	switch name {
	case "batch", "b", "import":
		return routeBatch, "", "batch"
	case "m":
		return routeMetrics, "", "m"
	case "health", "healthz":
		return routeHealth, "", "health"
	}
	if t, ok := pathTypes[name]; ok {
		return routeEvent, t, t
	}
	return routeUnknown, "", "unknown"
}

// Handle is the fasthttp handler.
func (c *Collector) Handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	kind, typ, label := c.classify(string(ctx.Path()))
	c.cors(ctx)
	switch {
	case ctx.IsOptions():
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	case kind == routeStatic:
		c.serveStatic(ctx)
	case kind == routeHealth:
		replyJSON(ctx, 200, `{"ok":true}`)
	case kind == routeSettings && ctx.IsGet():
		c.settings(ctx)
	case kind == routeMetrics && ctx.IsPost():
		// analytics.js reports its own metrics; accepted and discarded.
		replyJSON(ctx, 200, `{"success":true}`)
	case kind == routeWebhook && ctx.IsPost():
		c.webhook(ctx)
	case (kind == routeEvent || kind == routeBatch) && ctx.IsPost():
		c.track(ctx, kind == routeBatch, typ)
	case kind == routeUnknown:
		replyError(ctx, fasthttp.StatusNotFound, "no such endpoint: POST /v1/{track,page,screen,identify,group,alias,batch}")
	default:
		ctx.Response.Header.Set("Allow", "POST, OPTIONS")
		replyError(ctx, fasthttp.StatusMethodNotAllowed, "method "+string(ctx.Method())+" not allowed here")
	}
	c.m.routes.request(label, ctx.Response.StatusCode()).Inc()
	c.m.routes.duration(label).Observe(time.Since(start).Seconds())
}

// cors allows every origin with credentials: analytics.js sends an
// Authorization header, so browsers preflight, and the reply must reflect
// the origin rather than use "*". Origin restrictions are per source and
// enforced once the write key is known.
func (c *Collector) cors(ctx *fasthttp.RequestCtx) {
	origin := ctx.Request.Header.Peek("Origin")
	h := &ctx.Response.Header
	h.Add("Vary", "Origin")
	if len(origin) == 0 {
		return
	}
	h.SetBytesV("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	if ctx.IsOptions() {
		h.Set("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
		if req := ctx.Request.Header.Peek("Access-Control-Request-Headers"); len(req) > 0 {
			h.SetBytesV("Access-Control-Allow-Headers", req)
		}
		h.Set("Access-Control-Max-Age", "86400")
	}
}

func replyJSON(ctx *fasthttp.RequestCtx, status int, body string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(body)
}

func replyError(ctx *fasthttp.RequestCtx, status int, msg string) {
	b, _ := json.Marshal(struct {
		Success bool   `json:"success"`
		Error   string `json:"error"`
	}{false, msg})
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, herd.ErrUnauthorized):
		return fasthttp.StatusUnauthorized
	case errors.Is(err, herd.ErrTooLarge):
		return fasthttp.StatusRequestEntityTooLarge
	case errors.Is(err, herd.ErrRateLimited):
		return fasthttp.StatusTooManyRequests
	case errors.Is(err, herd.ErrUnavailable):
		return fasthttp.StatusServiceUnavailable
	}
	return fasthttp.StatusBadRequest
}

// transportError answers what fasthttp refuses before the handler runs
// (bodies over the limit, malformed HTTP) in the same JSON shape.
func (c *Collector) transportError(ctx *fasthttp.RequestCtx, err error) {
	c.cors(ctx)
	var tooLarge bool
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		tooLarge = true
	}
	if tooLarge {
		c.m.requests.WithLabelValues("transport", "413").Inc()
		replyError(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", MaxBatchBytes))
		return
	}
	c.m.requests.WithLabelValues("transport", "400").Inc()
	replyError(ctx, fasthttp.StatusBadRequest, "malformed request: "+err.Error())
}

// writeKeyFromHeaders finds the write key in Basic auth (key as user, empty
// password, with or without the colon), X-Write-Key or ?writeKey=.
func writeKeyFromHeaders(ctx *fasthttp.RequestCtx) string {
	if auth := ctx.Request.Header.Peek("Authorization"); len(auth) > 6 && strings.EqualFold(string(auth[:6]), "basic ") {
		if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(auth[6:]))); err == nil {
			user, _, _ := strings.Cut(string(dec), ":")
			if user != "" {
				return user
			}
		}
	}
	if k := ctx.Request.Header.Peek("X-Write-Key"); len(k) > 0 {
		return string(k)
	}
	return string(ctx.QueryArgs().Peek("writeKey"))
}

var gzipPool sync.Pool

// body returns the request body, decompressed, refusing anything over limit
// after decompression. What decompression produces is counted.
func (c *Collector) body(ctx *fasthttp.RequestCtx, limit int) ([]byte, error) {
	raw := ctx.PostBody()
	enc := strings.ToLower(strings.TrimSpace(string(ctx.Request.Header.Peek("Content-Encoding"))))
	switch enc {
	case "", "identity":
		if len(raw) > limit {
			return nil, herd.Errorf(herd.ErrTooLarge, "body is %d bytes; the limit is %d", len(raw), limit)
		}
		return raw, nil
	case "gzip", "x-gzip":
		var zr *gzip.Reader
		if v := gzipPool.Get(); v != nil {
			zr = v.(*gzip.Reader)
			if err := zr.Reset(bytes.NewReader(raw)); err != nil {
				return nil, herd.Errorf(herd.ErrInvalid, "body is not valid gzip: %v", err)
			}
		} else {
			var err error
			if zr, err = gzip.NewReader(bytes.NewReader(raw)); err != nil {
				return nil, herd.Errorf(herd.ErrInvalid, "body is not valid gzip: %v", err)
			}
		}
		defer gzipPool.Put(zr)
		out, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
		c.m.decompressed.Add(float64(len(out)))
		if err != nil {
			return nil, herd.Errorf(herd.ErrInvalid, "body is not valid gzip: %v", err)
		}
		if len(out) > limit {
			return nil, herd.Errorf(herd.ErrTooLarge, "body decompresses past the limit of %d bytes", limit)
		}
		return out, nil
	default:
		return nil, herd.Errorf(herd.ErrInvalid, "unsupported Content-Encoding %q: send gzip or none", enc)
	}
}

type itemError struct {
	Index     int    `json:"index"`
	MessageID string `json:"messageId,omitempty"`
	Error     string `json:"error"`
}

// track handles the event endpoints. The cheap checks come first: the
// client's network, then a write key sent in the headers; only then is the
// body read, decompressed and decoded.
func (c *Collector) track(ctx *fasthttp.RequestCtx, batch bool, pathType string) {
	now := c.cfg.Now().UTC()
	ip := c.clientAddr(ctx.RemoteIP(), &ctx.Request.Header)
	if ok, wait := c.allowClient(ip, now); !ok {
		c.rateLimited(ctx, "ip", wait, "too many requests from "+clientNet(ip))
		c.warnClientLimited(ip, now)
		return
	}
	key := writeKeyFromHeaders(ctx)
	var src *herd.Source
	if key != "" {
		if src = c.lookupSource(key); src == nil {
			replyError(ctx, fasthttp.StatusUnauthorized, "unknown or revoked write key")
			return
		}
		if !c.allowBytes(ctx, src, now) {
			return
		}
	}
	admitted := c.admit(ctx, int64(len(ctx.PostBody())))
	if admitted == nil {
		return
	}
	defer admitted()
	// Past the stream byte rate the request waits here, before it takes
	// decode room that other requests need.
	if !c.admitStream(ctx, now) {
		return
	}
	limit := MaxEventBytes
	if batch {
		limit = MaxBatchBytes
	}
	// Decompressing, decoding and building take memory in proportion to
	// the decompressed body: only so much of it is in work at once.
	weight := int64(len(ctx.PostBody()))
	if len(ctx.Request.Header.Peek("Content-Encoding")) > 0 {
		weight = int64(limit)
	}
	release, ok := c.work.acquire(weight, src != nil && src.Kind == herd.KindServer)
	if !ok {
		c.m.busy.Inc()
		ctx.Response.Header.Set("Retry-After", "1")
		replyError(ctx, fasthttp.StatusServiceUnavailable, fmt.Sprintf("collector busy: %d bytes of requests are being decoded (the limit); retry after 1s", c.cfg.DecodeBytes))
		return
	}
	release = sync.OnceFunc(release)
	defer release()
	raw, err := c.body(ctx, limit)
	if err == nil {
		var r *request
		if r, err = decodeBody(raw, batch); err == nil {
			c.accept(ctx, src, r, ip, pathType, now, release)
			return
		}
	}
	// The request as a whole is refused. When we know whose it is, the refusal
	// is recorded too, within the source's reject budget.
	if src != nil {
		if raw == nil {
			raw = ctx.PostBody()
		}
		if c.rejectSuppressed(nil, raw) {
			c.m.events.WithLabelValues("dropped", "suppressed").Inc()
		} else {
			c.recordReject(src.ID, "", err.Error(), raw, now)
			c.m.events.WithLabelValues("rejected", reasonCode(err)).Inc()
		}
	}
	replyError(ctx, statusOf(err), err.Error())
}

// allowBytes answers 429 when a browser source has stored more than its
// byte rate allows.
func (c *Collector) allowBytes(ctx *fasthttp.RequestCtx, src *herd.Source, now time.Time) bool {
	ok, wait := c.limits.sourceBytes(src, now)
	if !ok {
		c.rateLimited(ctx, "source_bytes", wait, fmt.Sprintf("source %s has stored more than its byte rate allows", src.Name))
	}
	return ok
}

// allowClient takes a request from the client network's bucket. Loopback
// clients are exempt when so configured: behind a local proxy that is not
// a trusted proxy, every client would share 127.0.0.1.
func (c *Collector) allowClient(ip netip.Addr, now time.Time) (bool, time.Duration) {
	if c.cfg.ExemptLoopback && ip.IsLoopback() {
		return true, 0
	}
	return c.limits.client(ip, now)
}

// clientNet names what the per-client limit counts: an IPv4 address or an
// IPv6 /64.
func clientNet(a netip.Addr) string {
	if !a.IsValid() {
		return "clients whose address the trusted proxy did not know (one limit shared by all)"
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// maxReplyErrors bounds the per-item errors listed in a reply; the rest are
// counted in errorsOmitted (and recorded as rejects).
const maxReplyErrors = 100

// accept authenticates, limits and builds a decoded request, publishes its
// events and answers once they are stored. done is called once the events
// are built: the decode room is not held while JetStream is awaited.
func (c *Collector) accept(ctx *fasthttp.RequestCtx, src *herd.Source, r *request, ip netip.Addr, pathType string, now time.Time, done func()) {
	if src == nil {
		if r.writeKey == "" {
			replyError(ctx, fasthttp.StatusUnauthorized, "missing write key: use HTTP Basic auth with the write key as user, or writeKey in the body")
			return
		}
		if src = c.lookupSource(r.writeKey); src == nil {
			replyError(ctx, fasthttp.StatusUnauthorized, "unknown or revoked write key")
			return
		}
		if !c.allowBytes(ctx, src, now) {
			return
		}
	}
	if origin := ctx.Request.Header.Peek("Origin"); len(origin) > 0 && len(src.AllowedOrigins) > 0 && !allowed(src.AllowedOrigins, string(origin)) {
		replyError(ctx, fasthttp.StatusForbidden, "origin "+string(origin)+" is not allowed for this source")
		return
	}
	info := reqInfo{
		source:     src,
		receivedAt: now,
		pathType:   pathType,
		userAgent:  string(ctx.Request.Header.UserAgent()),
	}
	if ip.IsValid() {
		info.ip = ip.String()
	}
	if ok, wait := c.limits.source(src, len(r.items), now); !ok {
		c.rateLimited(ctx, "source", wait, fmt.Sprintf("source %s is over its rate limit", src.Name))
		return
	}

	// What the request may store is reserved from a browser source's byte
	// bucket before anything is published, and what it did not publish is
	// given back once its events are encoded: concurrent requests cannot
	// together store more than the bucket holds, and a request answered 503
	// has paid for what it published.
	budget, ok, wait := c.limits.reserveBytes(src, storeBudget(r), now)
	if !ok {
		c.rateLimited(ctx, "source_bytes", wait, fmt.Sprintf("source %s has stored what its byte rate allows (this request may store up to %d bytes)", src.Name, budget))
		return
	}

	p := c.newPublish()
	defer p.release()
	pk := c.packerFor(c.cfg.Stream.EventSubject(src.ID))
	var errs []itemError
	accepted, nerrs, published := 0, 0, 0
	c.buildAll(r, &info, p, budget, func(i int, ev *herd.Event, n int, err error) {
		if err != nil {
			nerrs++
			if len(errs) < maxReplyErrors {
				errs = append(errs, itemError{Index: i, MessageID: ev.MessageID, Error: err.Error()})
			}
			if c.rejectSuppressed(ev, r.items[i]) {
				c.m.events.WithLabelValues("dropped", "suppressed").Inc()
				return
			}
			p.reject(src.ID, herd.Reject{SourceID: src.ID, MessageID: ev.MessageID, Reason: err.Error(), Raw: string(r.items[i]), ReceivedAt: now})
			c.m.events.WithLabelValues("rejected", reasonCode(err)).Inc()
			return
		}
		if ev.IsBot && c.cfg.DropBots {
			c.m.events.WithLabelValues("dropped", "bot").Inc()
			return
		}
		if c.isSuppressed(ev) {
			c.m.events.WithLabelValues("dropped", "suppressed").Inc()
			return
		}
		if p.add(pk) {
			published += n
		}
		accepted++
	})
	pk.kick()
	done()
	// Published bytes stay charged whatever JetStream answers: they may be
	// stored even when the acknowledgement does not come in time.
	c.limits.refundBytes(src, budget-published, now)
	c.chargeStream(published, now) // admitted in track, paid now
	if err := p.wait(c.cfg.PublishTimeout); err != nil {
		c.log.Warn("publish to JetStream", "err", err, "events", accepted)
		ctx.Response.Header.Set("Retry-After", "2")
		// Some of the request's frames may have been stored before the
		// failure: the reply must not say none were. A retry within the
		// stream's duplicate window stores each messageId once.
		replyError(ctx, fasthttp.StatusServiceUnavailable, fmt.Sprintf("not every event was acknowledged as stored (%v); retry within %s: events already stored are recognised by their messageId", err, c.cfg.Stream.DupeWindow))
		return
	}
	c.m.events.WithLabelValues("accepted", "").Add(float64(accepted))
	omitted := nerrs - len(errs)
	switch {
	case nerrs == 0:
		replyJSON(ctx, 200, `{"success":true}`)
	case accepted > 0 || (r.batch && nerrs < len(r.items)):
		b, _ := json.Marshal(struct {
			Success  bool        `json:"success"`
			Accepted int         `json:"accepted"`
			Errors   []itemError `json:"errors"`
			Omitted  int         `json:"errorsOmitted,omitempty"`
		}{true, accepted, errs, omitted})
		replyJSON(ctx, 200, string(b))
	default:
		msg := errs[0].Error
		if r.batch {
			msg = fmt.Sprintf("all %d events refused; first: %s", nerrs, msg)
		}
		b, _ := json.Marshal(struct {
			Success bool        `json:"success"`
			Error   string      `json:"error"`
			Errors  []itemError `json:"errors"`
			Omitted int         `json:"errorsOmitted,omitempty"`
		}{false, msg, errs, omitted})
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
		ctx.SetContentType("application/json")
		ctx.SetBody(b)
	}
}

// buildAll validates, enriches and encodes r's items within budget bytes,
// calling each for every item in order: with the event (valid only during
// the call) and its encoded size
// (the entry sits in p's scratch buffer until the next item), or with the
// reason it is refused. Once the budget is spent, the remaining items are
// refused without being built: what a request costs in CPU and memory is
// bounded by its budget, not by how many events it names.
func (c *Collector) buildAll(r *request, info *reqInfo, p *publishing, budget int, each func(i int, ev *herd.Event, n int, err error)) {
	var spent error
	// One Event for all the items: each is encoded (copied) before the next
	// is built, and each must not keep it.
	ev := new(herd.Event)
	for i, item := range r.items {
		if spent != nil {
			*ev = herd.Event{}
			each(i, ev, 0, spent)
			continue
		}
		if err := c.fillEvent(ev, item, r, info); err != nil {
			each(i, ev, 0, err)
			continue
		}
		// What one request stores is bounded by its size, whatever the
		// batch context or the headers copied into each event.
		n := p.encode(ev)
		if n > budget {
			spent = herd.Errorf(herd.ErrTooLarge, "event refused: the request would store more than %d bytes (twice its %d-byte body, plus %d bytes an event and %d); the batch context is stored in every event: send fewer events per batch", storeBudget(r), r.bodyLen, budgetPerEvent, budgetSlack)
			c.m.overBudget.Add(float64(len(r.items) - i))
			each(i, ev, 0, spent)
			continue
		}
		budget -= n
		each(i, ev, n, nil)
	}
}

// The storage budget of a request: what its events may take on the stream,
// encoded. Twice the decompressed body, plus an allowance per event for the
// columns herd adds (message id, times, the user agent, enrichment) and a
// constant: an honest batch stays well within it (its events encode to
// about their own size), while a batch-level context or a long User-Agent
// header, copied into every event, cannot make a request store much more
// than it sent.
const (
	budgetPerEvent = 512
	budgetSlack    = 64 << 10
)

func storeBudget(r *request) int {
	return 2*r.bodyLen + budgetPerEvent*len(r.items) + budgetSlack
}

func allowed(origins []string, origin string) bool {
	for _, o := range origins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// publishing collects the acknowledgements of one request's messages: the
// frames holding its events and its own messages (rejects, webhooks).
type publishing struct {
	c       *Collector
	futures []jetstream.PubAckFuture
	frames  []*frame
	scratch *[]byte
	err     error
	start   time.Time
}

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (c *Collector) newPublish() *publishing {
	return &publishing{c: c, start: time.Now()}
}

// ok reports whether more can be published: no earlier failure, and NATS
// connected (recorded as the failure when it is not).
func (p *publishing) ok() bool {
	if p.err == nil && !p.c.nc.IsConnected() {
		p.err = errors.New("NATS is not connected")
	}
	return p.err == nil
}

func (p *publishing) send(subject, msgID string, data []byte) {
	if !p.ok() {
		return
	}
	m := nats.NewMsg(subject)
	m.Data = data
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	f, err := p.c.js.PublishMsgAsync(m, opts...)
	if err != nil {
		p.err = err
		return
	}
	p.futures = append(p.futures, f)
}

// encode encodes ev as a frame entry into the request's scratch buffer and
// returns its size: what storing it costs.
func (p *publishing) encode(ev *herd.Event) int {
	if p.scratch == nil {
		p.scratch = scratchPool.Get().(*[]byte)
	}
	*p.scratch = stream.EncodeEntry((*p.scratch)[:0], ev)
	return len(*p.scratch)
}

// add copies the event encode left in the scratch buffer into the packer's
// open frame, and reports whether it did.
func (p *publishing) add(pk *packer) bool {
	if !p.ok() {
		return false
	}
	f := pk.add(*p.scratch)
	if n := len(p.frames); n == 0 || p.frames[n-1] != f {
		p.frames = append(p.frames, f)
	}
	return true
}

// release returns the encoding buffer.
func (p *publishing) release() {
	if p.scratch != nil && cap(*p.scratch) <= 64<<10 {
		scratchPool.Put(p.scratch)
	}
	p.scratch = nil
}

// reject records r on the source's reject subject if the source's reject
// budget allows, preceded by a summary of the rejects the budget dropped
// since the last one recorded; past the budget it only counts it.
func (p *publishing) reject(sourceID int64, r herd.Reject) {
	if len(r.Raw) > herd.MaxRawReject {
		r.Raw = truncate(r.Raw, herd.MaxRawReject)
	}
	data, _ := json.Marshal(r)
	ok, dropped := p.c.rejects.take(sourceID, len(data), r.ReceivedAt)
	if !ok {
		p.c.m.unrecorded.Inc()
		return
	}
	subject := p.c.cfg.Stream.RejectSubject(sourceID)
	if dropped.n > 0 {
		sum, _ := json.Marshal(herd.Reject{SourceID: sourceID, ReceivedAt: r.ReceivedAt, Reason: fmt.Sprintf(
			"%d refused events or requests of this source (%d bytes) since %s were not recorded: over the budget of %.0f bytes/s of rejects per source (see herd_collector_rejects_unrecorded_total)",
			dropped.n, dropped.bytes, dropped.since.UTC().Format(time.RFC3339), p.c.rejects.rate)})
		p.send(subject, "", sum)
	}
	p.send(subject, "", data)
}

// wait returns nil once every message is acknowledged by JetStream.
func (p *publishing) wait(timeout time.Duration) error {
	if p.err != nil {
		return p.err
	}
	if len(p.futures) == 0 && len(p.frames) == 0 {
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for _, f := range p.frames {
		select {
		case <-f.done:
			if f.err != nil {
				return f.err
			}
		case <-t.C:
			return fmt.Errorf("no acknowledgement from JetStream within %s", timeout)
		}
	}
	for _, f := range p.futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-t.C:
			return fmt.Errorf("no acknowledgement from JetStream within %s", timeout)
		}
	}
	p.c.m.publish.Observe(time.Since(p.start).Seconds())
	return nil
}

// recordReject stores a refused request body on the stream, best effort: the
// client already gets the error.
func (c *Collector) recordReject(sourceID int64, messageID, reason string, raw []byte, now time.Time) {
	p := c.newPublish()
	p.reject(sourceID, herd.Reject{SourceID: sourceID, MessageID: messageID, Reason: reason, Raw: string(raw), ReceivedAt: now})
	if err := p.wait(c.cfg.PublishTimeout); err != nil {
		c.log.Warn("record rejected request", "source", sourceID, "err", err)
	}
}

// settings answers analytics.js's settings request so that it sends to herd.
// With PublicURL set the answer depends on the key alone and shared caches
// may keep it; built from the request's Host it is private, so that no
// client's Host reaches another client through a cache.
func (c *Collector) settings(ctx *fasthttp.RequestCtx) {
	p := strings.TrimPrefix(strings.TrimPrefix(string(ctx.Path()), "/v1"), "/projects/")
	key := strings.TrimSuffix(strings.TrimSuffix(p, "/"), "/settings")
	if c.lookupSource(key) == nil {
		replyError(ctx, fasthttp.StatusNotFound, "unknown or revoked write key")
		return
	}
	scheme, host, err := c.publicHost(ctx)
	if err != nil {
		replyError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	b, _ := json.Marshal(map[string]any{
		"integrations": map[string]any{
			"Segment.io": map[string]any{
				"apiKey":   key,
				"apiHost":  host + "/v1",
				"protocol": scheme,
			},
		},
		"plan":                 map[string]any{"track": map[string]any{"__default": map[string]any{"enabled": true}}},
		"edgeFunction":         map[string]any{},
		"analyticsNextEnabled": true,
	})
	if c.cfg.PublicURL != "" {
		ctx.Response.Header.Set("Cache-Control", "public, max-age=300")
	} else {
		ctx.Response.Header.Set("Cache-Control", "private, max-age=300")
		ctx.Response.Header.Add("Vary", "Host, X-Forwarded-Host, X-Forwarded-Proto")
	}
	replyJSON(ctx, 200, string(b))
}

// publicHost is how clients reach this collector: PublicURL when set;
// otherwise the request's Host and scheme, where X-Forwarded-Host and
// X-Forwarded-Proto are believed only from a trusted proxy. A host that is
// not a plain host[:port] is refused.
func (c *Collector) publicHost(ctx *fasthttp.RequestCtx) (scheme, host string, err error) {
	if u := c.cfg.PublicURL; u != "" {
		scheme, host, _ = strings.Cut(u, "://")
		return scheme, strings.TrimSuffix(host, "/"), nil
	}
	scheme, host = "http", string(ctx.Host())
	if ctx.IsTLS() {
		scheme = "https"
	}
	if peer, ok := netip.AddrFromSlice(ctx.RemoteIP()); ok && c.trusted(peer.Unmap()) {
		switch proto := strings.ToLower(lastValue(ctx.Request.Header.Peek("X-Forwarded-Proto"))); proto {
		case "http", "https":
			scheme = proto
		}
		if fh := lastValue(ctx.Request.Header.Peek("X-Forwarded-Host")); fh != "" {
			host = fh
		}
	}
	if !validHost(host) {
		return "", "", herd.Errorf(herd.ErrInvalid, "Host %q is not a host name or address with an optional port; set --public-url to answer with a fixed one", truncate(host, 64))
	}
	return scheme, host, nil
}

// lastValue is the right-most entry of a comma-separated header: the one
// the nearest proxy added.
func lastValue(h []byte) string {
	s := string(h)
	if i := strings.LastIndexByte(s, ','); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// validHost accepts a DNS name, an IPv4 address or a bracketed IPv6
// address, each with an optional port.
func validHost(h string) bool {
	if h == "" || len(h) > 260 {
		return false
	}
	name, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		if _, err := netip.ParseAddr(h[1:end]); err != nil {
			return false
		}
		name, port = "", h[end+1:]
		if port != "" && port[0] != ':' {
			return false
		}
		port = strings.TrimPrefix(port, ":")
		if port == "" && strings.HasSuffix(h, ":") {
			return false
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		name, port = h[:i], h[i+1:]
		if port == "" {
			return false
		}
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '+' {
			return false
		}
	}
	if name == "" {
		return strings.HasPrefix(h, "[")
	}
	if len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
				return false
			}
		}
	}
	return true
}

func (c *Collector) serveStatic(ctx *fasthttp.RequestCtx) {
	s := c.static[string(ctx.Path())]
	if !ctx.IsGet() && !ctx.IsHead() {
		replyError(ctx, fasthttp.StatusMethodNotAllowed, "GET only")
		return
	}
	if s.WriteKey != "" {
		// A page that shows a write key is served only while the key is
		// live and a browser source's: a server source's key is a secret.
		if src := c.lookupSource(s.WriteKey); src == nil || src.Kind != herd.KindBrowser {
			replyError(ctx, fasthttp.StatusNotFound, "no demo page: its source is not a live browser source")
			return
		}
	}
	b := s.Body
	if s.Render != nil {
		scheme, host, err := c.publicHost(ctx)
		if err != nil {
			replyError(ctx, fasthttp.StatusBadRequest, err.Error())
			return
		}
		b = s.Render(host, scheme)
	}
	ctx.SetContentType(s.ContentType)
	if s.CacheControl != "" {
		ctx.Response.Header.Set("Cache-Control", s.CacheControl)
	}
	ctx.Response.Header.Add("Vary", "Accept-Encoding")
	switch {
	case s.Render == nil && s.br != nil && ctx.Request.Header.HasAcceptEncoding("br"):
		ctx.Response.Header.Set("Content-Encoding", "br")
		b = s.br
	case s.Render == nil && s.gz != nil && ctx.Request.Header.HasAcceptEncoding("gzip"):
		ctx.Response.Header.Set("Content-Encoding", "gzip")
		b = s.gz
	}
	ctx.SetBody(b)
}

// webhook verifies a third party's callback and makes it durable.
func (c *Collector) webhook(ctx *fasthttp.RequestCtx) {
	w := c.webhooks[string(ctx.Path())]
	raw, err := c.body(ctx, 1<<20)
	if err != nil {
		replyError(ctx, statusOf(err), err.Error())
		return
	}
	header := func(name string) string { return string(ctx.Request.Header.Peek(name)) }
	if w.Handshake != nil {
		if reply, ok := w.Handshake(raw, header, c.cfg.Now()); ok {
			replyJSON(ctx, 200, string(reply))
			return
		}
	}
	id, err := w.Verify(raw, header, c.cfg.Now())
	if err != nil {
		replyError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	p := c.newPublish()
	p.send(c.cfg.Stream.WebhookSubject(w.Name), id, append([]byte(nil), raw...))
	if err := p.wait(c.cfg.PublishTimeout); err != nil {
		ctx.Response.Header.Set("Retry-After", "2")
		replyError(ctx, fasthttp.StatusServiceUnavailable, "not stored: "+err.Error())
		return
	}
	replyJSON(ctx, 200, `{"received":true}`)
}

// warnClientLimited tells the operator, at most once a minute, which client
// the per-client limit refused: when it is a load balancer or proxy that is
// not in TrustedProxies, every client behind it shares its limit.
func (c *Collector) warnClientLimited(ip netip.Addr, now time.Time) {
	last := c.lastLimitWarn.Load()
	if now.UnixNano()-last < int64(time.Minute) || !c.lastLimitWarn.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	c.log.Warn("a client is over the per-client rate limit; if it is a load balancer or proxy in front of herd, list it in --trusted-proxies so that each client behind it is limited on its own",
		"client", clientNet(ip), "limit_per_second", c.cfg.IPRateLimit)
}

// rateLimited answers 429 with the time after which a retry would pass.
func (c *Collector) rateLimited(ctx *fasthttp.RequestCtx, scope string, wait time.Duration, msg string) {
	c.m.events.WithLabelValues("rate_limited", scope).Inc()
	ctx.Response.Header.Set("Retry-After", retryAfter(wait))
	replyError(ctx, fasthttp.StatusTooManyRequests, msg+"; retry after "+retryAfter(wait)+"s")
}
