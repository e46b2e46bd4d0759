package replicate

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RefreshResult says what Refresh did.
type RefreshResult struct {
	ForeignTables int
	Views         []string // recreated, in the order they were created
}

// dependentView is a view or materialized view that reads, directly or
// through other views, from a foreign table, with what it takes to create
// it again.
type dependentView struct {
	OID        uint32
	Name       string // quoted, schema-qualified
	Kind       string // v or m
	Depth      int    // longest path from a foreign table
	Definition string
	Options    []string
	Owner      string
	Comment    *string
	Grants     []string
	Indexes    []string // of a materialized view
}

// RefreshConfig configures RefreshWith.
type RefreshConfig struct {
	Name     string // replication; may be empty when there is only one
	Progress io.Writer
	// AnalystsGroup is granted SELECT on the re-imported foreign tables
	// (see Config.AnalystsGroup). Default: the warehouse database's
	// analysts group.
	AnalystsGroup string
	Log           *slog.Logger
}

// Refresh re-imports the foreign tables of FDW replication name (for
// example after a migration on the source added a column) and recreates
// every view that depends on them, recursively, in dependency order, all
// in one transaction: readers see the old views until it commits, and a
// view that no longer fits the new tables makes the whole refresh fail,
// leaving everything as it was. The new foreign tables are granted to
// the warehouse database's analysts group; RefreshWith takes another group.
func Refresh(ctx context.Context, wh *pgxpool.Pool, name string, progress io.Writer) (RefreshResult, error) {
	return RefreshWith(ctx, wh, RefreshConfig{Name: name, Progress: progress})
}

// RefreshWith is Refresh with its configuration.
func RefreshWith(ctx context.Context, wh *pgxpool.Pool, cfg RefreshConfig) (RefreshResult, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	var res RefreshResult
	if err := validGroup(cfg.AnalystsGroup); err != nil {
		return res, err
	}
	sub, err := subscription(ctx, wh, cfg.Name)
	if err != nil {
		return res, err
	}
	if sub.Mode != ModeFDW {
		return res, fmt.Errorf("replication %s uses logical replication, which follows the source's schema by itself; refresh is for --mode fdw", sub.Name)
	}
	// Recreating analysts' materialized views runs their queries (as
	// their owners) on this connection; what they leave in the session
	// (prepared statements, advisory locks, LISTEN) must not reach herd's
	// pool, so the connection is taken out of it and closed after.
	pc, err := wh.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("refresh %s: connect to the warehouse: %w", sub.Name, err)
	}
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		conn.Close(cctx) //nolint:errcheck // the connection is gone either way
	}()
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// With only pg_catalog on the search path, pg_get_viewdef qualifies
		// every name, so the saved definitions mean the same when replayed.
		if _, err := tx.Exec(ctx, "SET LOCAL search_path = pg_catalog"); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT c.oid, format('%I.%I', n.nspname, c.relname)
			FROM pg_foreign_table ft JOIN pg_foreign_server s ON s.oid = ft.ftserver
			JOIN pg_class c ON c.oid = ft.ftrelid JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE s.srvname = $1 AND n.nspname = $2 ORDER BY 2`, sub.Name, sub.IntoSchema)
		type ft struct {
			oid  uint32
			name string
		}
		fts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ft, error) {
			var f ft
			err := r.Scan(&f.oid, &f.name)
			return f, err
		})
		if err != nil {
			return fmt.Errorf("list foreign tables of server %s: %w", sub.Name, err)
		}
		oids := make([]uint32, len(fts))
		names := make([]string, len(fts))
		for i, f := range fts {
			oids[i], names[i] = f.oid, f.name
		}
		views, err := dependentViews(ctx, tx, oids)
		if err != nil {
			return err
		}
		if len(names) > 0 {
			// CASCADE drops exactly the views found above: they are the
			// objects that depend on these tables through rewrite rules.
			if _, err := tx.Exec(ctx, "DROP FOREIGN TABLE "+strings.Join(names, ", ")+" CASCADE"); err != nil {
				return fmt.Errorf("drop foreign tables of server %s: %w", sub.Name, err)
			}
		}
		tables := sub.Tables
		if sub.All {
			tables = nil
			seen := map[string]bool{}
			for _, t := range sub.Tables {
				s, _, _ := strings.Cut(t, ".")
				if !seen[s] {
					seen[s] = true
					q := fmt.Sprintf("IMPORT FOREIGN SCHEMA %s FROM SERVER %s INTO %s", quote(s), quote(sub.Name), quote(sub.IntoSchema))
					if _, err := tx.Exec(ctx, q); err != nil {
						return fmt.Errorf("import source schema %s into %s: %w", s, sub.IntoSchema, err)
					}
				}
			}
		}
		if err := importForeign(ctx, tx, sub.Name, sub.IntoSchema, tables); err != nil {
			return err
		}
		// The dropped tables took their grants with them. The mapping
		// exists already unless the replication predates it.
		if err := grantForeignTables(ctx, tx, cfg.Log, cfg.AnalystsGroup, sub.Name, sub.IntoSchema); err != nil {
			return err
		}
		if err := ensurePublicMapping(ctx, tx, sub.Name); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_foreign_table ft JOIN pg_foreign_server s ON s.oid = ft.ftserver
			WHERE s.srvname = $1`, sub.Name).Scan(&res.ForeignTables); err != nil {
			return err
		}
		for _, v := range views {
			if err := recreateView(ctx, tx, v); err != nil {
				return err
			}
			res.Views = append(res.Views, v.Name)
		}
		return nil
	})
	if err != nil {
		return RefreshResult{}, fmt.Errorf("refresh %s (nothing was changed): %w", sub.Name, err)
	}
	fmt.Fprintf(progress, "re-imported %d foreign tables into %s; recreated %d views\n", res.ForeignTables, sub.IntoSchema, len(res.Views))
	for _, v := range res.Views {
		fmt.Fprintf(progress, "  %s\n", v)
	}
	return res, nil
}

