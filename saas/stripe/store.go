package stripe

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
}

// The guard: a row is replaced only by the state of an event at least as new
// as the one it holds. Equal is allowed because the object is refetched: two
// events in the same second both write the object's current state. Objects
// without events (balance transactions) are written with no version (NULL),
// which always passes.
const guard = `t.last_event_created IS NULL OR EXCLUDED.last_event_created IS NULL
	OR t.last_event_created <= EXCLUDED.last_event_created`

// upsert writes an object's current state, unless the table holds a newer
// event's; it returns the number of rows written (0 or 1).
func upsert(ctx context.Context, q querier, obj *object, id string, data []byte, version *time.Time) (int64, error) {
	table := pgx.Identifier{"stripe", obj.Table}.Sanitize()
	tag, err := q.Exec(ctx, `INSERT INTO `+table+` AS t (id, data, deleted, last_event_created, synced_at)
		VALUES ($1, $2, false, $3, now())
		ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, deleted = false,
			last_event_created = EXCLUDED.last_event_created, synced_at = EXCLUDED.synced_at
		WHERE `+guard, id, data, version)
	if err != nil {
		return 0, fmt.Errorf("upsert %s %s: %w", table, id, err)
	}
	return tag.RowsAffected(), nil
}

// markDeleted flags a row as deleted, keeping its last known state; when
// there is no row, last (the event's copy of the object) is stored.
func markDeleted(ctx context.Context, q querier, obj *object, id string, last []byte, version *time.Time) (int64, error) {
	table := pgx.Identifier{"stripe", obj.Table}.Sanitize()
	if len(last) == 0 {
		last, _ = json.Marshal(map[string]any{"id": id, "object": obj.Kind, "deleted": true})
	}
	tag, err := q.Exec(ctx, `INSERT INTO `+table+` AS t (id, data, deleted, last_event_created, synced_at)
		VALUES ($1, $2, true, $3, now())
		ON CONFLICT (id) DO UPDATE SET deleted = true,
			last_event_created = EXCLUDED.last_event_created, synced_at = EXCLUDED.synced_at
		WHERE `+guard, id, last, version)
	if err != nil {
		return 0, fmt.Errorf("mark %s %s deleted: %w", table, id, err)
	}
	return tag.RowsAffected(), nil
}

type row struct {
	id   string
	data json.RawMessage
}

func objectID(data []byte) (string, error) {
	var o struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &o); err != nil || o.ID == "" {
		return "", fmt.Errorf("stripe object without an id: %.200s", data)
	}
	return o.ID, nil
}

// upsertBatch writes rows in one transaction and one round trip.
func (s *Syncer) upsertBatch(ctx context.Context, obj *object, rows []row, version *time.Time) (int64, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	var n int64
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		for _, r := range rows {
			k, err := upsert(ctx, tx, obj, r.id, r.data, version)
			if err != nil {
				return err
			}
			n += k
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.m.rows.WithLabelValues(obj.Table).Add(float64(n))
	return n, nil
}

// state is a row of stripe.sync_state.
type state struct {
	Phase            string
	BackfillStarted  *time.Time
	BackfillFinished *time.Time
	Cursor           *time.Time
	CursorEventID    *string
	SyncedUntil      *time.Time
}

func (s *Syncer) state(ctx context.Context, object string) (state, error) {
	var st state
	err := s.db.QueryRow(ctx, `SELECT phase, backfill_started_at, backfill_finished_at, cursor, cursor_event_id, synced_until
		FROM stripe.sync_state WHERE object = $1`, object).
		Scan(&st.Phase, &st.BackfillStarted, &st.BackfillFinished, &st.Cursor, &st.CursorEventID, &st.SyncedUntil)
	if err == pgx.ErrNoRows {
		return state{Phase: "pending"}, nil
	}
	if err != nil {
		return st, fmt.Errorf("read stripe.sync_state for %s: %w (has 'herd migrate' run?)", object, err)
	}
	return st, nil
}

func (s *Syncer) eventsState(ctx context.Context) (state, error) { return s.state(ctx, "events") }

// setState writes the given columns of object's row in stripe.sync_state.
// Column names come from this package, never from input.
func (s *Syncer) setState(ctx context.Context, object string, cols map[string]any) error {
	return saas.SetSyncState(ctx, s.db, "stripe", object, cols)
}

func (s *Syncer) dbNow(ctx context.Context) (time.Time, error) { return saas.DBNow(ctx, s.db) }
