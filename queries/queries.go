// Package queries saves named SQL queries, runs them into durable snapshots
// (the SQL, when it ran, and its result) and serves the latest snapshot as
// HTML, CSV and JSON at /q/NAME so a link can be pasted into chat.
package queries

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures running saved queries. The zero value works.
type Config struct {
	Timeout  time.Duration // statement timeout of one run (default 5m)
	MaxRows  int           // rows kept per snapshot; the rest is dropped and the run marked truncated (default 10000)
	MaxBytes int           // bytes of values kept per snapshot; rows past it are dropped and the run marked truncated (default 8 MiB)
	KeepRuns int           // snapshots kept per query, oldest deleted first (default 100)
	// RoleBytes bounds the stored snapshot bytes of the queries one role
	// saved: past it the role's oldest snapshots are deleted, the latest
	// of each query last (default 256 MiB).
	RoleBytes int64
	// ScheduledTimeout is the statement timeout of a scheduled run
	// (default 1m): a tick runs many queries one after another.
	ScheduledTimeout time.Duration
	// DuePerRole is how many due queries of one role a tick runs (default
	// 3), taken in turn across roles; the rest wait for the next tick, so
	// one role's many slow queries cannot delay everyone else's for hours.
	DuePerRole int
	// ScheduledPerRole is how many scheduled queries (every) one role may
	// keep (default 20).
	ScheduledPerRole int
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.MaxRows <= 0 {
		c.MaxRows = 10000
	}
	if c.KeepRuns <= 0 {
		c.KeepRuns = 100
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 8 << 20
	}
	if c.RoleBytes <= 0 {
		c.RoleBytes = 256 << 20
	}
	if c.ScheduledTimeout <= 0 {
		c.ScheduledTimeout = time.Minute
	}
	if c.DuePerRole <= 0 {
		c.DuePerRole = 3
	}
	if c.ScheduledPerRole <= 0 {
		c.ScheduledPerRole = 20
	}
	return c
}

// ErrNotFound means no saved query or snapshot has that name or id.
var ErrNotFound = errors.New("not found")

// Run is one snapshot: what ran, when, and what it returned. Values are
// Postgres's text form (as psql shows them); nil is SQL NULL.
type Run struct {
	ID        int64
	Query     string
	Started   time.Time
	Duration  time.Duration
	SQL       string
	Columns   []string
	Rows      [][]*string
	RowCount  int64 // rows the query returned, including any beyond MaxRows
	Truncated bool
	Error     string
	RunAs     string // the role the result was computed as: the query's saver

	timeout time.Duration // statement timeout of this run
}

// Store saves and runs queries.
type Store struct {
	db  *pgxpool.Pool
	log *slog.Logger
	cfg Config
}

