package rollups

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Result is the outcome of applying or refreshing one rollup.
type Result struct {
	Name       string
	Action     string // "apply" or "refresh"
	Status     string // "ok", "error", "skipped" or "unchanged" (apply only; not recorded)
	Error      string // the failure, or why it was skipped
	Rows       int64  // rows in a materialized view after the action
	Concurrent bool   // refreshed with REFRESH ... CONCURRENTLY
	Started    time.Time
	Duration   time.Duration
}

// lockKey serialises apply and refresh passes across herd processes, so two
// schedulers never refresh the same view at once ("roll" in ASCII).
const lockKey = 0x726f6c6c

// Apply creates or replaces rollups (already in dependency order, as LoadDir
// returns them). A rollup is rebuilt when its SQL changed or its object is
// missing; rebuilding drops and recreates the rollups that depend on it, in
// the same transaction, so readers never see them missing. When a rollup's
// new SQL fails, that transaction rolls back: the previous definitions stay,
// the error is recorded and its dependents are skipped, while unrelated
// rollups are still applied. Every outcome except "unchanged" is recorded in
// herd.rollup_runs.
func Apply(ctx context.Context, db *pgxpool.Pool, log *slog.Logger, cfg Config, rs []Rollup) ([]Result, error) {
	cfg = cfg.withDefaults()
	conn, err := db.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply rollups: connect: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return nil, fmt.Errorf("apply rollups: take lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey) //nolint:errcheck

	schemas := map[string]bool{cfg.Schema: true}
	for _, r := range rs {
		schemas[r.Schema] = true
	}
	for s := range schemas {
		if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{s}.Sanitize()); err != nil {
			return nil, fmt.Errorf("apply rollups: create schema %s: %w", s, err)
		}
	}
	hashes := map[string]string{}
	rows, _ := conn.Query(ctx, "SELECT name, sql_hash FROM herd.rollups")
	var n, h string
	if _, err := pgx.ForEachRow(rows, []any{&n, &h}, func() error { hashes[n] = h; return nil }); err != nil {
		return nil, fmt.Errorf("apply rollups: read herd.rollups: %w", err)
	}

	index := map[string]int{}
	dependents := map[string][]string{}
	for i, r := range rs {
		index[r.Name] = i
		for _, d := range r.Deps {
			dependents[d] = append(dependents[d], r.Name)
		}
	}
	failed := map[string]string{} // rollups not applied in this pass
	handled := map[string]bool{}  // already rebuilt as a dependent of another rollup
	var results []Result
	for _, r := range rs {
		if handled[r.Name] {
			continue
		}
		if why := depFailed(r, failed); why != "" {
			failed[r.Name] = why
			results = append(results, Result{Name: r.Name, Action: "apply", Status: "skipped", Error: why, Started: time.Now()})
			continue
		}
		exists, _, err := relkind(ctx, conn.Conn(), r.Schema, r.Relname)
		if err != nil {
			return results, err
		}
		if exists && hashes[r.Name] == hash(r.SQL) {
			results = append(results, Result{Name: r.Name, Action: "apply", Status: "unchanged"})
			continue
		}
		// The rollup and everything downstream of it, in dependency order.
		group := []Rollup{r}
		seen := map[string]bool{r.Name: true}
		for k := 0; k < len(group); k++ {
			for _, d := range dependents[group[k].Name] {
				if !seen[d] {
					seen[d] = true
					group = append(group, rs[index[d]])
				}
			}
		}
		sortByIndex(group, index)
		res := applyGroup(ctx, conn.Conn(), cfg, group)
		for _, x := range res {
			handled[x.Name] = true
			if x.Status != "ok" {
				failed[x.Name] = x.Error
			}
		}
		results = append(results, res...)
	}
	for _, x := range results {
		if x.Status == "unchanged" {
			continue
		}
		if x.Status == "error" {
			log.Warn("rollup apply failed", "rollup", x.Name, "error", x.Error)
		}
		if err := record(ctx, conn.Conn(), x); err != nil {
			return results, err
		}
	}
	return results, nil
}

func depFailed(r Rollup, failed map[string]string) string {
	for _, d := range r.Deps {
		if _, ok := failed[d]; ok {
			return fmt.Sprintf("skipped: depends on %s, which failed", d)
		}
	}
	return ""
}

