package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
)

// maxViewers bounds the live-event streams of the whole console.
const maxViewers = 64

// liveRecheck is how many seconds pass between checks of an open live
// stream's herd_admin membership.
const liveRecheck = 2

// viewerBuffer is how many events wait for a slow browser before the
// rest are counted as dropped.
const viewerBuffer = 256

// liveEvent is one accepted or refused event, ready to send.
type liveEvent struct {
	kind     string // accepted or rejected
	sourceID int64
	data     map[string]any
}

// viewer is one open /api/live stream.
type viewer struct {
	source  int64 // 0: every source
	ch      chan liveEvent
	dropped atomic.Int64
}

// hub holds one core NATS subscription to the event and reject subjects
// while anyone watches, and fans their messages out to the viewers. It
// creates no JetStream consumer: viewers see what arrives while they
// watch, nothing is kept for them.
type hub struct {
	nc  *nats.Conn
	sc  stream.Config
	db  *pgxpool.Pool
	log *slog.Logger

	mu      sync.Mutex
	subs    []*nats.Subscription
	viewers map[*viewer]struct{}
	names   map[int64]string
	namesAt time.Time
}

func newHub(nc *nats.Conn, sc stream.Config, db *pgxpool.Pool, log *slog.Logger) *hub {
	return &hub{nc: nc, sc: sc, db: db, log: log, viewers: map[*viewer]struct{}{}, names: map[int64]string{}}
}

func (h *hub) join(v *viewer) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.viewers) >= maxViewers {
		return errorf(http.StatusServiceUnavailable, "%d live-event streams are open, the console's limit: close one", maxViewers)
	}
	if len(h.subs) == 0 {
		for _, subj := range []string{h.sc.EventsFilter(), h.sc.RejectsFilter()} {
			sub, err := h.nc.Subscribe(subj, h.deliver)
			if err != nil {
				h.unsubscribe()
				return fmt.Errorf("subscribe to %s: %w", subj, err)
			}
			_ = sub.SetPendingLimits(4096, 64<<20)
			h.subs = append(h.subs, sub)
		}
		// Subscribe only queues the interest: a round trip makes sure the
		// server holds it before the stream answers, so that an event
		// accepted after the viewer saw the stream open is shown.
		if err := h.nc.FlushTimeout(5 * time.Second); err != nil {
			h.unsubscribe()
			return fmt.Errorf("subscribe to live events: %w", err)
		}
	}
	h.viewers[v] = struct{}{}
	return nil
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.viewers)
}

func (h *hub) leave(v *viewer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.viewers, v)
	if len(h.viewers) == 0 {
		h.unsubscribe()
	}
}

func (h *hub) unsubscribe() {
	for _, s := range h.subs {
		_ = s.Unsubscribe()
	}
	h.subs = nil
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unsubscribe()
}

// deliver decodes one stream message (a frame of events, one event, or a
// reject) and offers it to the viewers of its source.
func (h *hub) deliver(m *nats.Msg) {
	i := strings.LastIndexByte(m.Subject, '.')
	src, err := strconv.ParseInt(m.Subject[i+1:], 10, 64)
	if err != nil {
		return
	}
	h.mu.Lock()
	var vs []*viewer
	for v := range h.viewers {
		if v.source == 0 || v.source == src {
			vs = append(vs, v)
		}
	}
	h.mu.Unlock()
	if len(vs) == 0 {
		return
	}
	var evs []liveEvent
	if strings.HasPrefix(m.Subject, h.sc.Prefix+".rejects.") {
		var rj herd.Reject
		if json.Unmarshal(m.Data, &rj) != nil {
			return
		}
		evs = append(evs, liveEvent{kind: "rejected", sourceID: src, data: map[string]any{
			"messageId": rj.MessageID, "reason": rj.Reason, "received_at": rj.ReceivedAt.UTC(), "body": redactedBody(rj.Raw)}})
	} else {
		_ = stream.Entries(m.Data, func(_ int, entry []byte) bool {
			var ev herd.Event
			if stream.DecodeEvent(entry, &ev) != nil {
				return true
			}
			evs = append(evs, liveEvent{kind: "accepted", sourceID: src, data: map[string]any{
				"messageId": ev.MessageID, "type": ev.Type, "event": ev.Event, "received_at": ev.ReceivedAt.UTC(),
				"body": json.RawMessage(stream.EncodeEvent(nil, &ev))}})
			return true
		})
	}
	for _, v := range vs {
		for _, e := range evs {
			select {
			case v.ch <- e:
			default:
				v.dropped.Add(1)
			}
		}
	}
}

