package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

type queryRequest struct {
	SQL       string `json:"sql"`
	Write     bool   `json:"write"`
	Limit     int    `json:"limit"`
	TimeoutMS int64  `json:"timeout_ms"`
}

// Column is a result column: its name and Postgres type.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Result is what /api/query returns.
type Result struct {
	Columns    []Column `json:"columns"`
	Rows       [][]any  `json:"rows"`
	DurationMS float64  `json:"duration_ms"`
	Truncated  bool     `json:"truncated"`
	RowCount   int64    `json:"row_count"`
}

const maxQueryTimeout = 5 * time.Minute

// query runs one statement as the signed-in role on their own connection,
// in a read-only transaction unless write is set, with a statement timeout.
func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	ss := sessionOf(r)
	var req queryRequest
	if err := readJSON(w, r, 1<<20, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if strings.TrimSpace(req.SQL) == "" {
		writeError(w, http.StatusBadRequest, `send {"sql": "SELECT ..."}`)
		return
	}
	limit := s.cfg.MaxRows
	if req.Limit > 0 && req.Limit < limit {
		limit = req.Limit
	}
	timeout := s.cfg.QueryTimeout
	if req.TimeoutMS > 0 {
		timeout = min(time.Duration(req.TimeoutMS)*time.Millisecond, maxQueryTimeout)
	}
	if firstKeyword(req.SQL) == "copy" {
		writeError(w, http.StatusBadRequest, "COPY cannot run in the console (it would wait for data the browser never sends): use SELECT, or psql's \\copy")
		return
	}
	id := r.Header.Get("X-Query-Id")
	if len(id) > 100 {
		writeError(w, http.StatusBadRequest, "X-Query-Id is longer than 100 characters")
		return
	}
	if err := lockConn(r.Context(), ss, 10*time.Second); err != nil {
		s.fail(w, r, err)
		return
	}
	defer ss.mu.Unlock()
	ss.state.Lock()
	ss.running = id
	ss.state.Unlock()
	defer func() {
		ss.state.Lock()
		ss.running = ""
		ss.state.Unlock()
	}()
	// Postgres ends the statement at its timeout; the deadline bounds
	// the request even when it does not (a statement that waits on the
	// client): past it the query is cancelled, and if that does not
	// answer either, the connection is closed.
	qctx, qcancel := context.WithTimeout(r.Context(), timeout+requestMargin)
	res, err := s.run(qctx, ss.conn, req.SQL, req.Write, limit, timeout)
	qcancel()
	releaseLocks(ss.conn)
	var big *pgproto3.ExceededMaxBodyLenErr
	if errors.As(err, &big) {
		// The rest of the message was never read: the connection cannot
		// go on, and the session ends with it.
		s.sessions.remove(ss)
		s.m.queries.WithLabelValues("error").Inc()
		writeError(w, http.StatusBadRequest, fmt.Sprintf("row too large (> %d MiB, the most the console reads in one row): select less of it (substr, fewer columns); your session ended with it, sign in again", s.maxRowBytes()>>20))
		return
	}
	if err != nil && ss.conn.IsClosed() {
		// Postgres ended the connection (a restart, idle_session_timeout):
		// the session cannot run anything more.
		s.sessions.remove(ss)
		err = errorf(http.StatusUnauthorized, "your session's database connection closed: sign in again")
	}
	if err != nil {
		s.m.queries.WithLabelValues("error").Inc()
		s.fail(w, r, err)
		return
	}
	s.m.queries.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusOK, res)
}

// requestMargin is how long past its statement timeout a query request
// may take before it is cancelled from herd's side.
const requestMargin = 10 * time.Second