// New returns a Store on the warehouse.
func New(db *pgxpool.Pool, log *slog.Logger, cfg Config) *Store {
	return &Store{db: db, log: log, cfg: cfg.withDefaults()}
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,99}$`)

// ValidName checks a query name: it becomes part of a URL, so lowercase
// letters, digits, - and _ only, at most 100.
func ValidName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("query name %q: want 1 to 100 lowercase letters, digits, - or _, starting with a letter or digit", name)
	}
	return nil
}

// Save stores (or replaces) a named query, saved by the role herd connects
// as (so its results are computed with herd's privileges). every > 0 makes
// the scheduler run it that often. The SQL is parsed by Postgres first, so
// a typo is reported now rather than at the first scheduled run.
func (s *Store) Save(ctx context.Context, name, sql string, every time.Duration) error {
	return s.SaveAs(ctx, name, sql, every, "")
}

// SaveAs is Save on behalf of role: every run computes the query's results
// as that role, so they never show more than role may read itself. An empty
// role is the role herd connects as. The SQL is parsed with role's names
// and search path.
func (s *Store) SaveAs(ctx context.Context, name, sql string, every time.Duration, role string) error {
	return s.save(ctx, name, sql, every, role, false)
}

// ErrTaken means a query of that name was saved by another role.
var ErrTaken = errors.New("saved by another role")

// SaveShared is SaveAs for a query every analyst may read (the console's):
// its snapshots, computed as role, are visible to every role that reads
// herd.saved_queries. It refuses to replace a query another role saved.
func (s *Store) SaveShared(ctx context.Context, name, sql string, every time.Duration, role string) error {
	if role == "" {
		return fmt.Errorf("save query %s: a shared query needs the role it runs as", name)
	}
	return s.save(ctx, name, sql, every, role, true)
}

func (s *Store) save(ctx context.Context, name, sql string, every time.Duration, role string, shared bool) error {
	if err := ValidName(name); err != nil {
		return err
	}
	sql = strings.TrimSpace(sql)
	sql = strings.TrimSpace(strings.TrimSuffix(sql, ";"))
	if sql == "" {
		return fmt.Errorf("save query %s: the SQL is empty", name)
	}
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if shared {
			var owner string
			err := tx.QueryRow(ctx, "SELECT saved_by FROM herd.saved_queries WHERE name = $1 FOR UPDATE", name).Scan(&owner)
			if err == nil && owner != role {
				return fmt.Errorf("%w (%s): choose another name", ErrTaken, owner)
			}
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		if role != "" {
			var exists bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return fmt.Errorf("role %s does not exist (see herd analysts list)", role)
			}
			if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
				return fmt.Errorf("act as role %s: %w", role, err)
			}
		}
		// Prepare parses without running (planning waits for the first
		// execution), and fails for more than one statement.
		if _, err := tx.Conn().PgConn().Prepare(ctx, "", sql, nil); err != nil {
			return fmt.Errorf("check SQL: %w", err)
		}
		if _, err := tx.Exec(ctx, "RESET ROLE"); err != nil {
			return err
		}
		var iv any
		if every > 0 {
			iv = every
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM herd.saved_queries
				WHERE saved_by = coalesce($1, current_user) AND run_every IS NOT NULL AND name <> $2`, nullable(role), name).Scan(&n); err != nil {
				return err
			}
			if n >= s.cfg.ScheduledPerRole {
				return fmt.Errorf("%w: %d are scheduled, the most a role may keep: save this one without an interval, or take the interval off another", ErrScheduleFull, n)
			}
		}
		var saver any
		if role != "" {
			saver = role
		}
		// A shared save replaces only the same role's query. The check
		// above locks nothing when the row is not there yet; this one
		// holds against a save of the same name committing meanwhile.
		tag, err := tx.Exec(ctx, `INSERT INTO herd.saved_queries (name, sql, run_every, saved_by, shared) VALUES ($1, $2, $3, coalesce($4, current_user), $5)
			ON CONFLICT (name) DO UPDATE SET sql = EXCLUDED.sql, run_every = EXCLUDED.run_every, saved_by = EXCLUDED.saved_by, shared = EXCLUDED.shared, updated_at = now()
			WHERE NOT $5 OR saved_queries.saved_by = EXCLUDED.saved_by`,
			name, sql, iv, saver, shared)
		if err == nil && tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: choose another name", ErrTaken)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("save query %s: %w", name, err)
	}
	return nil
}

// Run runs the saved query now, as the role that saved it, and stores its
// snapshot. A query that fails is stored too, with its error (and returned
// as a Run, not as an error): the page then says the latest run failed.
func (s *Store) Run(ctx context.Context, name string) (Run, error) {
	return s.run(ctx, name, "", s.cfg.Timeout)
}

// ErrScheduleFull means the role keeps as many scheduled queries as it may.
var ErrScheduleFull = errors.New("too many scheduled queries")

// ErrChanged means the saved query is no longer the expected role's.
var ErrChanged = errors.New("saved by another role now")

// RunAs is Run for a query the caller found saved by saver: it runs only
// if saver still saved it and saver is not the role herd connects as (so
// what the caller authorised is what runs, never as herd).
func (s *Store) RunAs(ctx context.Context, name, saver string) (Run, error) {
	if saver == "" {
		return Run{}, fmt.Errorf("run query %s: %w", name, ErrChanged)
	}
	return s.run(ctx, name, saver, s.cfg.Timeout)
}

