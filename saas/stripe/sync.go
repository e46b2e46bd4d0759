package stripe

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	sg "github.com/stripe/stripe-go/v82"
)

// full backfills every object, then runs an incremental pass to catch the
// events that happened meanwhile. resume, when set, is the state of an
// interrupted backfill: objects it finished are skipped and its mark reused.
//
// The mark is the newest event when the backfill starts. Backfilled rows carry
// it as their version: an event older than the mark, delivered late, is
// already reflected in the listing and must not overwrite it, and a webhook
// newer than the mark that lands during the backfill must not be overwritten
// by the listing.
func (s *Syncer) full(ctx context.Context, resume *state) error {
	passStart := s.now()
	var mark time.Time
	var markID *string
	var started time.Time
	if resume != nil && resume.Cursor != nil {
		mark, markID, started = *resume.Cursor, resume.CursorEventID, *resume.BackfillStarted
		passStart = started
	} else {
		var err error
		mark, markID, err = s.newestEvent(ctx)
		if err != nil {
			return err
		}
		if started, err = s.dbNow(ctx); err != nil {
			return err
		}
		if err := s.setState(ctx, "events", map[string]any{
			"phase": "backfill", "backfill_started_at": started, "backfill_finished_at": nil,
			"cursor": mark, "cursor_event_id": markID,
		}); err != nil {
			return err
		}
	}
	for i := range objects {
		obj := &objects[i]
		if resume != nil {
			st, err := s.state(ctx, obj.Table)
			if err != nil {
				return err
			}
			if st.BackfillFinished != nil && !st.BackfillFinished.Before(started) {
				continue
			}
		}
		if err := s.backfillObject(ctx, obj, mark); err != nil {
			return err
		}
	}
	if err := s.setState(ctx, "events", map[string]any{
		"phase": "incremental", "backfill_finished_at": time.Now(), "synced_until": passStart,
	}); err != nil {
		return err
	}
	return s.incremental(ctx)
}

// newestEvent returns the created time and id of the account's newest event,
// or the Unix epoch and nil when there is none.
func (s *Syncer) newestEvent(ctx context.Context) (time.Time, *string, error) {
	p := &sg.EventListParams{ListParams: sg.ListParams{Limit: sg.Int64(1), Single: true}}
	for e, err := range s.api.V1Events.List(ctx, p) {
		if err != nil {
			return time.Time{}, nil, fmt.Errorf("read the newest Stripe event: %w", err)
		}
		id := e.ID
		return time.Unix(e.Created, 0), &id, nil
	}
	return time.Unix(0, 0), nil, nil
}

func (s *Syncer) listParams() sg.ListParams {
	return sg.ListParams{Limit: sg.Int64(s.cfg.PageSize)}
}

// backfillObject lists every object of one type and writes it; rows the
// listing did not return are then marked deleted, unless an event newer than
// the mark wrote them meanwhile.
func (s *Syncer) backfillObject(ctx context.Context, obj *object, mark time.Time) error {
	start, err := s.dbNow(ctx)
	if err != nil {
		return err
	}
	if err := s.setState(ctx, obj.Table, map[string]any{"phase": "backfill", "backfill_started_at": start}); err != nil {
		return err
	}
	version := &mark
	if !obj.HasEvents {
		version = nil
	}
	t0 := time.Now()
	lastLog := t0
	var listed int64
	var newest int64
	batch := make([]row, 0, 500)
	flush := func() error {
		_, err := s.upsertBatch(ctx, obj, batch, version)
		batch = batch[:0]
		return err
	}
	for data, err := range obj.list(ctx, s.api, s.listParams(), 0) {
		if err != nil {
			return fmt.Errorf("backfill stripe.%s: list from Stripe after %d objects: %w", obj.Table, listed, err)
		}
		id, err := objectID(data)
		if err != nil {
			return fmt.Errorf("backfill stripe.%s: %w", obj.Table, err)
		}
		if c := createdOf(data); c > newest {
			newest = c
		}
		batch = append(batch, row{id, data})
		listed++
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return fmt.Errorf("backfill stripe.%s: %w", obj.Table, err)
			}
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			s.log.Info("stripe backfill in progress", "object", obj.Table, "rows", listed, "elapsed", time.Since(t0).Round(time.Second))
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("backfill stripe.%s: %w", obj.Table, err)
	}
	table := pgx.Identifier{"stripe", obj.Table}.Sanitize()
	tag, err := s.db.Exec(ctx, `UPDATE `+table+` SET deleted = true, synced_at = now()
		WHERE NOT deleted AND synced_at < $1 AND (last_event_created IS NULL OR last_event_created <= $2)`, start, mark)
	if err != nil {
		return fmt.Errorf("backfill stripe.%s: mark rows Stripe no longer lists as deleted: %w", obj.Table, err)
	}
	cols := map[string]any{"phase": "incremental", "backfill_finished_at": time.Now(), "backfill_rows": listed,
		"last_success_at": time.Now(), "last_error": nil}
	if !obj.HasEvents && newest > 0 {
		cols["cursor"] = time.Unix(newest, 0)
	}
	if err := s.setState(ctx, obj.Table, cols); err != nil {
		return err
	}
	s.log.Info("stripe backfill", "object", obj.Table, "rows", listed, "marked_deleted", tag.RowsAffected(),
		"elapsed", time.Since(t0).Round(time.Millisecond))
	return nil
}

