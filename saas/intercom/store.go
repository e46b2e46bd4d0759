package intercom

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/herdhq/herd/saas"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// querier is what a pool and a transaction have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// The guard: a row is replaced only by a state at least as new as the one it
// holds, by Intercom's updated_at. Equal passes. Objects without updated_at
// (admins, tags) always pass. Conversations, whose parts a stale state would
// mark deleted, also compare when they were fetched (convGuard).
const guard = `t.updated_at IS NULL OR EXCLUDED.updated_at IS NULL OR EXCLUDED.updated_at >= t.updated_at`

func table(name string) string { return pgx.Identifier{"intercom", name}.Sanitize() }

// upsertItems writes a page of objects in one statement; it returns how many
// rows were written (a row holding a newer state is left alone). Duplicate
// ids (the same object on two pages) keep the newer state.
func (s *Syncer) upsertItems(ctx context.Context, q querier, obj *object, items []json.RawMessage) (int64, error) {
	return s.upsertItemsIf(ctx, q, obj, items, guard)
}

// upsertItemsIf is upsertItems with the given guard ("true" for a repair,
// which replaces whatever the row holds).
func (s *Syncer) upsertItemsIf(ctx context.Context, q querier, obj *object, items []json.RawMessage, guard string) (int64, error) {
	if len(items) == 0 {
		return 0, nil
	}
	latest := map[string]int{}
	var newest int64
	keep := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		id, upd, err := idAndUpdated(it)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", obj.Table, err)
		}
		newest = max(newest, upd)
		if i, dup := latest[id]; dup {
			if _, prev, _ := idAndUpdated(keep[i]); upd >= prev {
				keep[i] = it
			}
			continue
		}
		latest[id] = len(keep)
		keep = append(keep, it)
	}
	arr, err := json.Marshal(keep)
	if err != nil {
		return 0, err
	}
	tag, err := q.Exec(ctx, `INSERT INTO `+table(obj.Table)+` AS t (id, data, deleted, updated_at, synced_at)
		SELECT x ->> 'id', x, false, intercom.ts(x -> 'updated_at'), now() FROM jsonb_array_elements($1::jsonb) x
		ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, deleted = false,
			updated_at = EXCLUDED.updated_at, synced_at = EXCLUDED.synced_at
		WHERE `+guard, arr)
	if err != nil {
		return 0, fmt.Errorf("upsert %d rows into intercom.%s: %w", len(keep), obj.Table, err)
	}
	n := tag.RowsAffected()
	s.m.rows.WithLabelValues(obj.Table).Add(float64(n))
	if n > 0 && newest > 0 {
		s.fresh.Applied(time.Unix(newest, 0))
	}
	return n, nil
}

// conversation is the part of GET /conversations/{id} herd reads.
type conversation struct {
	id      string
	updated int64
	data    []byte            // without conversation_parts
	parts   []json.RawMessage // at most 500: the API's cap
	total   int               // conversation_parts.total_count
	// fetched is when the request for it was sent: of two states with
	// the same updated_at (a second's resolution), the later fetch wins.
	fetched time.Time
}

// convGuard is the guard of conversations and their parts: a newer
// updated_at, or the same one fetched later. Equal fetch times pass (the
// same answer written twice).
const convGuard = `t.updated_at IS NULL OR EXCLUDED.updated_at IS NULL OR EXCLUDED.updated_at > t.updated_at
	OR (EXCLUDED.updated_at = t.updated_at AND (t.fetched_at IS NULL OR EXCLUDED.fetched_at >= t.fetched_at))`