// redactedBody is a refused body as JSON with its write keys removed, or
// as text when it is not JSON.
func redactedBody(raw string) any {
	var v any
	if json.Unmarshal([]byte(raw), &v) != nil {
		return raw
	}
	return redact(v)
}

func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if strings.ReplaceAll(strings.ToLower(k), "_", "") == "writekey" {
				delete(x, k)
				continue
			}
			x[k] = redact(e)
		}
	case []any:
		for i, e := range x {
			x[i] = redact(e)
		}
	}
	return v
}

// sourceName maps a source id to its name, reading herd.sources at most
// every 10 seconds.
func (h *hub) sourceName(ctx context.Context, id int64) string {
	h.mu.Lock()
	name, ok := h.names[id]
	stale := time.Since(h.namesAt) > 10*time.Second
	h.mu.Unlock()
	if ok || !stale {
		if !ok {
			return strconv.FormatInt(id, 10)
		}
		return name
	}
	rows, _ := h.db.Query(ctx, "SELECT id, name FROM herd.sources")
	names := map[int64]string{}
	var i int64
	var n string
	if _, err := pgx.ForEachRow(rows, []any{&i, &n}, func() error { names[i] = n; return nil }); err == nil {
		h.mu.Lock()
		h.names, h.namesAt = names, time.Now()
		h.mu.Unlock()
	}
	if n, ok := names[id]; ok {
		return n
	}
	return strconv.FormatInt(id, 10)
}

// liveEvents streams accepted and refused events as Server-Sent Events,
// at most LiveRate a second; the rest are reported as dropped.
func (s *Server) liveEvents(w http.ResponseWriter, r *http.Request) {
	if s.cfg.NATS == nil {
		writeError(w, http.StatusServiceUnavailable, "live events need NATS: this console was started without it")
		return
	}
	ss := sessionOf(r)
	ctx := r.Context()
	v := &viewer{ch: make(chan liveEvent, viewerBuffer)}
	if name := r.URL.Query().Get("source"); name != "" {
		if err := s.cfg.DB.QueryRow(ctx, "SELECT id FROM herd.sources WHERE name = $1", name).Scan(&v.source); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				writeError(w, http.StatusNotFound, "no source named "+name)
				return
			}
			s.fail(w, r, err)
			return
		}
	}
	ss.state.Lock()
	if ss.live >= s.cfg.MaxLive {
		ss.state.Unlock()
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("this session has %d live-event streams open, its limit: close one", s.cfg.MaxLive))
		return
	}
	ss.live++
	ss.state.Unlock()
	defer func() {
		ss.state.Lock()
		ss.live--
		ss.state.Unlock()
	}()
	if err := s.live.join(v); err != nil {
		s.fail(w, r, err)
		return
	}
	defer s.live.leave(v)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, ": herd live events\n\n")
	_ = rc.Flush()

	beat := time.NewTicker(s.cfg.HeartbeatPeriod)
	defer beat.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	sent := 0
	var dropped int64
	ticks := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-ss.gone:
			// Signed out, or closed for the per-user cap.
			return
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			_ = rc.Flush()
		case <-second.C:
			sent = 0
			// The session and the membership are checked again while the
			// stream runs: expiry, sign-out and REVOKE end it.
			if !s.sessions.alive(ss) {
				s.sessions.expire()
				return
			}
			if ticks++; ticks%liveRecheck == 0 {
				ok, err := s.isAdmin(ctx, ss.user)
				if err != nil || !ok {
					if err != nil && ctx.Err() == nil {
						s.log.Warn("live events: membership check failed, stream ended", "user", ss.user, "err", err)
					}
					return
				}
			}
			dropped += v.dropped.Swap(0)
			if dropped > 0 {
				if _, err := fmt.Fprintf(w, "event: dropped\ndata: {\"count\":%d}\n\n", dropped); err != nil {
					return
				}
				_ = rc.Flush()
				dropped = 0
			}
		case e := <-v.ch:
			if sent >= s.cfg.LiveRate {
				dropped++
				continue
			}
			sent++
			// e.data is shared by every viewer of the event.
			d := maps.Clone(e.data)
			d["source"] = s.live.sourceName(ctx, e.sourceID)
			b, err := json.Marshal(d)
			if err != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.kind, b); err != nil {
				return
			}
			_ = rc.Flush()
		}
	}
}
