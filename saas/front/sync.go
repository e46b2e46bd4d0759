package front

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/herdhq/herd/saas"
	"github.com/jackc/pgx/v5"
)

// full backfills every object, then runs an incremental pass to catch what
// happened meanwhile. resume, when set, is the events row of an interrupted
// backfill: objects it finished are skipped, and an object it was in the
// middle of continues from the page it had reached.
//
// The mark is the newest event when the backfill starts: the incremental
// pass that follows reads the feed from there (less the lookback), so that
// a change made while an object was being listed is applied after it.
func (s *Syncer) full(ctx context.Context, resume *state) error {
	var mark, started time.Time
	if resume != nil && resume.Cursor != nil {
		mark, started = *resume.Cursor, *resume.BackfillStarted
	} else {
		var err error
		if started, err = s.dbNow(ctx); err != nil {
			return err
		}
		if mark, err = s.newestEvent(ctx, started); err != nil {
			return err
		}
		if err := setState(ctx, s.db, "events", map[string]any{
			"phase": "backfill", "backfill_started_at": started, "backfill_finished_at": nil, "cursor": mark,
		}); err != nil {
			return err
		}
	}
	for i := range objects {
		obj := &objects[i]
		st, err := s.state(ctx, obj.Table)
		if err != nil {
			return err
		}
		if st.BackfillFinished != nil && !st.BackfillFinished.Before(started) {
			continue
		}
		if err := s.backfillObject(ctx, obj, started, st); err != nil {
			return err
		}
	}
	if err := setState(ctx, s.db, "events", map[string]any{
		"phase": "incremental", "backfill_finished_at": time.Now(), "synced_until": started,
	}); err != nil {
		return err
	}
	return s.incremental(ctx)
}

// newestEvent returns the emitted time of the company's newest event, or
// fallback when there is none.
func (s *Syncer) newestEvent(ctx context.Context, fallback time.Time) (time.Time, error) {
	p, err := s.api.list(ctx, s.api.url("/events", url.Values{"limit": {"1"}}))
	if err != nil {
		return time.Time{}, fmt.Errorf("read the newest Front event: %w", err)
	}
	if len(p.Results) == 0 {
		return fallback, nil
	}
	ev, err := parseEvent(p.Results[0])
	if err != nil {
		return time.Time{}, err
	}
	return ev.emitted, nil
}

