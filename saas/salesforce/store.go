package salesforce

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/herdhq/herd/saas"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// sfTimeLayout is a SOQL datetime literal and a getDeleted parameter:
// YYYY-MM-DDThh:mm:ssZ, without fraction (Salesforce keeps datetimes to the
// second, and SOQL refuses a literal with milliseconds).
const sfTimeLayout = "2006-01-02T15:04:05Z"

// parseTime reads a datetime as the REST API (+0000) or Bulk CSV (Z) writes it.
func parseTime(s string) (time.Time, error) {
	for _, l := range []string{"2006-01-02T15:04:05.000-0700", "2006-01-02T15:04:05-0700", "2006-01-02T15:04:05.000Z07:00", time.RFC3339Nano} {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a Salesforce datetime: %.40q", s)
}

// record is one record ready to write: its Id, SystemModstamp and the
// fields as JSON.
type record struct {
	id       string
	modstamp time.Time
	data     json.RawMessage
}

// fromREST reads a REST query record, dropping its "attributes".
func fromREST(raw json.RawMessage) (record, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return record{}, fmt.Errorf("Salesforce record is not an object: %w", err)
	}
	delete(m, "attributes")
	var r record
	if err := json.Unmarshal(m["Id"], &r.id); err != nil || r.id == "" {
		return r, fmt.Errorf("Salesforce record without an Id: %.200s", raw)
	}
	var ms string
	if json.Unmarshal(m["SystemModstamp"], &ms) == nil && ms != "" {
		t, err := parseTime(ms)
		if err != nil {
			return r, fmt.Errorf("record %s: %w", r.id, err)
		}
		r.modstamp = t
	}
	data, err := json.Marshal(m)
	r.data = data
	return r, err
}

// csvRecords reads one page of Bulk 2.0 CSV results into records typed as
// the REST API would have sent them (an empty cell is null).
func csvRecords(body []byte, types map[string]string) ([]record, error) {
	rd := csv.NewReader(strings.NewReader(string(body)))
	rd.ReuseRecord = false
	header, err := rd.Read()
	if err == io.EOF {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bulk results header: %w", err)
	}
	var out []record
	for {
		row, err := rd.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("bulk results: %w", err)
		}
		m := make(map[string]any, len(header))
		for i, name := range header {
			if i >= len(row) {
				break
			}
			v := row[i]
			if v == "" {
				m[name] = nil
				continue
			}
			switch strings.ToLower(types[name]) {
			case "boolean":
				m[name] = v == "true"
			case "int", "long", "double", "currency", "percent":
				m[name] = json.Number(v)
			default:
				m[name] = v
			}
		}
		var r record
		r.id, _ = m["Id"].(string)
		if r.id == "" {
			return nil, errors.New("bulk results row without an Id: is Id in the query?")
		}
		if ms, ok := m["SystemModstamp"].(string); ok {
			if r.modstamp, err = parseTime(ms); err != nil {
				return nil, fmt.Errorf("record %s: %w", r.id, err)
			}
		}
		if r.data, err = json.Marshal(m); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
}

// upsertSQL is the statement writing a batch into o's table: one row per
// element of the JSON array $1, typed columns cast from it, guarded by
// SystemModstamp so that an older state never overwrites a newer one (equal
// passes: a refetch after a new field rewrites the row).
func upsertSQL(o *objectTable) (string, []any) {
	cols := []string{"id", "data", "is_deleted", "system_modstamp", "synced_at"}
	vals := []string{`r->>'Id'`, `r`, `coalesce((r->>'IsDeleted')::boolean, false)`, `(r->>'SystemModstamp')::timestamptz`, `now()`}
	sets := []string{"data = EXCLUDED.data", "is_deleted = EXCLUDED.is_deleted", "system_modstamp = EXCLUDED.system_modstamp", "synced_at = EXCLUDED.synced_at"}
	var args []any
	for _, c := range o.Columns {
		args = append(args, c.Field)
		id := pgx.Identifier{c.Column}.Sanitize()
		cols = append(cols, id)
		if c.PGType == "jsonb" {
			vals = append(vals, fmt.Sprintf("(r->$%d)", len(args)+1))
		} else {
			vals = append(vals, fmt.Sprintf("(r->>$%d)::%s", len(args)+1, c.PGType))
		}
		sets = append(sets, id+" = EXCLUDED."+id)
	}
	return `INSERT INTO ` + o.qualified() + ` AS t (` + strings.Join(cols, ", ") + `)
		SELECT ` + strings.Join(vals, ", ") + ` FROM jsonb_array_elements($1::jsonb) AS r
		ON CONFLICT (id) DO UPDATE SET ` + strings.Join(sets, ", ") + `
		WHERE t.system_modstamp IS NULL OR EXCLUDED.system_modstamp IS NULL OR t.system_modstamp <= EXCLUDED.system_modstamp`, args
}