// incremental applies every event created since the cursor (less the
// overlap), newest first: the first event of an object refetches it, and the
// older ones for the same object are then recognised as stale without an API
// call. The cursor moves only when the whole pass succeeded; a failed pass is
// repeated, and events it already applied are skipped.
func (s *Syncer) incremental(ctx context.Context) error {
	st, err := s.eventsState(ctx)
	if err != nil {
		return err
	}
	passStart := s.now()
	p := &sg.EventListParams{ListParams: s.listParams()}
	var cursor time.Time
	if st.Cursor != nil {
		cursor = *st.Cursor
		if from := cursor.Add(-s.cfg.EventOverlap).Unix(); from > 0 {
			p.CreatedRange = &sg.RangeQueryParams{GreaterThanOrEqual: from}
		}
	}
	cursorID := st.CursorEventID
	counts := map[string]int{}
	for e, err := range s.api.V1Events.List(ctx, p) {
		if err != nil {
			return fmt.Errorf("list Stripe events since %s: %w", cursor.UTC().Format(time.RFC3339), err)
		}
		if e.LastResponse == nil {
			return fmt.Errorf("list Stripe events: stripe-go returned event %s without its raw JSON", e.ID)
		}
		ev, err := parseEvent(e.LastResponse.RawJSON)
		if err != nil {
			return err
		}
		outcome, err := s.applyEvent(ctx, ev, "api")
		if err != nil {
			return err
		}
		counts[outcome]++
		if c := time.Unix(ev.Created, 0); c.After(cursor) {
			cursor, cursorID = c, &ev.ID
		}
	}
	if err := s.balanceTransactions(ctx); err != nil {
		return err
	}
	if err := s.setState(ctx, "events", map[string]any{
		"phase": "incremental", "cursor": cursor, "cursor_event_id": cursorID, "synced_until": passStart,
		"last_success_at": time.Now(), "last_error": nil, "last_error_at": nil,
	}); err != nil {
		return err
	}
	s.m.lastSuccess.Set(float64(time.Now().Unix()))
	s.log.Info("stripe incremental sync", "applied", counts["applied"], "stale", counts["stale"],
		"ignored", counts["ignored"], "already_applied", counts["duplicate"], "cursor", cursor.UTC())
	return nil
}

// balanceTransactions keeps the one object without events fresh: it lists the
// recent ones, and refetches those still pending past their available_on
// (their status is the only thing that changes).
func (s *Syncer) balanceTransactions(ctx context.Context) error {
	obj := objectByTable("balance_transactions")
	st, err := s.state(ctx, obj.Table)
	if err != nil {
		return err
	}
	var since, newest int64
	if st.Cursor != nil {
		since = max(st.Cursor.Add(-s.cfg.BalanceLookback).Unix(), 1)
		newest = st.Cursor.Unix()
	}
	var batch []row
	for data, err := range obj.list(ctx, s.api, s.listParams(), since) {
		if err != nil {
			return fmt.Errorf("list Stripe balance transactions since %d: %w", since, err)
		}
		id, err := objectID(data)
		if err != nil {
			return err
		}
		newest = max(newest, createdOf(data))
		batch = append(batch, row{id, data})
	}
	if _, err := s.upsertBatch(ctx, obj, batch, nil); err != nil {
		return err
	}
	rows, _ := s.db.Query(ctx, `SELECT id FROM stripe.balance_transactions
		WHERE status = 'pending' AND available_on <= now() AND NOT deleted ORDER BY available_on LIMIT 1000`)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read pending balance transactions: %w", err)
	}
	for _, id := range ids {
		data, err := obj.get(ctx, s.api, id)
		if err != nil {
			return fmt.Errorf("retrieve balance transaction %s from Stripe: %w", id, err)
		}
		if _, err := s.upsertBatch(ctx, obj, []row{{id, data}}, nil); err != nil {
			return err
		}
	}
	cols := map[string]any{"last_success_at": time.Now()}
	if newest > 0 {
		cols["cursor"] = time.Unix(newest, 0)
	}
	return s.setState(ctx, obj.Table, cols)
}

func createdOf(data []byte) int64 {
	var o struct {
		Created int64 `json:"created"`
	}
	_ = json.Unmarshal(data, &o)
	return o.Created
}