// backfillObject lists every object of one type, page by page, saving the
// next page's link after each so that a restart resumes there. Rows the
// listing did not return are then marked deleted.
func (s *Syncer) backfillObject(ctx context.Context, obj *object, started time.Time, st state) error {
	var start time.Time
	var rows int64
	u := s.firstPage(obj.Path, nil)
	if st.Phase == "backfill" && st.BackfillStarted != nil && !st.BackfillStarted.Before(started) {
		// Begun by this backfill: continue at the saved page; none saved
		// means the last page was written and only the finish is left.
		start, u = *st.BackfillStarted, ""
		if st.NextURL != nil {
			u = *st.NextURL
		}
		if st.BackfillRows != nil {
			rows = *st.BackfillRows
		}
		s.log.Info("front backfill: resuming", "object", obj.Table, "rows", rows)
	} else {
		var err error
		if start, err = s.dbNow(ctx); err != nil {
			return err
		}
		if err := setState(ctx, s.db, obj.Table, map[string]any{
			"phase": "backfill", "backfill_started_at": start, "backfill_finished_at": nil, "next_url": u, "backfill_rows": 0,
		}); err != nil {
			return err
		}
	}
	progress := saas.NewProgress(s.plog, "front", obj.Table, 0, rows)
	for u != "" {
		fetched := s.now()
		p, err := s.api.list(ctx, u)
		if err != nil {
			// A page read whole whose next link is unusable counts.
			return fmt.Errorf("backfill front.%s after %d rows: %w", obj.Table, rows+int64(len(p.Results)), err)
		}
		rows += int64(len(p.Results))
		bookmark := func(tx pgx.Tx) error {
			return setState(ctx, tx, obj.Table, map[string]any{"next_url": nilIfEmpty(p.Next), "backfill_rows": rows})
		}
		if obj.Table == "conversations" {
			err = s.backfillConversations(ctx, p.Results, fetched, p.At, bookmark)
		} else {
			err = s.writePage(ctx, obj.Table, p.Results, fetched, bookmark)
		}
		if err != nil {
			return fmt.Errorf("backfill front.%s: %w", obj.Table, err)
		}
		progress.Add(len(p.Results))
		u = p.Next
	}
	marked, err := markUnlisted(ctx, s.db, obj.Table, start, nil)
	if err != nil {
		return fmt.Errorf("backfill front.%s: %w", obj.Table, err)
	}
	now := time.Now()
	cols := map[string]any{"phase": "incremental", "backfill_finished_at": now, "next_url": nil, "backfill_rows": rows,
		"last_success_at": now, "last_error": nil, "synced_until": start, "reconciled_at": start}
	if obj.Fresh == updated {
		cols["cursor"] = start
	}
	if err := setState(ctx, s.db, obj.Table, cols); err != nil {
		return err
	}
	progress.Done()
	if marked > 0 {
		s.log.Info("front backfill: rows Front no longer lists marked deleted", "object", obj.Table, "rows", marked)
	}
	return nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// writePage writes one page of a top-level object (not conversations) in
// one transaction, with then (when set) in it.
func (s *Syncer) writePage(ctx context.Context, table string, items []json.RawMessage, fetched time.Time, then func(pgx.Tx) error) error {
	_, err := s.writeRows(ctx, table, items, fetched, then, false)
	return err
}

// writeRows is writePage returning the ids it read; when onlyChanged, rows
// whose stored state is the one read are left alone.
func (s *Syncer) writeRows(ctx context.Context, table string, items []json.RawMessage, fetched time.Time, then func(pgx.Tx) error, onlyChanged bool) ([]string, error) {
	rows := make([]row, 0, len(items))
	ids := make([]string, 0, len(items))
	for _, it := range items {
		r, err := newRow(it, fetched)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
		ids = append(ids, r.id)
		s.fresh.Applied(r.version)
	}
	var n int64
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		if n, err = upsertRows(ctx, tx, table, rows, onlyChanged); err != nil {
			return err
		}
		if then != nil {
			return then(tx)
		}
		return nil
	})
	if err == nil {
		s.m.rows.WithLabelValues(table).Add(float64(n))
	}
	return ids, err
}

// backfillConversations reads each conversation of a page whole, then
// writes the page in one transaction, with then (the backfill's bookmark)
// in it: a restart redoes at most the page it was in, and never a
// conversation already written.
//
// at is Front's clock when it answered the page (kept as the
// conversations' children_synced_at, which the events feed compares with
// events' emitted_at, also Front's clock).
func (s *Syncer) backfillConversations(ctx context.Context, items []json.RawMessage, fetched, at time.Time, then func(pgx.Tx) error) error {
	ws := make([]whole, 0, len(items))
	for _, it := range items {
		c, err := newRow(it, fetched)
		if err != nil {
			return err
		}
		c.deleted = conversationDeleted(it)
		w := whole{conv: c, fetched: s.now(), readAt: at}
		if !c.deleted {
			if w.msgs, w.comments, err = s.children(ctx, c.id); err != nil {
				return err
			}
		}
		ws = append(ws, w)
	}
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := s.writeConversations(ctx, tx, ws); err != nil {
			return err
		}
		return then(tx)
	})
}

// markUnlisted flags the rows of table a whole listing that started at
// start did not write (synced_at is the warehouse's clock, like start) and
// whose ids are not in listed (the rows it read but left unchanged); a row
// a webhook wrote meanwhile has a later synced_at and is kept. The parts
// of deleted conversations are flagged with them.
func markUnlisted(ctx context.Context, q querier, table string, start time.Time, listed []string) (int64, error) {
	t := pgx.Identifier{"front", table}.Sanitize()
	if listed == nil {
		listed = []string{}
	}
	tag, err := q.Exec(ctx, `UPDATE `+t+` SET deleted = true, synced_at = now()
		WHERE NOT deleted AND synced_at < $1 AND NOT (id = ANY($2))`, start, listed)
	if err != nil {
		return 0, fmt.Errorf("mark rows of %s Front no longer lists as deleted: %w", t, err)
	}
	if table == "conversations" {
		for _, c := range []string{"front.messages", "front.comments"} {
			_, err := q.Exec(ctx, `UPDATE `+c+` m SET deleted = true, synced_at = now()
				FROM front.conversations c WHERE c.id = m.conversation_id AND c.deleted AND NOT m.deleted`)
			if err != nil {
				return 0, fmt.Errorf("mark the parts of deleted conversations deleted: %w", err)
			}
		}
	}
	return tag.RowsAffected(), nil
}

