package rollups

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrBusy means another herd process holds the rollup lock and is applying
// or refreshing right now.
var ErrBusy = errors.New("another herd process is applying or refreshing rollups")

type registered struct {
	name, schema, rel, kind string
	every                   time.Duration
	last                    *time.Time // start of the latest recorded apply or refresh
	deps                    []string
}

// loadRegistry reads herd.rollups, each rollup's latest run, and the
// dependencies between rollups as Postgres records them (pg_depend of each
// view's rewrite rule), which is exact where the file text was a guess.
func loadRegistry(ctx context.Context, q pgx.Tx) ([]registered, error) {
	rows, _ := q.Query(ctx, `SELECT r.name, r.schema_name, r.rel_name, r.kind,
			coalesce(extract(epoch FROM r.refresh_every), 0)::float8,
			(SELECT max(started_at) FROM herd.rollup_runs x WHERE x.rollup = r.name)
		FROM herd.rollups r ORDER BY r.name`)
	var regs []registered
	for rows.Next() {
		var g registered
		var secs float64
		if err := rows.Scan(&g.name, &g.schema, &g.rel, &g.kind, &secs, &g.last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read herd.rollups: %w", err)
		}
		g.every = time.Duration(secs * float64(time.Second))
		regs = append(regs, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read herd.rollups: %w", err)
	}
	deps, err := dependencies(ctx, q)
	if err != nil {
		return nil, err
	}
	for i := range regs {
		regs[i].deps = deps[regs[i].name]
		sort.Strings(regs[i].deps)
	}
	rs := make([]Rollup, len(regs))
	byName := map[string]registered{}
	for i, g := range regs {
		rs[i] = Rollup{Name: g.name, Deps: g.deps}
		byName[g.name] = g
	}
	sorted, err := topo(rs)
	if err != nil {
		return nil, err
	}
	out := make([]registered, len(sorted))
	for i, r := range sorted {
		out[i] = byName[r.Name]
	}
	return out, nil
}

// Refresh refreshes, in dependency order, the materialized rollups that are
// due at now (or all of them when all is set). A rollup whose refresh fails
// is recorded with its error and the rollups downstream of it are skipped
// with the reason; the rest carry on. It returns ErrBusy when another
// process holds the rollup lock.
func Refresh(ctx context.Context, db *pgxpool.Pool, log *slog.Logger, cfg Config, now time.Time, all bool) ([]Result, error) {
	var results []Result
	err := withLock(ctx, db, func(conn *pgx.Conn) error {
		var err error
		results, err = refresh(ctx, conn, log, cfg.withDefaults(), now, all)
		return err
	})
	return results, err
}

func withLock(ctx context.Context, db *pgxpool.Pool, fn func(conn *pgx.Conn) error) error {
	conn, err := db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("rollups: connect: %w", err)
	}
	defer conn.Release()
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&ok); err != nil {
		return fmt.Errorf("rollups: take lock: %w", err)
	}
	if !ok {
		return ErrBusy
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey) //nolint:errcheck
	return fn(conn.Conn())
}