// dependentViews finds, through pg_depend and pg_rewrite, every view and
// materialized view that reads from the given relations or from views that
// do, ordered so that each comes after everything it reads from.
func dependentViews(ctx context.Context, tx pgx.Tx, oids []uint32) ([]dependentView, error) {
	rows, _ := tx.Query(ctx, `
		WITH RECURSIVE deps(oid, depth) AS (
			SELECT rw.ev_class, 1
			FROM pg_depend d JOIN pg_rewrite rw ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
			WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY($1::oid[]) AND rw.ev_class <> d.refobjid
			UNION
			SELECT rw.ev_class, deps.depth + 1
			FROM deps JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = deps.oid
			JOIN pg_rewrite rw ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
			WHERE rw.ev_class <> deps.oid
		)
		SELECT c.oid, format('%I.%I', n.nspname, c.relname), c.relkind::text, max(deps.depth),
		       pg_get_viewdef(c.oid), coalesce(c.reloptions, '{}'), pg_get_userbyid(c.relowner)::text,
		       obj_description(c.oid, 'pg_class'),
		       coalesce((SELECT array_agg(format('GRANT %s ON %I.%I TO %s%s', a.privilege_type, n.nspname, c.relname,
		                   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
		                   CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END))
		                 FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner), '{}'),
		       coalesce((SELECT array_agg(pg_get_indexdef(i.indexrelid)) FROM pg_index i WHERE i.indrelid = c.oid), '{}')
		FROM deps JOIN pg_class c ON c.oid = deps.oid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('v', 'm')
		GROUP BY c.oid, n.nspname
		ORDER BY max(deps.depth), 2`, oids)
	views, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dependentView, error) {
		var v dependentView
		err := r.Scan(&v.OID, &v.Name, &v.Kind, &v.Depth, &v.Definition, &v.Options, &v.Owner, &v.Comment, &v.Grants, &v.Indexes)
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("find views that depend on the foreign tables: %w", err)
	}
	return views, nil
}

// recreateView creates v again as its owner (SET LOCAL ROLE), not as herd:
// creating a materialized view runs its query, and its indexes' expressions,
// so a function an analyst put in their view must run with the analyst's
// privileges. Postgres runs that query as a security-restricted operation,
// in which the function cannot SET ROLE back to herd either. An owner who
// could not create the view themselves (no CREATE on its schema, no SELECT
// on what it reads) makes the refresh fail, naming the view and the owner.
func recreateView(ctx context.Context, tx pgx.Tx, v dependentView) error {
	def := strings.TrimSuffix(strings.TrimSpace(v.Definition), ";")
	with := ""
	if len(v.Options) > 0 {
		with = " WITH (" + strings.Join(v.Options, ", ") + ")"
	}
	stmts := []string{"SET LOCAL ROLE " + quote(v.Owner)}
	if v.Kind == "m" {
		stmts = append(stmts, fmt.Sprintf("CREATE MATERIALIZED VIEW %s%s AS %s", v.Name, with, def))
		stmts = append(stmts, v.Indexes...)
	} else {
		stmts = append(stmts, fmt.Sprintf("CREATE VIEW %s%s AS %s", v.Name, with, def))
	}
	stmts = append(stmts, v.Grants...)
	if v.Comment != nil {
		kind := "VIEW"
		if v.Kind == "m" {
			kind = "MATERIALIZED VIEW"
		}
		stmts = append(stmts, fmt.Sprintf("COMMENT ON %s %s IS %s", kind, v.Name, literal(*v.Comment)))
	}
	stmts = append(stmts, "RESET ROLE")
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("recreate view %s as its owner %s (who must be able to create it: CREATE on its schema, SELECT on what it reads): %s: %w",
				v.Name, v.Owner, firstLine(s), err)
		}
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}
