package schemas

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// CommentedSchemas are the schemas whose every table, view, materialized
// view and column herd creates (migrations, herd views refresh,
// herd replicate's bookkeeping) carries a COMMENT. Partitions (of
// herd.events, made by the writer) need a table comment only: their
// columns are the parent's.
var CommentedSchemas = []string{"herd", "stripe", "herd_replicate", "intercom", "front", "salesforce"}

// MigrationSchemas are the schemas whose functions, aggregates and
// sequences herd's migrations create and comment. herd_replicate's, made by
// herd replicate at run time, are not checked yet.
var MigrationSchemas = []string{"herd", "stripe", "intercom", "front", "salesforce"}

// UncommentedSQL lists, as schema.relation, schema.relation.column or
// schema.function(argument types), what has no comment (or an empty one):
// relations and columns in the schemas named by $1, functions and
// sequences in those named by $2; partitions are checked as relations only (their
// columns are the parent's), and the rollups registered in herd.rollups are
// checked too, as relations (their columns are the rollup file's to
// comment). Objects of extensions are skipped. It needs the migrations
// applied (it reads herd.rollups).
const UncommentedSQL = `WITH rel AS (
    SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name, n.nspname = ANY($1::text[]) AND NOT c.relispartition AS with_columns
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      AND (n.nspname = ANY($1::text[])
           OR (n.nspname, c.relname) IN (SELECT schema_name::name, rel_name::name FROM herd.rollups))
)
SELECT r.name FROM rel r WHERE coalesce(obj_description(r.oid, 'pg_class'), '') = ''
UNION ALL
SELECT r.name || '.' || quote_ident(a.attname) FROM rel r
JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE r.with_columns AND coalesce(col_description(r.oid, a.attnum), '') = ''
UNION ALL
SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = ANY($2::text[])
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
  AND coalesce(obj_description(p.oid, 'pg_proc'), '') = ''
UNION ALL
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND n.nspname = ANY($2::text[])
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
  AND coalesce(obj_description(c.oid, 'pg_class'), '') = ''
ORDER BY 1`

// Querier is what Uncommented needs: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Uncommented returns the tables, views, partitions and columns of
// CommentedSchemas, the functions and sequences of MigrationSchemas, and
// the registered rollups, that have no COMMENT.
func Uncommented(ctx context.Context, q Querier) ([]string, error) {
	rows, _ := q.Query(ctx, UncommentedSQL, CommentedSchemas, MigrationSchemas)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list objects without a comment: %w", err)
	}
	return names, nil
}
