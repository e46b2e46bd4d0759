package replicate

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// table is a source table as read from its catalog.
type table struct {
	OID         uint32
	Schema      string
	Name        string
	Kind        string // pg_class.relkind
	Persistence string // pg_class.relpersistence
	ReplIdent   string // pg_class.relreplident: d, n, f, i
	Owner       string
	Owned       bool     // the connecting role may act as the owner
	Key         []string // primary key, or replica identity index columns
	KeyIsPK     bool
	UniqueIndex string // a unique index on NOT NULL columns, for the fix text
	Rows        int64  // estimate from pg_class.reltuples, -1 when unknown
	Columns     []column
}

type column struct {
	Name       string
	Type       string // format_type on the source
	TargetType string // what the warehouse column is created as
	Portable   bool   // TargetType == Type
	NotNull    bool
	Generated  string // expression of a generated column, "" otherwise
	Default    string
}

func (t table) qualified() string { return quote(t.Schema, t.Name) }
func (t table) String() string    { return t.Schema + "." + t.Name }

// systemSchemas are never replicated.
const systemSchemaFilter = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'herd_replicate')
	AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'`

// resolveTables turns table names (or --all) into oids on the source. A name
// that does not exist is an error naming it.
func resolveTables(ctx context.Context, src *pgx.Conn, names []string, all bool) ([]uint32, error) {
	if all {
		rows, _ := src.Query(ctx, `SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND `+systemSchemaFilter+`
			ORDER BY n.nspname, c.relname`)
		oids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
		if err != nil {
			return nil, fmt.Errorf("list source tables: %w", err)
		}
		return oids, nil
	}
	var oids []uint32
	for _, n := range names {
		var oid *uint32
		if err := src.QueryRow(ctx, "SELECT to_regclass($1)::oid", n).Scan(&oid); err != nil {
			return nil, fmt.Errorf("look up table %q on the source: %w", n, err)
		}
		if oid == nil {
			return nil, fmt.Errorf("table %q does not exist on the source (check the name and search_path)", n)
		}
		oids = append(oids, *oid)
	}
	return oids, nil
}

// readTables reads the structure of the given tables from the source catalog.
func readTables(ctx context.Context, src *pgx.Conn, oids []uint32) ([]table, error) {
	var out []table
	for _, oid := range oids {
		var t table
		err := src.QueryRow(ctx, `
			SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relpersistence::text, c.relreplident::text,
			       pg_get_userbyid(c.relowner), pg_has_role(current_user, c.relowner, 'USAGE'),
			       c.reltuples::bigint,
			       coalesce((SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
			                 WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
			                   AND NOT EXISTS (SELECT FROM unnest(i.indkey) k(attnum)
			                                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			                                   WHERE NOT a.attnotnull)
			                 ORDER BY ic.relname LIMIT 1), '')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, oid).Scan(
			&t.OID, &t.Schema, &t.Name, &t.Kind, &t.Persistence, &t.ReplIdent, &t.Owner, &t.Owned, &t.Rows, &t.UniqueIndex)
		if err != nil {
			return nil, fmt.Errorf("read source table oid %d: %w", oid, err)
		}
		var pk, ri []string
		if err := src.QueryRow(ctx, `
			SELECT coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i
			                 CROSS JOIN unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
			                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			                 WHERE i.indrelid = $1 AND i.indisprimary), '{}'),
			       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i
			                 CROSS JOIN unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
			                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			                 WHERE i.indrelid = $1 AND i.indisreplident), '{}')`, oid).Scan(&pk, &ri); err != nil {
			return nil, fmt.Errorf("read keys of %s: %w", t, err)
		}
		switch {
		case t.ReplIdent == "i" && len(ri) > 0:
			t.Key = ri
		case t.ReplIdent == "d" && len(pk) > 0:
			t.Key, t.KeyIsPK = pk, true
		}
		cols, err := readColumns(ctx, src, oid)
		if err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", t, err)
		}
		t.Columns = cols
		out = append(out, t)
	}
	return out, nil
}

// readColumns reads a table's live columns in order. Types defined outside
// pg_catalog (enums, composites, extension types) may not exist on the
// warehouse: domains become their base type and the others text, which
// accepts the text form logical replication sends.
func readColumns(ctx context.Context, src *pgx.Conn, oid uint32) ([]column, error) {
	rows, _ := src.Query(ctx, `
		SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
		       CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) ELSE '' END,
		       CASE WHEN a.attgenerated = '' THEN coalesce(pg_get_expr(d.adbin, d.adrelid), '') ELSE '' END,
		       -- the element type decides for arrays
		       (SELECT tn.nspname = 'pg_catalog' FROM pg_type et JOIN pg_namespace tn ON tn.oid = et.typnamespace
		        WHERE et.oid = CASE WHEN t.typelem <> 0 AND t.typlen = -1 THEN t.typelem ELSE t.oid END),
		       t.typtype::text,
		       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) ELSE '' END,
		       CASE WHEN t.typtype = 'd' THEN (SELECT bn.nspname = 'pg_catalog' FROM pg_type bt
		            JOIN pg_namespace bn ON bn.oid = bt.typnamespace WHERE bt.oid = t.typbasetype) ELSE false END
		FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, oid)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		var builtin, baseBuiltin bool
		var typtype, base string
		if err := r.Scan(&c.Name, &c.Type, &c.NotNull, &c.Generated, &c.Default, &builtin, &typtype, &base, &baseBuiltin); err != nil {
			return c, err
		}
		switch {
		case builtin:
			c.TargetType, c.Portable = c.Type, true
		case typtype == "d" && baseBuiltin:
			c.TargetType = base
		default:
			c.TargetType = "text"
		}
		return c, nil
	})
}

// createTableSQL is the warehouse table for a source table: same columns
// and types, the key as primary key. Only key columns are NOT NULL, so that
// a column dropped on the source (and then missing from replicated rows)
// cannot stall apply. Generated columns are computed on the warehouse from
// the same expression, because Postgres does not replicate them.
func createTableSQL(t table) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (", t.qualified())
	for i, c := range t.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(columnSQL(c, contains(t.Key, c.Name)))
	}
	if len(t.Key) > 0 {
		keys := make([]string, len(t.Key))
		for i, k := range t.Key {
			keys[i] = quote(k)
		}
		fmt.Fprintf(&b, ", PRIMARY KEY (%s)", strings.Join(keys, ", "))
	}
	b.WriteString(")")
	return b.String()
}

func columnSQL(c column, key bool) string {
	s := quote(c.Name) + " " + c.TargetType
	if c.Generated != "" && c.Portable {
		s += " GENERATED ALWAYS AS (" + c.Generated + ") STORED"
	}
	if key {
		s += " NOT NULL"
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