// writeChunk is the most records one statement writes.
const writeChunk = 2000

// write upserts records (deduplicated by Id, the newest kept) and returns
// how many rows changed.
func (s *Syncer) write(ctx context.Context, o *objectTable, recs []record) (int64, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	byID := make(map[string]int, len(recs))
	uniq := recs[:0:0]
	for _, r := range recs {
		if i, ok := byID[r.id]; ok {
			if !r.modstamp.Before(uniq[i].modstamp) {
				uniq[i] = r
			}
			continue
		}
		byID[r.id] = len(uniq)
		uniq = append(uniq, r)
	}
	q, args := upsertSQL(o)
	var written int64
	for start := 0; start < len(uniq); start += writeChunk {
		var b strings.Builder
		b.WriteByte('[')
		for i, r := range uniq[start:min(len(uniq), start+writeChunk)] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(r.data)
		}
		b.WriteByte(']')
		tag, err := s.db.Exec(ctx, q, append([]any{b.String()}, args...)...)
		if err != nil {
			return written, fmt.Errorf("write %d %s records: %w", len(uniq), o.Object, err)
		}
		written += tag.RowsAffected()
	}
	s.m.rows.WithLabelValues(o.Object).Add(float64(written))
	var newest time.Time
	for _, r := range uniq {
		if r.modstamp.After(newest) {
			newest = r.modstamp
		}
	}
	s.fresh.Applied(newest)
	return written, nil
}

// markDeleted flags records getDeleted reported, unless the row holds a
// state newer than the deletion (the record was undeleted since).
func (s *Syncer) markDeleted(ctx context.Context, o *objectTable, ids []string, when []time.Time) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	tag, err := s.db.Exec(ctx, `UPDATE `+o.qualified()+` AS t SET is_deleted = true, synced_at = now()
		FROM unnest($1::text[], $2::timestamptz[]) AS d(id, deleted_at)
		WHERE t.id = d.id AND NOT t.is_deleted AND (t.system_modstamp IS NULL OR t.system_modstamp <= d.deleted_at)`, ids, when)
	if err != nil {
		return 0, fmt.Errorf("mark %d %s records deleted: %w", len(ids), o.Object, err)
	}
	return tag.RowsAffected(), nil
}

// state is a row of salesforce.sync_state.
type state struct {
	Phase           string
	BackfillStarted *time.Time
	BackfillRows    int64
	CursorModstamp  *time.Time
	CursorID        *string
	BulkJobID       *string
	BulkLocator     *string
	SyncedUntil     *time.Time
	DeletedUntil    *time.Time
}

func (s *Syncer) state(ctx context.Context, object string) (state, error) {
	var st state
	var rows *int64
	err := s.db.QueryRow(ctx, `SELECT phase, backfill_started_at, backfill_rows, cursor_modstamp, cursor_id, bulk_job_id, bulk_locator, synced_until, deleted_until
		FROM salesforce.sync_state WHERE object = $1`, object).
		Scan(&st.Phase, &st.BackfillStarted, &rows, &st.CursorModstamp, &st.CursorID, &st.BulkJobID, &st.BulkLocator, &st.SyncedUntil, &st.DeletedUntil)
	if err == pgx.ErrNoRows {
		return state{Phase: "pending"}, nil
	}
	if err != nil {
		return st, fmt.Errorf("read salesforce.sync_state for %s: %w (has 'herd migrate' run?)", object, err)
	}
	if rows != nil {
		st.BackfillRows = *rows
	}
	return st, nil
}

// setState writes the given columns of object's sync_state row. Column
// names come from this package, never from input.
func (s *Syncer) setState(ctx context.Context, object string, cols map[string]any) error {
	return saas.SetSyncState(ctx, s.db, "salesforce", object, cols)
}