func refresh(ctx context.Context, conn *pgx.Conn, log *slog.Logger, cfg Config, now time.Time, all bool) ([]Result, error) {
	var regs []registered
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var err error
		regs, err = loadRegistry(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	// failed maps a rollup that did not refresh in this pass to the
	// upstream rollup whose failure caused it (itself when it failed).
	failed := map[string]string{}
	var results []Result
	for _, g := range regs {
		var bad, cause string
		for _, d := range g.deps {
			if c, ok := failed[d]; ok {
				bad, cause = d, c
				break
			}
		}
		if bad != "" {
			failed[g.name] = cause
		}
		if g.kind != string(Materialized) {
			// Plain views have nothing to refresh, but carry a failure
			// upstream of them on to what reads them.
			continue
		}
		due := all || g.last == nil || !g.last.Add(g.every).After(now)
		if !due {
			continue
		}
		if bad != "" {
			why := fmt.Sprintf("skipped: depends on %s, which failed", bad)
			if cause != bad {
				why = fmt.Sprintf("skipped: depends on %s, which was skipped because %s failed", bad, cause)
			}
			x := Result{Name: g.name, Action: "refresh", Status: "skipped", Started: time.Now(), Error: why}
			results = append(results, x)
			if err := record(ctx, conn, x); err != nil {
				return results, err
			}
			continue
		}
		x := refreshOne(ctx, conn, cfg, g)
		if x.Status != "ok" {
			failed[g.name] = g.name
			log.Warn("rollup refresh failed", "rollup", g.name, "error", x.Error)
		} else {
			log.Info("rollup refreshed", "rollup", g.name, "rows", x.Rows, "concurrent", x.Concurrent, "duration", x.Duration)
		}
		results = append(results, x)
		if err := record(ctx, conn, x); err != nil {
			return results, err
		}
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
	}
	return results, nil
}

// refreshOne refreshes one materialized view in its own transaction,
// CONCURRENTLY when Postgres allows it: the view is populated and has a
// unique index on plain columns without a WHERE clause. Concurrent refresh
// takes an EXCLUSIVE lock, which readers' ACCESS SHARE does not conflict
// with, so dashboards keep reading the old rows until the new ones commit.
func refreshOne(ctx context.Context, conn *pgx.Conn, cfg Config, g registered) Result {
	x := Result{Name: g.name, Action: "refresh", Started: time.Now()}
	ident := pgx.Identifier{g.schema, g.rel}.Sanitize()
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", cfg.RefreshTimeout.Milliseconds())); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT c.relispopulated AND EXISTS (
				SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
				AND i.indpred IS NULL AND i.indexprs IS NULL)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'm'`, g.schema, g.rel).Scan(&x.Concurrent)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("materialized view %s does not exist; run herd rollups apply", g.name)
		}
		if err != nil {
			return err
		}
		stmt := "REFRESH MATERIALIZED VIEW "
		if x.Concurrent {
			stmt += "CONCURRENTLY "
		}
		if _, err := tx.Exec(ctx, stmt+ident); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT count(*) FROM "+ident).Scan(&x.Rows)
	})
	x.Duration = time.Since(x.Started)
	if err != nil {
		x.Status, x.Error = "error", fmt.Sprintf("refresh %s: %s", g.name, pgText(err))
		x.Rows = 0
		return x
	}
	x.Status = "ok"
	return x
}

// Status is what herd rollups status shows for one rollup.
type Status struct {
	Name         string
	Kind         Kind
	Every        time.Duration
	LastAction   string // apply or refresh; empty when never run
	LastStatus   string
	LastStarted  time.Time
	LastDuration time.Duration
	LastRows     *int64
	LastError    string
	NextDue      time.Time // zero for plain views
}

// Statuses reports each registered rollup's latest run and when its next
// refresh is due.
func Statuses(ctx context.Context, db *pgxpool.Pool) ([]Status, error) {
	rows, _ := db.Query(ctx, `SELECT r.name, r.kind, coalesce(extract(epoch FROM r.refresh_every), 0)::float8,
			coalesce(x.action, ''), coalesce(x.status, ''), x.started_at, coalesce(x.duration_ms, 0), x.rows, coalesce(x.error, '')
		FROM herd.rollups r
		LEFT JOIN LATERAL (SELECT * FROM herd.rollup_runs x WHERE x.rollup = r.name
			ORDER BY started_at DESC, id DESC LIMIT 1) x ON true
		ORDER BY r.name`)
	var out []Status
	for rows.Next() {
		var s Status
		var kind string
		var secs, ms float64
		var started *time.Time
		if err := rows.Scan(&s.Name, &kind, &secs, &s.LastAction, &s.LastStatus, &started, &ms, &s.LastRows, &s.LastError); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read rollup status: %w", err)
		}
		s.Kind = Kind(kind)
		s.Every = time.Duration(secs * float64(time.Second))
		s.LastDuration = time.Duration(ms * float64(time.Millisecond))
		if started != nil {
			s.LastStarted = *started
		}
		if s.Kind == Materialized {
			s.NextDue = time.Now()
			if started != nil {
				s.NextDue = started.Add(s.Every)
			}
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rollup status: %w", err)
	}
	return out, nil
}

// Dependencies maps each registered rollup to the registered rollups it
// reads, as Postgres records them (pg_depend of the view's rewrite rule).
func Dependencies(ctx context.Context, db *pgxpool.Pool) (map[string][]string, error) {
	return dependencies(ctx, db)
}

func dependencies(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}) (map[string][]string, error) {
	deps := map[string][]string{}
	rows, _ := q.Query(ctx, `WITH r AS (
			SELECT name, to_regclass(format('%I.%I', schema_name, rel_name)) AS oid FROM herd.rollups)
		SELECT DISTINCT src.name, dst.name
		FROM r src
		JOIN pg_rewrite rw ON rw.ev_class = src.oid
		JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
			AND d.refclassid = 'pg_class'::regclass
		JOIN r dst ON dst.oid = d.refobjid
		WHERE src.name <> dst.name`)
	var src, dst string
	if _, err := pgx.ForEachRow(rows, []any{&src, &dst}, func() error {
		deps[src] = append(deps[src], dst)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read rollup dependencies from pg_depend: %w", err)
	}
	for k := range deps {
		sort.Strings(deps[k])
	}
	return deps, nil
}