func sortByIndex(g []Rollup, index map[string]int) {
	for i := 1; i < len(g); i++ {
		for j := i; j > 0 && index[g[j].Name] < index[g[j-1].Name]; j-- {
			g[j], g[j-1] = g[j-1], g[j]
		}
	}
}

// applyGroup rebuilds group[0] and its dependents group[1:] in one
// transaction. A failure of group[0] rolls everything back; a dependent's
// failure rolls back only that dependent (it stays dropped, because the
// definition it had no longer fits what it reads) and skips the members
// that depend on it.
func applyGroup(ctx context.Context, conn *pgx.Conn, cfg Config, group []Rollup) []Result {
	results := make([]Result, len(group))
	for i, r := range group {
		results[i] = Result{Name: r.Name, Action: "apply", Started: time.Now()}
	}
	fail := func(msg string) []Result {
		results[0].Status, results[0].Error = "error", msg
		results[0].Duration = time.Since(results[0].Started)
		for i := 1; i < len(results); i++ {
			results[i].Status = "skipped"
			results[i].Error = fmt.Sprintf("skipped: depends on %s, which failed (previous definition kept)", group[0].Name)
		}
		return results
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fail(fmt.Sprintf("begin: %v", err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	if _, err := tx.Exec(ctx, "SET LOCAL search_path = "+pgx.Identifier{cfg.Schema}.Sanitize()+", public"); err != nil {
		return fail(fmt.Sprintf("set search_path: %v", err))
	}
	for i := len(group) - 1; i >= 0; i-- {
		if err := dropRollup(ctx, tx, group[i]); err != nil {
			return fail(err.Error())
		}
	}
	if err := createRollup(ctx, tx, group[0], &results[0]); err != nil {
		return fail(err.Error())
	}
	bad := map[string]string{}
	for i := 1; i < len(group); i++ {
		r := group[i]
		if why := depFailed(r, bad); why != "" {
			results[i].Status, results[i].Error = "skipped", why
			bad[r.Name] = why
			continue
		}
		sp, err := tx.Begin(ctx)
		if err == nil {
			err = createRollup(ctx, sp, r, &results[i])
			if err == nil {
				err = sp.Commit(ctx)
			} else {
				_ = sp.Rollback(ctx)
			}
		}
		if err != nil {
			results[i].Status, results[i].Error = "error", err.Error()
			bad[r.Name] = err.Error()
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fail(fmt.Sprintf("commit: %v", err))
	}
	return results
}

func dropRollup(ctx context.Context, tx pgx.Tx, r Rollup) error {
	exists, kind, err := relkind(ctx, tx, r.Schema, r.Relname)
	if err != nil || !exists {
		return err
	}
	var stmt string
	switch kind {
	case "v":
		stmt = "DROP VIEW "
	case "m":
		stmt = "DROP MATERIALIZED VIEW "
	default:
		return fmt.Errorf("%s exists and is not a view (relkind %s); refusing to replace it", r.Name, kind)
	}
	// No CASCADE: an analyst's view on a rollup must make the apply fail
	// loudly rather than vanish.
	if _, err := tx.Exec(ctx, stmt+pgx.Identifier{r.Schema, r.Relname}.Sanitize()); err != nil {
		return fmt.Errorf("drop %s to replace it: %s", r.Name, pgText(err))
	}
	return nil
}

func createRollup(ctx context.Context, tx pgx.Tx, r Rollup, res *Result) error {
	start := time.Now()
	defer func() { res.Duration = time.Since(start) }()
	if _, err := tx.Exec(ctx, r.SQL); err != nil {
		return fmt.Errorf("%s (%s): %s", r.Name, r.File, pgText(err))
	}
	exists, kind, err := relkind(ctx, tx, r.Schema, r.Relname)
	if err != nil {
		return err
	}
	want := map[Kind]string{View: "v", Materialized: "m"}[r.Kind]
	if !exists || kind != want {
		return fmt.Errorf("%s: running %s did not create %s %s (check the name after CREATE ... VIEW)", r.Name, r.File, r.Kind, r.Name)
	}
	if err := commentRollup(ctx, tx, r); err != nil {
		return err
	}
	if r.Kind == Materialized {
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{r.Schema, r.Relname}.Sanitize()).Scan(&res.Rows); err != nil {
			return fmt.Errorf("count rows of %s: %s", r.Name, pgText(err))
		}
	}
	var every any
	if r.Every > 0 {
		every = r.Every
	}
	_, err = tx.Exec(ctx, `INSERT INTO herd.rollups (name, schema_name, rel_name, kind, refresh_every, sql, sql_hash, file, applied_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
		ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, refresh_every = EXCLUDED.refresh_every,
			sql = EXCLUDED.sql, sql_hash = EXCLUDED.sql_hash, file = EXCLUDED.file, applied_at = now()`,
		r.Name, r.Schema, r.Relname, string(r.Kind), every, r.SQL, hash(r.SQL), r.File)
	if err != nil {
		return fmt.Errorf("register %s in herd.rollups: %w", r.Name, err)
	}
	res.Status = "ok"
	return nil
}

// commentRollup gives the rollup's view a comment unless its file set one
// (a file may add COMMENT ON statements after its CREATE): the comment
// lines that open the file, the file and how often it is refreshed.
func commentRollup(ctx context.Context, tx pgx.Tx, r Rollup) error {
	rel := pgx.Identifier{r.Schema, r.Relname}.Sanitize()
	var has bool
	if err := tx.QueryRow(ctx, "SELECT coalesce(obj_description($1::regclass, 'pg_class'), '') <> ''", rel).Scan(&has); err != nil {
		return fmt.Errorf("look up the comment of %s: %s", r.Name, pgText(err))
	}
	if has {
		return nil
	}
	var text []string
	for _, line := range strings.Split(r.SQL, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "--") {
			break
		}
		if refreshHeader.MatchString(line) {
			continue
		}
		text = append(text, strings.TrimSpace(strings.TrimPrefix(line, "--")))
	}
	desc := strings.Join(text, " ")
	if desc != "" && !strings.HasSuffix(desc, ".") {
		desc += "."
	}
	if desc != "" {
		desc += " "
	}
	desc += "Rollup applied by herd rollups apply from " + r.File
	kind := "VIEW"
	if r.Kind == Materialized {
		kind = "MATERIALIZED VIEW"
		desc += ", refreshed every " + r.Every.String() + " by herd up"
	}
	// COMMENT takes no parameters: the server quotes the text (%L), with
	// whatever standard_conforming_strings says.
	var stmt string
	if err := tx.QueryRow(ctx, "SELECT format('COMMENT ON "+kind+" %s IS %L', $1::text, $2::text)", rel, desc).Scan(&stmt); err != nil {
		return fmt.Errorf("comment %s: %s", r.Name, pgText(err))
	}
	if _, err := tx.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("comment %s: %s", r.Name, pgText(err))
	}
	return nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// relkind reports whether schema.rel exists and its pg_class.relkind.
func relkind(ctx context.Context, q querier, schema, rel string) (bool, string, error) {
	var kind string
	err := q.QueryRow(ctx, `SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, schema, rel).Scan(&kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("look up %s.%s: %w", schema, rel, err)
	}
	return true, kind, nil
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func record(ctx context.Context, db execer, x Result) error {
	var errText any
	if x.Error != "" {
		errText = x.Error
	}
	var rows any
	if x.Status == "ok" {
		rows = x.Rows
	}
	_, err := db.Exec(ctx, `INSERT INTO herd.rollup_runs (rollup, action, status, started_at, duration_ms, rows, concurrent, error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		x.Name, x.Action, x.Status, x.Started, float64(x.Duration)/float64(time.Millisecond), rows, x.Concurrent, errText)
	if err != nil {
		return fmt.Errorf("record %s of %s in herd.rollup_runs: %w", x.Action, x.Name, err)
	}
	return nil
}

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// pgText renders a Postgres error with its detail and hint, which usually
// say what to do (e.g. which object depends on a view being dropped).
func pgText(err error) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	s := pe.Message
	if pe.Detail != "" {
		s += "; " + pe.Detail
	}
	if pe.Hint != "" {
		s += "; hint: " + pe.Hint
	}
	if pe.Position > 0 {
		s += fmt.Sprintf(" (at character %d)", pe.Position)
	}
	return s
}
