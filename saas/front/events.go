package front

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/herdhq/herd/saas"
	"github.com/jackc/pgx/v5"
)

// event is the part of a Front event herd reads.
type event struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	EmittedAt    json.RawMessage `json:"emitted_at"`
	Conversation *struct {
		ID string `json:"id"`
	} `json:"conversation"`
	raw     json.RawMessage
	emitted time.Time
}

func (e *event) conversationID() string {
	if e.Conversation == nil {
		return ""
	}
	return e.Conversation.ID
}

// parseEvent reads an event from the events feed, or from a webhook body:
// application webhooks wrap it in {"type": ..., "payload": event}.
func parseEvent(raw []byte) (event, error) {
	var w struct {
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return event{}, fmt.Errorf("parse Front event: %w", err)
	}
	if len(w.Payload) > 0 && w.Payload[0] == '{' {
		raw = w.Payload
	}
	var e event
	if err := json.Unmarshal(raw, &e); err != nil {
		return e, fmt.Errorf("parse Front event: %w", err)
	}
	if e.ID == "" || e.Type == "" {
		return e, fmt.Errorf("parse Front event: not an event (id %q, type %q)", e.ID, e.Type)
	}
	t, ok := parseFrontTime(e.EmittedAt)
	if !ok {
		return e, fmt.Errorf("parse Front event %s: emitted_at %q is not a timestamp", e.ID, e.EmittedAt)
	}
	e.emitted, e.raw = t, raw
	return e, nil
}

