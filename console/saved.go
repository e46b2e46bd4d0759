package console

import (
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/queries"
	"github.com/jackc/pgx/v5"
)

// The saved queries are herd queries' store (herd.saved_queries,
// herd.query_runs). What a signed-in role may see is read on its own
// connection, so row level security decides: its own queries, and those
// saved through the console (shared), never results computed as herd.

type lastRun struct {
	ID         int64     `json:"id"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS float64   `json:"duration_ms"`
	Error      *string   `json:"error"`
	Rows       int64     `json:"rows"`
}

type savedItem struct {
	Name    string   `json:"name"`
	SavedBy string   `json:"saved_by"`
	Every   string   `json:"every"`
	Shared  bool     `json:"shared"`
	LastRun *lastRun `json:"last_run"`
}

func every(secs float64) string {
	if secs <= 0 {
		return ""
	}
	return (time.Duration(secs * float64(time.Second))).String()
}

func (s *Server) listQueries(w http.ResponseWriter, r *http.Request) {
	out := []savedItem{}
	err := s.withConn(r, func(conn *pgx.Conn) error {
		rows, _ := conn.Query(r.Context(), `SELECT q.name, q.saved_by, coalesce(pg_catalog.date_part('epoch', q.run_every), 0)::pg_catalog.float8, q.shared,
				x.id, x.started_at, x.duration_ms, x.error, x.row_count
			FROM herd.saved_queries q
			LEFT JOIN LATERAL (SELECT id, started_at, duration_ms, error, row_count FROM herd.query_runs r
				WHERE r.query_name OPERATOR(pg_catalog.=) q.name ORDER BY id DESC LIMIT 1) x ON true
			ORDER BY q.name LIMIT 5000`)
		var it savedItem
		var secs float64
		var id *int64
		var started *time.Time
		var ms *float64
		var errText *string
		var n *int64
		_, err := pgx.ForEachRow(rows, []any{&it.Name, &it.SavedBy, &secs, &it.Shared, &id, &started, &ms, &errText, &n}, func() error {
			x := it
			x.Every = every(secs)
			if id != nil {
				x.LastRun = &lastRun{ID: *id, StartedAt: *started, DurationMS: *ms, Error: errText, Rows: *n}
			}
			out = append(out, x)
			return nil
		})
		return pgError(err)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"queries": out})
}

type saveRequest struct {
	Name  string `json:"name"`
	SQL   string `json:"sql"`
	Every string `json:"every"`
}

// runJSON is a snapshot as the API shows it.
type runJSON struct {
	ID         int64       `json:"id"`
	StartedAt  time.Time   `json:"started_at"`
	DurationMS float64     `json:"duration_ms"`
	RunAs      string      `json:"run_as"`
	Columns    []Column    `json:"columns"`
	Rows       [][]*string `json:"rows"`
	RowCount   int64       `json:"row_count"`
	Truncated  bool        `json:"truncated"`
	Error      *string     `json:"error"`
}

func toRunJSON(run queries.Run) runJSON {
	j := runJSON{ID: run.ID, StartedAt: run.Started.UTC(), DurationMS: float64(run.Duration.Microseconds()) / 1000,
		RunAs: run.RunAs, Columns: make([]Column, len(run.Columns)), Rows: run.Rows, RowCount: run.RowCount, Truncated: run.Truncated}
	for i, c := range run.Columns {
		j.Columns[i] = Column{Name: c, Type: "text"}
	}
	if j.Rows == nil {
		j.Rows = [][]*string{}
	}
	if run.Error != "" {
		e := run.Error
		j.Error = &e
	}
	return j
}

// saveQuery saves a query as the signed-in role, shared with the other
// signed-in people, and runs it once as that role.
func (s *Server) saveQuery(w http.ResponseWriter, r *http.Request) {
	ss := sessionOf(r)
	var req saveRequest
	if err := readJSON(w, r, 256<<10, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := queries.ValidName(req.Name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if strings.TrimSpace(req.SQL) == "" {
		writeError(w, http.StatusBadRequest, "the SQL is empty")
		return
	}
	var iv time.Duration
	if req.Every != "" {
		d, err := time.ParseDuration(req.Every)
		if err != nil || d < time.Minute {
			writeError(w, http.StatusBadRequest, `every: want "" (run on demand) or a duration of at least 1m, like "1h"`)
			return
		}
		iv = d
	}
	var n int
	var exists bool
	err := s.cfg.DB.QueryRow(r.Context(), `SELECT count(*) FILTER (WHERE saved_by = $1), coalesce(bool_or(name = $2), false) FROM herd.saved_queries`, ss.user, req.Name).Scan(&n, &exists)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !exists && n >= s.cfg.SavedPerRole {
		writeError(w, http.StatusConflict, "you have "+strconv.Itoa(n)+" saved queries, the most a role may keep: replace one (save under its name) or ask an operator to delete some")
		return
	}
	release, err := s.runs.acquire(ss.user)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer release()
	if err := s.store.SaveShared(r.Context(), req.Name, req.SQL, iv, ss.user); err != nil {
		if errors.Is(err, queries.ErrTaken) || errors.Is(err, queries.ErrScheduleFull) {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		if errors.Is(err, r.Context().Err()) {
			return
		}
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	run, err := s.store.RunAs(r.Context(), req.Name, ss.user)
	if errors.Is(err, queries.ErrNotFound) || errors.Is(err, queries.ErrChanged) {
		s.fail(w, r, errorf(http.StatusConflict, "query %s was replaced by another save meanwhile: save it again", req.Name))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"name": req.Name, "run": toRunJSON(run)})
}

// visibleSQL decides on herd's own connection, with explicit rules and
// nothing the person's session can change (search_path, their schema's
// operators and functions), whether $1 (the signed-in role) may see and
// run the saved query $2: never one saved by herd's own role (or the
// store's owner), whose results are computed with herd's privileges;
// otherwise one the role is a member of the saver of, or one the saver
// shared.
const visibleSQL = `SELECT q.sql, q.saved_by, coalesce(pg_catalog.date_part('epoch', q.run_every), 0)::pg_catalog.float8
	FROM herd.saved_queries q
	WHERE q.name OPERATOR(pg_catalog.=) $2
	  AND q.saved_by OPERATOR(pg_catalog.<>) CURRENT_USER::pg_catalog.text
	  AND q.saved_by OPERATOR(pg_catalog.<>) (SELECT t.tableowner::pg_catalog.text FROM pg_catalog.pg_tables t
		WHERE t.schemaname OPERATOR(pg_catalog.=) 'herd' AND t.tablename OPERATOR(pg_catalog.=) 'saved_queries')
	  AND EXISTS (SELECT FROM pg_catalog.pg_roles s WHERE s.rolname OPERATOR(pg_catalog.=) q.saved_by::pg_catalog.name)
	  AND EXISTS (SELECT FROM pg_catalog.pg_roles u WHERE u.rolname OPERATOR(pg_catalog.=) $1::pg_catalog.name)
	  AND (q.shared OR pg_catalog.pg_has_role($1::pg_catalog.name, q.saved_by::pg_catalog.name, 'MEMBER'))`

// visible returns the saved query name if the signed-in role may see it
// (visibleSQL), else a 404.
func (s *Server) visible(r *http.Request, name string) (sql, savedBy string, secs float64, err error) {
	err = s.cfg.DB.QueryRow(r.Context(), visibleSQL, sessionOf(r).user, name).Scan(&sql, &savedBy, &secs)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", 0, errorf(http.StatusNotFound, "no saved query %s that you may read", name)
	}
	return sql, savedBy, secs, err
}

// runQuery runs a saved query now, as its saver.
func (s *Server) runQuery(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if queries.ValidName(name) != nil {
		writeError(w, http.StatusNotFound, "no saved query "+name)
		return
	}
	_, savedBy, _, err := s.visible(r, name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	release, err := s.runs.acquire(sessionOf(r).user)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer release()
	if user := sessionOf(r).user; user != savedBy {
		if wait := s.othersRun(name); wait > 0 {
			secs := int(math.Ceil(wait.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("query %s was run by someone other than %s less than a minute ago: its latest snapshot is fresh; run it again in %d seconds", name, savedBy, secs))
			return
		}
	}
	run, err := s.store.RunAs(r.Context(), name, savedBy)
	if errors.Is(err, queries.ErrNotFound) || errors.Is(err, queries.ErrChanged) {
		s.fail(w, r, errorf(http.StatusConflict, "query %s changed while it was to run: open it again", name))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toRunJSON(run))
}

// savedQuery serves /q/NAME (the app's page), /q/NAME.json and
// /q/NAME.csv, to signed-in people only; without a session the page
// redirects to sign-in and the data answers 401.
func (s *Server) savedQuery(w http.ResponseWriter, r *http.Request) {
	name, format := r.PathValue("name"), "html"
	for _, ext := range []string{"csv", "json"} {
		if n, ok := strings.CutSuffix(name, "."+ext); ok {
			name, format = n, ext
		}
	}
	ss, why := s.current(r)
	if ss == nil {
		if format == "html" {
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, "/login?next="+url.QueryEscape("/q/"+name), http.StatusSeeOther)
			return
		}
		writeError(w, http.StatusUnauthorized, why)
		return
	}
	if format == "html" {
		w.Header().Set("Cache-Control", "no-store")
		s.static.index(w, r)
		return
	}
	s.auth(false, func(w http.ResponseWriter, r *http.Request) { s.snapshot(w, r, name, format) }).ServeHTTP(w, r)
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request, name, format string) {
	if queries.ValidName(name) != nil {
		writeError(w, http.StatusNotFound, "no saved query "+name)
		return
	}
	var id int64
	if v := r.URL.Query().Get("run"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, "run must be a snapshot id")
			return
		}
		id = n
	}
	sql, savedBy, secs, err := s.visible(r, name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var run queries.Run
	var hist []queries.RunSummary
	// The snapshots are read on the person's own connection as well, so
	// row level security has the last word; the statements name every
	// operator and function with its schema.
	err = s.withConn(r, func(conn *pgx.Conn) error {
		var err error
		run, err = queries.Snapshot(r.Context(), conn, name, id)
		if err == nil && run.RunAs != savedBy {
			err = queries.ErrNotFound // computed as an earlier saver
		}
		if errors.Is(err, queries.ErrNotFound) {
			if id > 0 {
				return errorf(http.StatusNotFound, "query %s has no snapshot %d that you may read", name, id)
			}
			return errorf(http.StatusNotFound, "query %s has no successful run yet: run it (POST /api/queries/%s/run)", name, name)
		}
		if err != nil {
			return pgError(err)
		}
		hist, err = queries.History(r.Context(), conn, name, 50)
		return pgError(err)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
		cw := csv.NewWriter(w)
		head := make([]string, len(run.Columns))
		for i, c := range run.Columns {
			head[i] = csvCell(c)
		}
		_ = cw.Write(head)
		rec := make([]string, len(run.Columns))
		for _, row := range run.Rows {
			for i := range rec {
				rec[i] = ""
				if i < len(row) && row[i] != nil {
					rec[i] = csvCell(*row[i])
				}
			}
			_ = cw.Write(rec)
		}
		cw.Flush()
		return
	}
	runs := make([]map[string]any, 0, len(hist))
	for _, h := range hist {
		var e any
		if h.Error != "" {
			e = h.Error
		}
		runs = append(runs, map[string]any{"id": h.ID, "started_at": h.Started.UTC(), "rows": h.RowCount, "error": e})
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "sql": sql, "saved_by": savedBy, "every": every(secs),
		"run": toRunJSON(run), "runs": runs})
}

// csvCell keeps a spreadsheet from evaluating a text cell as a formula:
// one that starts with = + - @, a tab or a carriage return gets a leading
// '. Numbers ("-3", "+1.5e3") are written as they are.
func csvCell(v string) string {
	if v == "" || !strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return v
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil && strings.Trim(v, "0123456789.eE+-") == "" {
		return v
	}
	return "'" + v
}

// othersRunEvery is how often people other than its saver may run a
// query: each run stores a snapshot counted against the saver's bytes,
// so runs by others, unbounded, would push the saver's older snapshots
// of their other queries out.
const othersRunEvery = time.Minute

// othersRun reserves a run of name by someone other than its saver, or
// says how long until one is allowed.
func (s *Server) othersRun(name string) time.Duration {
	now := s.cfg.Now()
	s.othersMu.Lock()
	defer s.othersMu.Unlock()
	if s.othersRuns == nil {
		s.othersRuns = map[string]time.Time{}
	}
	if at, ok := s.othersRuns[name]; ok && now.Sub(at) < othersRunEvery {
		return othersRunEvery - now.Sub(at)
	}
	for n, at := range s.othersRuns {
		if now.Sub(at) >= othersRunEvery {
			delete(s.othersRuns, n)
		}
	}
	s.othersRuns[name] = now
	return 0
}
