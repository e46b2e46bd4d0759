package analysts

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SchemaSize is one row of herd.schema_sizes.
type SchemaSize struct {
	Schema    string
	Owner     string
	Relations int64
	Bytes     int64
	Size      string // human-readable, as pg_size_pretty prints it
}

// QueryTime is one row of herd.user_query_time.
type QueryTime struct {
	Role    string
	Calls   int64
	TotalMS float64
	MeanMS  float64
}

// Usage is what herd usage prints.
type Usage struct {
	Schemas []SchemaSize
	Queries []QueryTime
	// Note explains why Queries is empty when pg_stat_statements is not
	// available, and how to enable it.
	Note string
}

// Report reads herd.schema_sizes and herd.user_query_time. When
// pg_stat_statements is loaded but not yet installed in this database it
// tries to install it first (which needs a superuser; without one the note
// says what to run).
func Report(ctx context.Context, db *pgxpool.Pool) (Usage, error) {
	var u Usage
	var loaded, installed bool
	err := db.QueryRow(ctx, `SELECT string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')
			@> ARRAY['pg_stat_statements'],
			EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')`).Scan(&loaded, &installed)
	if err != nil {
		return u, fmt.Errorf("usage: check pg_stat_statements: %w", err)
	}
	if loaded && !installed {
		_, _ = db.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
	}
	rows, _ := db.Query(ctx, "SELECT schema, owner, relations, bytes, size FROM herd.schema_sizes ORDER BY bytes DESC, schema")
	var s SchemaSize
	if _, err := pgx.ForEachRow(rows, []any{&s.Schema, &s.Owner, &s.Relations, &s.Bytes, &s.Size}, func() error {
		u.Schemas = append(u.Schemas, s)
		return nil
	}); err != nil {
		return u, fmt.Errorf("usage: read herd.schema_sizes: %w", err)
	}
	rows, _ = db.Query(ctx, "SELECT role, calls, total_ms, mean_ms, note FROM herd.user_query_time")
	var role, note *string
	var calls *int64
	var total, mean *float64
	if _, err := pgx.ForEachRow(rows, []any{&role, &calls, &total, &mean, &note}, func() error {
		if note != nil {
			u.Note = *note
			return nil
		}
		q := QueryTime{Role: *role}
		if calls != nil {
			q.Calls = *calls
		}
		if total != nil {
			q.TotalMS = *total
		}
		if mean != nil {
			q.MeanMS = *mean
		}
		u.Queries = append(u.Queries, q)
		return nil
	}); err != nil {
		return u, fmt.Errorf("usage: read herd.user_query_time: %w", err)
	}
	return u, nil
}