// recordEvents logs events in front.events with their outcome, in one
// round trip. The feed's record replaces a webhook's: the feed has checked
// the event against its safety margin, the webhook had not.
func recordEvents(ctx context.Context, q querier, evs []event, via, outcome string) error {
	if len(evs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, ev := range evs {
		var conv *string
		if id := ev.conversationID(); id != "" {
			conv = &id
		}
		b.Queue(`INSERT INTO front.events (id, type, emitted_at, conversation_id, via, outcome, data)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (id) DO UPDATE SET via = EXCLUDED.via, outcome = EXCLUDED.outcome
			WHERE front.events.via = 'webhook' AND EXCLUDED.via = 'api'`,
			ev.ID, ev.Type, ev.emitted, conv, via, outcome, []byte(ev.raw))
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record %d events (from %s) in front.events: %w", len(evs), evs[0].ID, err)
	}
	return nil
}

// Webhook implements saas.Connector: it applies one verified webhook body
// by refetching the conversation its event names.
func (s *Syncer) Webhook(ctx context.Context, body []byte) error {
	ev, err := parseEvent(body)
	if err != nil {
		return saas.Permanent(fmt.Errorf("front webhook: %w", err))
	}
	var seen bool
	if err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM front.events WHERE id = $1)`, ev.ID).Scan(&seen); err != nil {
		return fmt.Errorf("front webhook: read front.events: %w", err)
	}
	if seen {
		s.m.events.WithLabelValues("webhook", "duplicate").Inc()
		return nil
	}
	outcome, err := s.applyEvents(ctx, ev.conversationID(), []event{ev}, "webhook")
	if err != nil {
		return fmt.Errorf("front webhook %s (%s): %w", ev.ID, ev.Type, err)
	}
	s.m.events.WithLabelValues("webhook", outcome).Add(1)
	return nil
}

// applyEvents applies the events about one conversation ("" for events
// about none: recorded as ignored).
func (s *Syncer) applyEvents(ctx context.Context, convID string, evs []event, via string) (string, error) {
	if convID == "" {
		return "ignored", recordEvents(ctx, s.db, evs, via, "ignored")
	}
	return s.refetch(ctx, convID, evs, via)
}

// syncEvents reads the events feed from the cursor less the lookback, and
// refetches once each conversation named by an event not yet applied. It
// returns the new cursor (the newest emitted_at seen). Front lists events
// newest first; the cursor is saved only after the whole feed is read, so an
// interrupted pass is repeated, skipping what it applied.
func (s *Syncer) syncEvents(ctx context.Context, cursor time.Time) (time.Time, map[string]int, error) {
	q := map[string][]string{}
	if !cursor.IsZero() {
		q["q[after]"] = []string{frontTime(cursor.Add(-s.cfg.Lookback))}
	}
	counts := map[string]int{}
	refetched := map[string]bool{}
	newest := cursor
	err := s.api.all(ctx, s.firstPage("/events", q), func(items []json.RawMessage) error {
		evs := make([]event, 0, len(items))
		ids := make([]string, 0, len(items))
		for _, it := range items {
			ev, err := parseEvent(it)
			if err != nil {
				return err
			}
			evs = append(evs, ev)
			ids = append(ids, ev.ID)
			if ev.emitted.After(newest) {
				newest = ev.emitted
			}
		}
		// An event a webhook applied is checked again: the webhook's
		// refetch may have run before Front's API showed the change, and
		// only the feed waits out clockMargin (the stale test below skips
		// it when the webhook's read was late enough).
		rows, _ := s.db.Query(ctx, `SELECT id FROM front.events WHERE id = ANY($1) AND via = 'api'`, ids)
		seen, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("read front.events: %w", err)
		}
		done := map[string]bool{}
		for _, id := range seen {
			done[id] = true
		}
		// Group the page's new events by conversation, in feed order.
		var order []string
		byConv := map[string][]event{}
		for _, ev := range evs {
			if done[ev.ID] {
				counts["duplicate"]++
				continue
			}
			c := ev.conversationID()
			if _, ok := byConv[c]; !ok {
				order = append(order, c)
			}
			byConv[c] = append(byConv[c], ev)
		}
		readAt, err := s.readTimes(ctx, order)
		if err != nil {
			return err
		}
		var stale []event
		for _, c := range order {
			outcome := "applied"
			var err error
			switch {
			case c != "" && refetched[c]:
				// Read whole earlier in this pass, after these (older)
				// events were emitted: its state includes them.
				err = recordEvents(ctx, s.db, byConv[c], "api", outcome)
			case c != "" && readAt[c].After(newestOf(byConv[c]).Add(clockMargin)):
				// Read whole (by the backfill or a webhook) after the
				// newest of these events, both times on Front's clock:
				// the table already holds it.
				outcome = "stale"
				stale = append(stale, byConv[c]...)
			default:
				outcome, err = s.applyEvents(ctx, c, byConv[c], "api")
				refetched[c] = true
			}
			if err != nil {
				return err
			}
			counts[outcome] += len(byConv[c])
			s.m.events.WithLabelValues("api", outcome).Add(float64(len(byConv[c])))
		}
		return recordEvents(ctx, s.db, stale, "api", "stale")
	})
	if err != nil {
		return cursor, counts, fmt.Errorf("read the Front events feed since %s: %w", cursor.UTC().Format(time.RFC3339), err)
	}
	return newest, counts, nil
}

// clockMargin is how long after an event herd trusts Front's API to show
// it: a conversation read (Front's Date header, whole seconds) less than
// this after an event's emitted_at is read again. Both are Front's clock;
// herd's own clock never enters the comparison.
const clockMargin = 10 * time.Second

func newestOf(evs []event) time.Time {
	var t time.Time
	for _, e := range evs {
		if e.emitted.After(t) {
			t = e.emitted
		}
	}
	return t
}

// readTimes returns when each conversation was last read whole.
func (s *Syncer) readTimes(ctx context.Context, ids []string) (map[string]time.Time, error) {
	rows, _ := s.db.Query(ctx, `SELECT id, children_synced_at FROM front.conversations WHERE id = ANY($1) AND children_synced_at IS NOT NULL`, ids)
	m := map[string]time.Time{}
	var id string
	var t time.Time
	_, err := pgx.ForEachRow(rows, []any{&id, &t}, func() error { m[id] = t; return nil })
	if err != nil {
		return nil, fmt.Errorf("read front.conversations: %w", err)
	}
	return m, nil
}