// firstKeyword is the statement's first word, lowercased, past blanks
// and comments.
func firstKeyword(sql string) string {
	for {
		sql = strings.TrimLeft(sql, " \t\r\n\f")
		switch {
		case strings.HasPrefix(sql, "--"):
			i := strings.IndexByte(sql, '\n')
			if i < 0 {
				return ""
			}
			sql = sql[i+1:]
		case strings.HasPrefix(sql, "/*"):
			// Block comments nest.
			depth, i := 0, 0
			for i < len(sql) {
				if strings.HasPrefix(sql[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(sql[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
			if depth != 0 {
				return ""
			}
			sql = sql[i:]
		default:
			end := strings.IndexFunc(sql, func(r rune) bool {
				return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
			})
			if end < 0 {
				end = len(sql)
			}
			return strings.ToLower(sql[:end])
		}
	}
}

// releaseLocks ends every session-level advisory lock the statement took
// (pg_advisory_lock survives the transaction's rollback): a console
// session holding one for hours would stop the scheduled queries, rollups
// and syncs that try-lock the same key. Settings the person made (SET
// search_path) and their temporary tables are kept.
func releaseLocks(conn *pgx.Conn) {
	if conn.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = conn.Exec(ctx, "SELECT pg_catalog.pg_advisory_unlock_all()")
}

// pgError turns a Postgres error into the 400 the client shows.
func pgError(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		extra := map[string]any{"code": pe.Code}
		if pe.Position > 0 {
			extra["position"] = pe.Position
		}
		if pe.Detail != "" {
			extra["detail"] = pe.Detail
		}
		if pe.Hint != "" {
			extra["hint"] = pe.Hint
		}
		return &apiError{status: http.StatusBadRequest, msg: pe.Message, extra: extra}
	}
	return err
}

func (s *Server) run(ctx context.Context, conn *pgx.Conn, sql string, write bool, limit int, timeout time.Duration) (*Result, error) {
	if conn.IsClosed() {
		return nil, errorf(http.StatusUnauthorized, "your session's database connection closed: sign in again")
	}
	mode := pgx.ReadOnly
	if write {
		mode = pgx.ReadWrite
	}
	start := time.Now()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: mode})
	if err != nil {
		return nil, pgError(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", timeout.Milliseconds())); err != nil {
		return nil, pgError(err)
	}
	// The extended protocol runs one statement: "SELECT 1; COMMIT; ..."
	// cannot leave the read-only transaction. Text results, converted by
	// type below, keep every type readable.
	rr := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil)
	fields := rr.FieldDescriptions()
	res := &Result{Columns: make([]Column, len(fields)), Rows: [][]any{}}
	tm := conn.TypeMap()
	for i, f := range fields {
		res.Columns[i] = Column{Name: f.Name, Type: typeName(tm, f.DataTypeOID)}
	}
	size := 0
	for rr.NextRow() {
		res.RowCount++
		if res.Truncated || len(res.Rows) >= limit {
			res.Truncated = true
			continue
		}
		vals := rr.Values()
		n := 0
		for _, v := range vals {
			n += len(v) + 4
		}
		// The row is counted before it is added: one that would take
		// the result past its byte limit ends it, however large.
		if size+n > s.cfg.MaxResultBytes {
			res.Truncated = true
			continue
		}
		size += n
		row := make([]any, len(vals))
		for i, v := range vals {
			row[i] = jsonValue(tm, fields[i].DataTypeOID, v)
		}
		res.Rows = append(res.Rows, row)
	}
	if _, err := rr.Close(); err != nil {
		return nil, pgError(err)
	}
	if write {
		if err := tx.Commit(ctx); err != nil {
			return nil, pgError(err)
		}
	}
	res.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	// Names of types pgx does not know (domains, enums, extensions').
	var unknown []uint32
	for i, c := range res.Columns {
		if c.Type == "" {
			unknown = append(unknown, fields[i].DataTypeOID)
		}
	}
	if len(unknown) > 0 {
		names := map[uint32]string{}
		rows, _ := conn.Query(ctx, "SELECT oid::pg_catalog.int8, pg_catalog.format_type(oid, NULL) FROM pg_catalog.pg_type WHERE oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])", unknown)
		var oid int64
		var name string
		_, _ = pgx.ForEachRow(rows, []any{&oid, &name}, func() error { names[uint32(oid)] = name; return nil })
		for i := range res.Columns {
			if res.Columns[i].Type == "" {
				res.Columns[i].Type = names[fields[i].DataTypeOID]
			}
		}
	}
	return res, nil
}

func typeName(tm *pgtype.Map, oid uint32) string {
	if t, ok := tm.TypeForOID(oid); ok {
		return t.Name
	}
	return ""
}

const maxSafeInt = 1 << 53

// jsonValue converts Postgres's text form of a value to JSON: numbers as
// numbers where a JavaScript number holds them exactly, booleans, json as
// JSON, timestamps as RFC 3339, bytea as base64, anything else as its text.
func jsonValue(tm *pgtype.Map, oid uint32, v []byte) any {
	if v == nil {
		return nil
	}
	text := string(v)
	switch oid {
	case pgtype.BoolOID:
		return text == "t"
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.OIDOID:
		return json.Number(text)
	case pgtype.Int8OID:
		if n, err := strconv.ParseInt(text, 10, 64); err == nil && n <= maxSafeInt && n >= -maxSafeInt {
			return json.Number(text)
		}
		return text
	case pgtype.Float4OID, pgtype.Float8OID:
		if f, err := strconv.ParseFloat(text, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return json.Number(text)
		}
		return text
	case pgtype.NumericOID:
		digits := strings.TrimLeft(strings.ReplaceAll(strings.TrimPrefix(text, "-"), ".", ""), "0")
		if _, err := strconv.ParseFloat(text, 64); err == nil && len(digits) <= 15 && !strings.ContainsAny(text, "aAiI") {
			return json.Number(text)
		}
		return text
	case pgtype.JSONOID, pgtype.JSONBOID:
		if json.Valid(v) {
			// v aliases the connection's read buffer: keep a copy.
			return json.RawMessage(append([]byte(nil), v...))
		}
		return text
	case pgtype.TimestamptzOID:
		var t time.Time
		if err := tm.Scan(oid, pgtype.TextFormatCode, v, &t); err == nil {
			return t.UTC().Format(time.RFC3339Nano)
		}
		return text
	case pgtype.TimestampOID:
		var t time.Time
		if err := tm.Scan(oid, pgtype.TextFormatCode, v, &t); err == nil {
			return t.Format("2006-01-02T15:04:05.999999999")
		}
		return text
	case pgtype.ByteaOID:
		var b []byte
		if err := tm.Scan(oid, pgtype.TextFormatCode, v, &b); err == nil {
			return append([]byte(nil), b...) // encoding/json writes base64
		}
		return text
	}
	return text
}

type cancelRequest struct {
	ID string `json:"id"`
}

// cancel asks Postgres to cancel the session's query with that id.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	ss := sessionOf(r)
	var req cancelRequest
	if err := readJSON(w, r, 1<<10, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ss.state.Lock()
	running := ss.running
	ss.state.Unlock()
	if req.ID == "" || running != req.ID {
		writeError(w, http.StatusNotFound, "no query with that id is running in this session")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := ss.conn.PgConn().CancelRequest(ctx); err != nil {
		s.fail(w, r, fmt.Errorf("cancel query: %w", err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// lockConn takes the session's connection, waiting at most wait for the
// request before (another tab's query, the schema browser).
func lockConn(ctx context.Context, ss *session, wait time.Duration) error {
	if ss.mu.TryLock() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	locked := make(chan struct{})
	go func() { ss.mu.Lock(); close(locked) }()
	select {
	case <-locked:
		return nil
	case <-ctx.Done():
		go func() { <-locked; ss.mu.Unlock() }()
		return errorf(http.StatusConflict, "another query of this session is still running: wait for it or cancel it (POST /api/query/cancel)")
	}
}

// withConn runs fn on the session's connection, one request at a time.
func (s *Server) withConn(r *http.Request, fn func(conn *pgx.Conn) error) error {
	ss := sessionOf(r)
	if err := lockConn(r.Context(), ss, 30*time.Second); err != nil {
		return err
	}
	defer ss.mu.Unlock()
	if ss.conn.IsClosed() {
		return errorf(http.StatusUnauthorized, "your session's database connection closed: sign in again")
	}
	return fn(ss.conn)
}

// SchemaInfo is a schema the signed-in role may use, with its readable
// tables and their columns.
type SchemaInfo struct {
	Name    string      `json:"name"`
	Comment string      `json:"comment"`
	Tables  []TableInfo `json:"tables"`
}

// TableInfo is a table, view or materialized view.
type TableInfo struct {
	Name    string       `json:"name"`
	Kind    string       `json:"kind"`
	Comment string       `json:"comment"`
	Columns []ColumnInfo `json:"columns"`
}

// ColumnInfo is a column with its type and comment.
type ColumnInfo struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Comment string `json:"comment"`
}

// schema lists what the signed-in role can read, as Postgres decides.
func (s *Server) schema(w http.ResponseWriter, r *http.Request) {
	var out []SchemaInfo
	err := s.withConn(r, func(conn *pgx.Conn) error {
		// Every operator and function is named with its schema: the
		// person's search_path and schema cannot change what it lists.
		rows, _ := conn.Query(r.Context(), `SELECT n.nspname::pg_catalog.text, coalesce(pg_catalog.obj_description(n.oid, 'pg_namespace'), ''),
				c.relname::pg_catalog.text, CASE WHEN c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::"char"[]) THEN 'table'
					WHEN c.relkind OPERATOR(pg_catalog.=) 'v'::"char" THEN 'view'
					WHEN c.relkind OPERATOR(pg_catalog.=) 'm'::"char" THEN 'materialized view' ELSE 'foreign table' END,
				coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), ''),
				a.attname::pg_catalog.text, pg_catalog.format_type(a.atttypid, a.atttypmod), coalesce(pg_catalog.col_description(c.oid, a.attnum), '')
			FROM pg_catalog.pg_namespace n
			JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid
				AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}'::"char"[]) AND NOT c.relispartition
			JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0::pg_catalog.int2 AND NOT a.attisdropped
			WHERE n.nspname OPERATOR(pg_catalog.<>) ALL ('{pg_catalog,information_schema,pg_toast}'::pg_catalog.name[])
			  AND NOT n.nspname OPERATOR(pg_catalog.~~) 'pg\_temp%'
			  AND NOT n.nspname OPERATOR(pg_catalog.~~) 'pg\_toast\_temp%'
			  AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
			  AND pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT')
			ORDER BY n.nspname, c.relname, a.attnum
			LIMIT 50000`)
		var sch, schc, rel, kind, relc, col, typ, colc string
		_, err := pgx.ForEachRow(rows, []any{&sch, &schc, &rel, &kind, &relc, &col, &typ, &colc}, func() error {
			if len(out) == 0 || out[len(out)-1].Name != sch {
				out = append(out, SchemaInfo{Name: sch, Comment: schc, Tables: []TableInfo{}})
			}
			sc := &out[len(out)-1]
			if len(sc.Tables) == 0 || sc.Tables[len(sc.Tables)-1].Name != rel {
				sc.Tables = append(sc.Tables, TableInfo{Name: rel, Kind: kind, Comment: relc, Columns: []ColumnInfo{}})
			}
			t := &sc.Tables[len(sc.Tables)-1]
			t.Columns = append(t.Columns, ColumnInfo{Name: col, Type: typ, Comment: colc})
			return nil
		})
		return pgError(err)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if out == nil {
		out = []SchemaInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"schemas": out})
}