// listWhole lists every object of one type and marks the ones missing as
// deleted.
func (s *Syncer) listWhole(ctx context.Context, obj *object) error {
	start, err := s.dbNow(ctx)
	if err != nil {
		return err
	}
	var listed []string
	err = s.api.all(ctx, s.firstPage(obj.Path, nil), func(items []json.RawMessage) error {
		ids, err := s.writeRows(ctx, obj.Table, items, s.now(), nil, true)
		listed = append(listed, ids...)
		return err
	})
	if err != nil {
		return fmt.Errorf("list front.%s: %w", obj.Table, err)
	}
	if _, err := markUnlisted(ctx, s.db, obj.Table, start, listed); err != nil {
		return err
	}
	return setState(ctx, s.db, obj.Table, map[string]any{"reconciled_at": start, "synced_until": start,
		"last_success_at": time.Now(), "last_error": nil})
}

// incremental applies the events feed since the cursor (less the
// lookback), reads contacts updated since theirs, and lists the small
// objects whole; accounts and contacts are listed whole every
// Config.Reconcile to find the ones deleted without a trace.
func (s *Syncer) incremental(ctx context.Context) error {
	passStart, err := s.dbNow(ctx)
	if err != nil {
		return err
	}
	st, err := s.state(ctx, "events")
	if err != nil {
		return err
	}
	var cursor time.Time
	if st.Cursor != nil {
		cursor = *st.Cursor
	}
	newest, counts, err := s.syncEvents(ctx, cursor)
	if err != nil {
		return err
	}
	for i := range objects {
		obj := &objects[i]
		ost, err := s.state(ctx, obj.Table)
		if err != nil {
			return err
		}
		due := ost.ReconciledAt == nil || passStart.Sub(*ost.ReconciledAt) >= s.cfg.Reconcile
		switch {
		case obj.Fresh == everyPass, (obj.Fresh == reconcile || obj.Fresh == updated) && due:
			err = s.listWhole(ctx, obj)
		case obj.Fresh == updated:
			err = s.updatedSince(ctx, obj, ost)
		}
		if err != nil {
			return err
		}
	}
	if err := setState(ctx, s.db, "events", map[string]any{
		"phase": "incremental", "cursor": newest, "synced_until": passStart,
		"last_success_at": time.Now(), "last_error": nil, "last_error_at": nil,
	}); err != nil {
		return err
	}
	if err := setState(ctx, s.db, "conversations", map[string]any{"synced_until": passStart, "last_success_at": time.Now()}); err != nil {
		return err
	}
	s.fresh.SyncedUntil(passStart)
	s.m.lastSuccess.Set(float64(time.Now().Unix()))
	s.log.Info("front incremental sync", "applied", counts["applied"], "stale", counts["stale"],
		"ignored", counts["ignored"], "already_applied", counts["duplicate"], "cursor", newest.UTC())
	return nil
}

// updatedSince reads the objects updated since the object's cursor less
// the lookback.
func (s *Syncer) updatedSince(ctx context.Context, obj *object, st state) error {
	start, err := s.dbNow(ctx)
	if err != nil {
		return err
	}
	q := url.Values{}
	if st.Cursor != nil {
		q.Set("q[updated_after]", frontTime(st.Cursor.Add(-s.cfg.Lookback)))
	}
	err = s.api.all(ctx, s.firstPage(obj.Path, q), func(items []json.RawMessage) error {
		return s.writePage(ctx, obj.Table, items, s.now(), nil)
	})
	if err != nil {
		return fmt.Errorf("list front.%s updated since %v: %w", obj.Table, st.Cursor, err)
	}
	return setState(ctx, s.db, obj.Table, map[string]any{"cursor": start, "synced_until": start,
		"last_success_at": time.Now(), "last_error": nil})
}
