package front

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
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// row is one object to write.
type row struct {
	id      string
	conv    string // conversation id, for messages and comments
	data    json.RawMessage
	deleted bool
	version time.Time
}

// newRow reads an object's id and version: its updated_at when Front gives
// one, else fetched (when herd asked for this state: a later request sees
// a state at least as new).
func newRow(data json.RawMessage, fetched time.Time) (row, error) {
	var o struct {
		ID        string          `json:"id"`
		UpdatedAt json.RawMessage `json:"updated_at"`
	}
	if err := json.Unmarshal(data, &o); err != nil || o.ID == "" {
		return row{}, fmt.Errorf("front object without an id: %.200s", data)
	}
	r := row{id: o.ID, data: data, version: fetched}
	if t, ok := parseFrontTime(o.UpdatedAt); ok {
		r.version = t
	}
	return r, nil
}

// The guard: a row is replaced only by a state at least as new as the one
// it holds. Equal passes, so that a repeated pass rewrites the same state.
const guard = `t.version <= EXCLUDED.version`

// unchanged, added to the guard, leaves alone a row whose stored state is
// the one listed: the small tables listed whole at every pass, whose
// version is the read's time, are not rewritten (nor their synced_at
// moved) when nothing changed.
const unchanged = ` AND (t.data IS DISTINCT FROM EXCLUDED.data OR t.deleted IS DISTINCT FROM EXCLUDED.deleted)`

// upsertRows writes rows into table (in the front schema) in one round
// trip and returns how many were written; a row whose stored version is
// newer is left alone, and so is one holding the same state when
// onlyChanged.
func upsertRows(ctx context.Context, q querier, table string, rows []row, onlyChanged bool) (int64, error) {
	written := make([]bool, len(rows))
	if len(rows) > 0 {
		b := &pgx.Batch{}
		queueUpsertsIf(b, table, rows, onlyChanged)
		if err := execEach(ctx, q, table, b, rows, written); err != nil {
			return 0, err
		}
	}
	var n int64
	for _, w := range written {
		if w {
			n++
		}
	}
	return n, nil
}

// upsertEach is upsertRows reporting, in written, which rows were written.
func upsertEach(ctx context.Context, q querier, table string, rows []row, written []bool) error {
	if len(rows) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	queueUpserts(b, table, rows)
	return execEach(ctx, q, table, b, rows, written)
}

// execEach sends b, one upsert per row, and reports which rows it wrote.
func execEach(ctx context.Context, q querier, table string, b *pgx.Batch, rows []row, written []bool) error {
	br := q.SendBatch(ctx, b)
	defer br.Close()
	for i, r := range rows {
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("upsert front.%s %s: %w", table, r.id, err)
		}
		written[i] = tag.RowsAffected() > 0
	}
	return br.Close()
}

// queueUpserts adds the guarded upsert of each row to b.
func queueUpserts(b *pgx.Batch, table string, rows []row) { queueUpsertsIf(b, table, rows, false) }

// queueUpsertsIf is queueUpserts, leaving unchanged rows alone when
// onlyChanged.
func queueUpsertsIf(b *pgx.Batch, table string, rows []row, onlyChanged bool) {
	cond := guard
	if onlyChanged {
		cond += unchanged
	}
	t := pgx.Identifier{"front", table}.Sanitize()
	if table == "messages" || table == "comments" {
		sql := `INSERT INTO ` + t + ` AS t (id, conversation_id, data, deleted, version, synced_at)
			VALUES ($1, $2, $3, $4, $5, now())
			ON CONFLICT (id) DO UPDATE SET conversation_id = EXCLUDED.conversation_id, data = EXCLUDED.data,
				deleted = EXCLUDED.deleted, version = EXCLUDED.version, synced_at = EXCLUDED.synced_at
			WHERE ` + cond
		for _, r := range rows {
			b.Queue(sql, r.id, r.conv, []byte(r.data), r.deleted, r.version)
		}
		return
	}
	sql := `INSERT INTO ` + t + ` AS t (id, data, deleted, version, synced_at)
		VALUES ($1, $2, $3, $4, now())
		ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, deleted = EXCLUDED.deleted,
			version = EXCLUDED.version, synced_at = EXCLUDED.synced_at
		WHERE ` + cond
	for _, r := range rows {
		b.Queue(sql, r.id, []byte(r.data), r.deleted, r.version)
	}
}

// state is a row of front.sync_state.
type state struct {
	Phase            string
	BackfillStarted  *time.Time
	BackfillFinished *time.Time
	BackfillRows     *int64
	NextURL          *string
	Cursor           *time.Time
	ReconciledAt     *time.Time
}

func (s *Syncer) state(ctx context.Context, object string) (state, error) {
	var st state
	err := s.db.QueryRow(ctx, `SELECT phase, backfill_started_at, backfill_finished_at, backfill_rows, next_url, cursor, reconciled_at
		FROM front.sync_state WHERE object = $1`, object).
		Scan(&st.Phase, &st.BackfillStarted, &st.BackfillFinished, &st.BackfillRows, &st.NextURL, &st.Cursor, &st.ReconciledAt)
	if err == pgx.ErrNoRows {
		return state{Phase: "pending"}, nil
	}
	if err != nil {
		return st, fmt.Errorf("read front.sync_state for %s: %w (has 'herd migrate' run?)", object, err)
	}
	return st, nil
}

// setState writes the given columns of object's row in front.sync_state.
// Column names come from this package, never from input.
func setState(ctx context.Context, q querier, object string, cols map[string]any) error {
	return saas.SetSyncState(ctx, q, "front", object, cols)
}

func (s *Syncer) dbNow(ctx context.Context) (time.Time, error) { return saas.DBNow(ctx, s.db) }