func parseConversation(b []byte) (conversation, error) {
	var c conversation
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return c, fmt.Errorf("parse Intercom conversation: %w", err)
	}
	id, upd, err := idAndUpdated(b)
	if err != nil {
		return c, err
	}
	c.id, c.updated = id, upd
	var parts struct {
		Parts []json.RawMessage `json:"conversation_parts"`
		Total *int              `json:"total_count"`
	}
	if v, ok := raw["conversation_parts"]; ok {
		if err := json.Unmarshal(v, &parts); err != nil {
			return c, fmt.Errorf("parse Intercom conversation %s: conversation_parts: %w", id, err)
		}
	}
	c.parts = parts.Parts
	c.total = len(parts.Parts)
	if parts.Total != nil {
		c.total = *parts.Total
	}
	delete(raw, "conversation_parts")
	if c.data, err = json.Marshal(raw); err != nil {
		return c, err
	}
	return c, nil
}

// writeConversation writes a conversation fetched whole and its parts, in
// one transaction, unless the table holds a newer state. It reports whether
// it wrote.
func (s *Syncer) writeConversation(ctx context.Context, c conversation) (bool, error) {
	return s.writeConversationIf(ctx, c, false)
}

// writeConversationIf is writeConversation, unguarded when force (a repair,
// which replaces whatever the rows hold).
func (s *Syncer) writeConversationIf(ctx context.Context, c conversation, force bool) (bool, error) {
	convGuard := convGuard
	if force {
		convGuard = "true"
	}
	wrote := false
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if c.fetched.IsZero() {
			c.fetched = time.Now()
		}
		tag, err := tx.Exec(ctx, `INSERT INTO intercom.conversations AS t (id, data, deleted, updated_at, parts_total, fetched_at, synced_at)
			VALUES ($1, $2, false, to_timestamp($3), $4, $5, now())
			ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, deleted = false, updated_at = EXCLUDED.updated_at,
				parts_total = EXCLUDED.parts_total, fetched_at = EXCLUDED.fetched_at, synced_at = EXCLUDED.synced_at
			WHERE `+convGuard, c.id, c.data, c.updated, c.total, c.fetched)
		if err != nil {
			return fmt.Errorf("upsert intercom.conversations %s: %w", c.id, err)
		}
		if tag.RowsAffected() == 0 {
			return nil // a newer state is stored: its parts too
		}
		wrote = true
		ids := make([]string, 0, len(c.parts))
		for _, p := range c.parts {
			id, _, err := idAndUpdated(p)
			if err != nil {
				return fmt.Errorf("conversation %s: part: %w", c.id, err)
			}
			ids = append(ids, id)
		}
		parts, err := json.Marshal(c.parts)
		if err != nil {
			return err
		}
		tag, err = tx.Exec(ctx, `INSERT INTO intercom.conversation_parts AS t (id, conversation_id, data, deleted, updated_at, fetched_at, synced_at)
			SELECT DISTINCT ON (x ->> 'id') x ->> 'id', $1, x, false, intercom.ts(x -> 'updated_at'), $3, now()
			FROM jsonb_array_elements($2::jsonb) x ORDER BY x ->> 'id', intercom.ts(x -> 'updated_at') DESC
			ON CONFLICT (id) DO UPDATE SET conversation_id = EXCLUDED.conversation_id, data = EXCLUDED.data, deleted = false,
				updated_at = EXCLUDED.updated_at, fetched_at = EXCLUDED.fetched_at, synced_at = EXCLUDED.synced_at
			WHERE `+convGuard, c.id, parts, c.fetched)
		if err != nil {
			return fmt.Errorf("upsert the %d parts of conversation %s: %w", len(c.parts), c.id, err)
		}
		s.m.rows.WithLabelValues("conversation_parts").Add(float64(tag.RowsAffected()))
		// Only a complete list of parts says which ones are gone: past the
		// API's cap, the parts not returned may still exist. A part a later
		// fetch stored is never marked deleted by an earlier one.
		if len(c.parts) >= c.total {
			if _, err := tx.Exec(ctx, `UPDATE intercom.conversation_parts t SET deleted = true, synced_at = now()
				WHERE conversation_id = $1 AND NOT deleted AND id <> ALL($2) AND (fetched_at IS NULL OR fetched_at <= $3 OR $4)`,
				c.id, ids, c.fetched, force); err != nil {
				return fmt.Errorf("mark parts no longer in conversation %s deleted: %w", c.id, err)
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if wrote {
		s.m.rows.WithLabelValues("conversations").Inc()
		s.fresh.Applied(time.Unix(c.updated, 0))
	}
	return wrote, nil
}

// markDeleted flags the row id of obj deleted (and a conversation's parts),
// keeping its last state.
func (s *Syncer) markDeleted(ctx context.Context, obj *object, id string) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE `+table(obj.Table)+` SET deleted = true, synced_at = now() WHERE id = $1 AND NOT deleted`, id); err != nil {
			return fmt.Errorf("mark intercom.%s %s deleted: %w", obj.Table, id, err)
		}
		if obj.Parts {
			if _, err := tx.Exec(ctx, `UPDATE intercom.conversation_parts SET deleted = true, synced_at = now() WHERE conversation_id = $1 AND NOT deleted`, id); err != nil {
				return fmt.Errorf("mark the parts of conversation %s deleted: %w", id, err)
			}
		}
		return nil
	})
}

// markUnseenDeleted flags every row of obj not written since since (the
// start of a listing of every object) deleted, and the parts of the
// conversations among them. It returns how many rows it flagged.
func markUnseenDeleted(ctx context.Context, q querier, obj *object, since time.Time, seen string) (int64, error) {
	cond := `NOT deleted AND synced_at < $1`
	if seen != "" {
		cond += ` AND NOT EXISTS (SELECT FROM ` + seen + ` s WHERE s.id = t.id)`
	}
	tag, err := q.Exec(ctx, `UPDATE `+table(obj.Table)+` t SET deleted = true, synced_at = now() WHERE `+cond, since)
	if err != nil {
		return 0, fmt.Errorf("mark rows of intercom.%s that Intercom no longer lists deleted: %w", obj.Table, err)
	}
	if obj.Parts && tag.RowsAffected() > 0 {
		if _, err := q.Exec(ctx, `UPDATE intercom.conversation_parts p SET deleted = true, synced_at = now()
			FROM intercom.conversations c WHERE c.id = p.conversation_id AND c.deleted AND NOT p.deleted`); err != nil {
			return 0, fmt.Errorf("mark the parts of deleted conversations deleted: %w", err)
		}
	}
	return tag.RowsAffected(), nil
}

// state is a row of intercom.sync_state.
type state struct {
	Phase            string
	BackfillStarted  *time.Time
	BackfillFinished *time.Time
	BackfillRows     *int64
	BackfillMark     *time.Time
	Cursor           *string
	SyncedUntil      *time.Time
	SweptAt          *time.Time
}

func (s *Syncer) state(ctx context.Context, object string) (state, error) {
	var st state
	err := s.db.QueryRow(ctx, `SELECT phase, backfill_started_at, backfill_finished_at, backfill_rows, backfill_mark, cursor, synced_until, swept_at
		FROM intercom.sync_state WHERE object = $1`, object).
		Scan(&st.Phase, &st.BackfillStarted, &st.BackfillFinished, &st.BackfillRows, &st.BackfillMark, &st.Cursor, &st.SyncedUntil, &st.SweptAt)
	if err == pgx.ErrNoRows {
		return state{Phase: "pending"}, nil
	}
	if err != nil {
		return st, fmt.Errorf("read intercom.sync_state for %s: %w (has 'herd migrate' run?)", object, err)
	}
	return st, nil
}

// setState writes the given columns of object's row in intercom.sync_state.
// Column names come from this package, never from input.
func (s *Syncer) setState(ctx context.Context, object string, cols map[string]any) error {
	return saas.SetSyncState(ctx, s.db, "intercom", object, cols)
}

func (s *Syncer) dbNow(ctx context.Context) (time.Time, error) { return saas.DBNow(ctx, s.db) }