func (s *Store) run(ctx context.Context, name, want string, timeout time.Duration) (Run, error) {
	var sql, saver string
	var self bool
	err := s.db.QueryRow(ctx, "SELECT sql, saved_by, saved_by = current_user FROM herd.saved_queries WHERE name = $1", name).Scan(&sql, &saver, &self)
	if errors.Is(err, pgx.ErrNoRows) {
		return Run{}, fmt.Errorf("run query %s: %w (save it with herd queries save)", name, ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("run query %s: %w", name, err)
	}
	if want != "" && (saver != want || self) {
		return Run{}, fmt.Errorf("run query %s: %w", name, ErrChanged)
	}
	r := Run{Query: name, SQL: sql, Started: time.Now(), RunAs: saver, timeout: timeout}
	run := s.execute
	if !self {
		run = func(ctx context.Context, r *Run) error { return s.executeAs(ctx, r, saver) }
	}
	if err := run(ctx, &r); err != nil {
		r.Error = err.Error()
	}
	r.Duration = time.Since(r.Started)
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	cols, _ := json.Marshal(r.Columns)
	rows, _ := json.Marshal(r.Rows)
	if r.Rows == nil {
		rows = []byte("[]")
	}
	var errText any
	if r.Error != "" {
		errText = r.Error
	}
	err = s.db.QueryRow(ctx, `INSERT INTO herd.query_runs (query_name, started_at, duration_ms, sql, columns, rows, row_count, truncated, error, run_as)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
		name, r.Started, float64(r.Duration)/float64(time.Millisecond), sql, string(cols), string(rows), r.RowCount, r.Truncated, errText, saver).Scan(&r.ID)
	if err != nil {
		return r, fmt.Errorf("store result of query %s: %w", name, err)
	}
	_, err = s.db.Exec(ctx, `DELETE FROM herd.query_runs WHERE query_name = $1 AND id NOT IN (
		SELECT id FROM herd.query_runs WHERE query_name = $1 ORDER BY id DESC LIMIT $2)`, name, s.cfg.KeepRuns)
	if err != nil {
		s.log.Warn("could not prune old query snapshots", "query", name, "error", err)
	}
	// The role's stored bytes: newest first, each query's latest run
	// before any older one, and whatever lies past RoleBytes goes
	// (the run just stored is always kept).
	_, err = s.db.Exec(ctx, `DELETE FROM herd.query_runs WHERE id IN (
		SELECT id FROM (SELECT id, sum(pg_column_size(rows) + pg_column_size(columns) + pg_column_size(sql)) OVER (
				ORDER BY (id = max_id) DESC, id DESC) AS total
			FROM (SELECT id, rows, columns, sql, max(id) OVER (PARTITION BY query_name) AS max_id
				FROM herd.query_runs WHERE run_as = $1) y) x
		WHERE total > $2 AND id <> $3)`, saver, s.cfg.RoleBytes, r.ID)
	if err != nil {
		s.log.Warn("could not prune a role's query snapshots", "role", saver, "error", err)
	}
	if r.Error != "" {
		s.log.Warn("saved query failed", "query", name, "error", r.Error)
	}
	return r, nil
}

// execute runs r.SQL in a read-only transaction with a statement timeout,
// through the extended protocol (one statement only, so "SELECT 1; COMMIT;
// DROP ..." cannot escape the read-only transaction), asking for text
// results so every type is stored as Postgres prints it.
func (s *Store) execute(ctx context.Context, r *Run) error {
	return pgx.BeginTxFunc(ctx, s.db, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", r.timeout.Milliseconds())); err != nil {
			return err
		}
		rr := tx.Conn().PgConn().ExecParams(ctx, r.SQL, nil, nil, nil, nil)
		for _, f := range rr.FieldDescriptions() {
			r.Columns = append(r.Columns, f.Name)
		}
		size := 0
		for rr.NextRow() {
			r.RowCount++
			if r.Truncated || len(r.Rows) >= s.cfg.MaxRows {
				r.Truncated = true
				continue
			}
			vals := rr.Values()
			n := 0
			for _, v := range vals {
				n += len(v) + 8
			}
			if size+n > s.cfg.MaxBytes {
				r.Truncated = true // this row and every later one
				continue
			}
			size += n
			row := make([]*string, len(vals))
			for i, v := range vals {
				if v != nil {
					str := string(v)
					row[i] = &str
				}
			}
			r.Rows = append(r.Rows, row)
		}
		if _, err := rr.Close(); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				return errors.New(pe.Message)
			}
			return err
		}
		return nil
	})
}

// RunDue runs the saved queries with an interval whose last run is at
// least that old, the longest overdue first: at most DuePerRole of each
// saver's, taken in turn across savers, each with ScheduledTimeout. The
// rest are still due at the next tick.
func (s *Store) RunDue(ctx context.Context) error {
	rows, _ := s.db.Query(ctx, `SELECT name, saved_by FROM (
			SELECT q.name, q.saved_by, coalesce((SELECT max(started_at) FROM herd.query_runs r WHERE r.query_name = q.name), '-infinity') + q.run_every AS due
			FROM herd.saved_queries q WHERE q.run_every IS NOT NULL) d
		WHERE due <= now() ORDER BY due, name`)
	type due struct{ name, role string }
	all, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (due, error) {
		var d due
		err := row.Scan(&d.name, &d.role)
		return d, err
	})
	if err != nil {
		return fmt.Errorf("find due queries: %w", err)
	}
	var roles []string
	byRole := map[string][]string{}
	for _, d := range all {
		if _, ok := byRole[d.role]; !ok {
			roles = append(roles, d.role)
		}
		byRole[d.role] = append(byRole[d.role], d.name)
	}
	var names []string
	for i := 0; i < s.cfg.DuePerRole; i++ {
		for _, role := range roles {
			if i < len(byRole[role]) {
				names = append(names, byRole[role][i])
			}
		}
	}
	if left := len(all) - len(names); left > 0 {
		s.log.Info("saved query schedule: queries left for the next tick", "run", len(names), "left", left, "per_role", s.cfg.DuePerRole)
	}
	var errs []error
	for _, n := range names {
		if _, err := s.run(ctx, n, "", s.cfg.ScheduledTimeout); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// Saved is a saved query as listed.
type Saved struct {
	Name    string
	SQL     string
	Every   time.Duration
	LastRun *time.Time
}

// List returns the saved queries.
func (s *Store) List(ctx context.Context) ([]Saved, error) {
	rows, _ := s.db.Query(ctx, `SELECT q.name, q.sql, coalesce(extract(epoch FROM q.run_every), 0)::float8,
			(SELECT max(started_at) FROM herd.query_runs r WHERE r.query_name = q.name)
		FROM herd.saved_queries q ORDER BY q.name`)
	var out []Saved
	var q Saved
	var secs float64
	_, err := pgx.ForEachRow(rows, []any{&q.Name, &q.SQL, &secs, &q.LastRun}, func() error {
		q.Every = time.Duration(secs * float64(time.Second))
		out = append(out, q)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list saved queries: %w", err)
	}
	return out, nil
}

// Querier is what reading snapshots needs: herd's pool, or a connection of
// the role reading them, so that row level security decides what it sees.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Snapshot returns run id of query name, or its latest successful run when
// id is 0.
func Snapshot(ctx context.Context, db Querier, name string, id int64) (Run, error) {
	q := `SELECT id, query_name, started_at, duration_ms, sql, columns, rows, row_count, truncated, coalesce(error, ''), coalesce(run_as, '')
		FROM herd.query_runs WHERE query_name OPERATOR(pg_catalog.=) $1 AND `
	args := []any{name}
	if id > 0 {
		q += "id OPERATOR(pg_catalog.=) $2"
		args = append(args, id)
	} else {
		q += "error IS NULL ORDER BY id DESC LIMIT 1"
	}
	var r Run
	var ms float64
	var cols, rows []byte
	err := db.QueryRow(ctx, q, args...).Scan(&r.ID, &r.Query, &r.Started, &ms, &r.SQL, &cols, &rows, &r.RowCount, &r.Truncated, &r.Error, &r.RunAs)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("snapshot of query %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("snapshot of query %s: %w", name, err)
	}
	r.Duration = time.Duration(ms * float64(time.Millisecond))
	if err := json.Unmarshal(cols, &r.Columns); err != nil {
		return r, fmt.Errorf("snapshot %d of query %s: columns: %w", r.ID, name, err)
	}
	if err := json.Unmarshal(rows, &r.Rows); err != nil {
		return r, fmt.Errorf("snapshot %d of query %s: rows: %w", r.ID, name, err)
	}
	return r, nil
}

// RunSummary is a line in a query's run history.
type RunSummary struct {
	ID       int64
	Started  time.Time
	RowCount int64
	Error    string
}

// History returns the latest limit runs of query name, newest first.
func History(ctx context.Context, db Querier, name string, limit int) ([]RunSummary, error) {
	rows, _ := db.Query(ctx, `SELECT id, started_at, row_count, coalesce(error, '') FROM herd.query_runs
		WHERE query_name OPERATOR(pg_catalog.=) $1 ORDER BY id DESC LIMIT $2`, name, limit)
	var out []RunSummary
	var r RunSummary
	_, err := pgx.ForEachRow(rows, []any{&r.ID, &r.Started, &r.RowCount, &r.Error}, func() error {
		out = append(out, r)
		return nil
	})
	return out, err
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
