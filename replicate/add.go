package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Add sets up replication of cfg's tables from the source into the
// warehouse wh and, in logical mode, waits until the initial copy is done,
// printing progress to cfg.Progress. It refuses with a *PreflightError when
// the source is not ready.
func Add(ctx context.Context, wh *pgxpool.Pool, cfg Config) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	if err := ensureSchema(ctx, wh); err != nil {
		return err
	}
	var exists bool
	if err := wh.QueryRow(ctx, "SELECT EXISTS (SELECT FROM herd.replicate_subscriptions WHERE name = $1)", cfg.Name).Scan(&exists); err != nil {
		return fmt.Errorf("read herd.replicate_subscriptions: %w", err)
	}
	if exists {
		return fmt.Errorf("a replication named %q exists already on the warehouse: choose another --name, or resync it", cfg.Name)
	}
	src, err := connectSource(ctx, cfg.SourceURL)
	if err != nil {
		return err
	}
	defer src.Close(context.WithoutCancel(ctx))
	oids, err := resolveTables(ctx, src, cfg.Tables, cfg.All)
	if err != nil {
		return err
	}
	tables, err := readTables(ctx, src, oids)
	if err != nil {
		return err
	}
	if cfg.Mode == ModeFDW {
		return addFDW(ctx, wh, cfg, tables)
	}
	problems, err := preflight(ctx, src, cfg, tables)
	if err != nil {
		return err
	}
	for _, p := range problems {
		if !p.Fatal {
			fmt.Fprintln(cfg.Progress, p.String())
			cfg.Log.Warn("replicate pre-flight", "object", p.Object, "problem", p.Message)
		}
	}
	if fatal(problems) {
		return &PreflightError{Problems: problems}
	}
	return addLogical(ctx, wh, src, cfg, tables)
}

func addLogical(ctx context.Context, wh *pgxpool.Pool, src *pgx.Conn, cfg Config, tables []table) (err error) {
	var super bool
	var version int
	if err := src.QueryRow(ctx, "SELECT rolsuper, current_setting('server_version_num')::int FROM pg_roles WHERE rolname = current_user").Scan(&super, &version); err != nil {
		return fmt.Errorf("read source role: %w", err)
	}
	// Undo the source side if anything later fails, so that a second
	// attempt does not trip over a half-made publication.
	sourceDone := false
	defer func() {
		if err != nil && sourceDone {
			if _, e := src.Exec(context.WithoutCancel(ctx), dropSourceSQL(cfg.Name)); e != nil {
				cfg.Log.Warn("replicate: undo source setup", "err", e)
			}
		}
	}()

	names := make([]string, 0, len(tables)+1)
	partitioned := false
	for _, t := range tables {
		names = append(names, t.qualified())
		partitioned = partitioned || t.Kind == "p"
	}
	names = append(names, ddlLogTable(cfg.Name))
	pub := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", quote(cfg.Name), strings.Join(names, ", "))
	if partitioned {
		// Replicate a partitioned table as one table, into one target.
		pub += " WITH (publish_via_partition_root = true)"
	}
	err = pgx.BeginFunc(ctx, src, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sourceDDLSQL(cfg.Name, super)); err != nil {
			return fmt.Errorf("install the DDL log on the source: %w", err)
		}
		if _, err := tx.Exec(ctx, pub); err != nil {
			return fmt.Errorf("create publication %s on the source: %w", cfg.Name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sourceDone = true
	cfg.Log.Info("replicate: publication created", "name", cfg.Name, "tables", len(tables))

	err = pgx.BeginFunc(ctx, wh, func(tx pgx.Tx) error {
		if err := createTargets(ctx, tx, cfg.Log, cfg.AnalystsGroup, tables); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, warehouseDDLSQL(cfg.Name)); err != nil {
			return fmt.Errorf("create the DDL log trigger on the warehouse: %w", err)
		}
		var list []string
		for _, t := range tables {
			list = append(list, t.String())
		}
		_, err := tx.Exec(ctx, `INSERT INTO herd.replicate_subscriptions (name, mode, source_url, into_schema, tables, all_tables)
			VALUES ($1, 'logical', $2, $3, $4, $5)`, cfg.Name, cfg.SourceURL, cfg.IntoSchema, list, cfg.All)
		if err != nil {
			return fmt.Errorf("record replication %s: %w", cfg.Name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// CREATE SUBSCRIPTION creates the slot on the source, which cannot
	// happen inside a transaction block.
	sub := fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (copy_data = true)",
		quote(cfg.Name), literal(cfg.SourceURLFromWarehouse), quote(cfg.Name))
	if _, err = wh.Exec(ctx, sub); err != nil {
		_, _ = wh.Exec(context.WithoutCancel(ctx), "DELETE FROM herd.replicate_subscriptions WHERE name = $1", cfg.Name)
		return fmt.Errorf("create subscription %s on the warehouse (connecting to the source from the warehouse server): %w", cfg.Name, err)
	}
	// From here on the replication exists and runs; an error while waiting
	// for the copy must not tear the source side down under it.
	sourceDone = false
	cfg.Log.Info("replicate: subscription created, initial copy running", "name", cfg.Name)
	estimates := map[string]int64{}
	for _, t := range tables {
		estimates[t.String()] = t.Rows
	}
	if cfg.CopyTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.CopyTimeout)
		defer cancel()
	}
	return waitCopied(ctx, wh, cfg.Name, estimates, cfg.Progress, cfg.ProgressEvery)
}

// createTargets creates the warehouse tables and lets the analysts group
// read them. A target that exists and holds rows is refused: the initial
// copy would collide with them.
func createTargets(ctx context.Context, tx pgx.Tx, log *slog.Logger, group string, tables []table) error {
	var schemas, names []string
	for _, t := range tables {
		schemas, names = append(schemas, t.Schema), append(names, t.qualified())
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+quote(t.Schema)); err != nil {
			return fmt.Errorf("create schema %s on the warehouse: %w", t.Schema, err)
		}
		var exists, rows bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", t.qualified()).Scan(&exists); err != nil {
			return fmt.Errorf("look up %s on the warehouse: %w", t, err)
		}
		if exists {
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM "+t.qualified()+")").Scan(&rows); err != nil {
				return fmt.Errorf("look into %s on the warehouse: %w", t, err)
			}
			if rows {
				return fmt.Errorf("warehouse table %s exists and has rows; the initial copy would collide with them: TRUNCATE %s; or DROP TABLE %s; first", t, t.qualified(), t.qualified())
			}
			continue
		}
		if _, err := tx.Exec(ctx, createTableSQL(t)); err != nil {
			return fmt.Errorf("create %s on the warehouse: %w", t, err)
		}
	}
	return grantAnalysts(ctx, tx, log, group, schemas, names)
}

// tableState is one row of pg_subscription_rel with copy progress.
type tableState struct {
	Table  string
	State  string
	Copied int64 // rows copied so far (during the copy) or in the table (once ready)
}

// stateNames spells out pg_subscription_rel.srsubstate.
var stateNames = map[string]string{
	"i": "init", "d": "copying", "f": "copied", "s": "synchronized", "r": "ready",
}

func subscriptionTables(ctx context.Context, wh *pgxpool.Pool, name string) ([]tableState, error) {
	rows, _ := wh.Query(ctx, `
		SELECT format('%s.%s', n.nspname, c.relname), sr.srsubstate::text, coalesce(p.tuples_processed, 0)
		FROM pg_subscription s
		JOIN pg_subscription_rel sr ON sr.srsubid = s.oid
		JOIN pg_class c ON c.oid = sr.srrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_stat_progress_copy p ON p.relid = sr.srrelid AND p.datid = s.subdbid
		WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		ORDER BY 1`, name)
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tableState, error) {
		var t tableState
		err := r.Scan(&t.Table, &t.State, &t.Copied)
		t.State = cmpOr(stateNames[t.State], t.State)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("read tables of subscription %s: %w", name, err)
	}
	return ts, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// waitCopied polls the subscription's tables until all are ready, printing
// one line per table that is still copying (with rows copied so far
// against the source's estimate) every interval, and one when it is done.
func waitCopied(ctx context.Context, wh *pgxpool.Pool, name string, estimates map[string]int64, out io.Writer, every time.Duration) error {
	start := time.Now()
	reported := map[string]bool{}
	tick := time.NewTicker(min(every, 250*time.Millisecond))
	defer tick.Stop()
	lastPrint := time.Time{}
	for {
		ts, err := subscriptionTables(ctx, wh, name)
		if err != nil {
			return err
		}
		print := time.Since(lastPrint) >= every
		allReady := len(ts) > 0
		for _, t := range ts {
			internal := strings.HasPrefix(t.Table, "herd_replicate.")
			ready := t.State == "ready"
			allReady = allReady && ready
			if internal {
				continue
			}
			switch {
			case ready && !reported[t.Table]:
				reported[t.Table] = true
				var n int64
				if err := wh.QueryRow(ctx, "SELECT count(*) FROM "+quoteQualified(t.Table)).Scan(&n); err != nil {
					return fmt.Errorf("count rows of %s: %w", t.Table, err)
				}
				fmt.Fprintf(out, "%s: ready, %d rows copied\n", t.Table, n)
			case !ready && print:
				est := estimates[t.Table]
				if t.State == "copying" && est > 0 {
					fmt.Fprintf(out, "%s: copying, %d of ~%d rows (%d%%)\n", t.Table, t.Copied, est, min(100, t.Copied*100/est))
				} else {
					fmt.Fprintf(out, "%s: %s, %d rows copied\n", t.Table, t.State, t.Copied)
				}
			}
		}
		if print {
			lastPrint = time.Now()
		}
		if allReady {
			fmt.Fprintf(out, "initial copy of %d tables done in %s\n", len(reported), time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the initial copy of subscription %s: %w (it goes on in the background; see herd replicate status)", name, ctx.Err())
		case <-tick.C:
		}
	}
}

// quoteQualified quotes "schema.table" as read back from the catalog.
func quoteQualified(s string) string {
	schema, name, ok := strings.Cut(s, ".")
	if !ok {
		return quote(s)
	}
	return quote(schema, name)
}

// addFDW imports the source tables as foreign tables into cfg.IntoSchema.
func addFDW(ctx context.Context, wh *pgxpool.Pool, cfg Config, tables []table) error {
	opts, user, err := fdwOptions(cfg.SourceURLFromWarehouse)
	if err != nil {
		return err
	}
	var avail bool
	if err := wh.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'postgres_fdw')").Scan(&avail); err != nil {
		return fmt.Errorf("look for postgres_fdw on the warehouse: %w", err)
	}
	if !avail {
		return errors.New("postgres_fdw is not installed on the warehouse server: install the postgresql-contrib package (Debian: it ships with postgresql-NN)")
	}
	var list []string
	for _, t := range tables {
		list = append(list, t.String())
	}
	err = pgx.BeginFunc(ctx, wh, func(tx pgx.Tx) error {
		stmts := []string{
			"CREATE EXTENSION IF NOT EXISTS postgres_fdw",
			fmt.Sprintf("CREATE SERVER %s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (%s)", quote(cfg.Name), opts),
			fmt.Sprintf("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (%s)", quote(cfg.Name), user),
			"CREATE SCHEMA IF NOT EXISTS " + quote(cfg.IntoSchema),
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("set up postgres_fdw server %s on the warehouse: %s: %w", cfg.Name, strings.SplitN(s, " OPTIONS", 2)[0], err)
			}
		}
		// Analysts read the foreign tables with their own user mapping.
		if err := ensurePublicMapping(ctx, tx, cfg.Name); err != nil {
			return err
		}
		if err := importForeign(ctx, tx, cfg.Name, cfg.IntoSchema, list); err != nil {
			return err
		}
		if err := grantForeignTables(ctx, tx, cfg.Log, cfg.AnalystsGroup, cfg.Name, cfg.IntoSchema); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO herd.replicate_subscriptions (name, mode, source_url, into_schema, tables, all_tables)
			VALUES ($1, 'fdw', $2, $3, $4, $5)`, cfg.Name, cfg.SourceURL, cfg.IntoSchema, list, cfg.All)
		if err != nil {
			return fmt.Errorf("record replication %s: %w", cfg.Name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.Progress, "imported %d foreign tables into schema %s\n", len(list), cfg.IntoSchema)
	return nil
}

// importForeign imports tables ("schema.table") from server into schema.
func importForeign(ctx context.Context, tx pgx.Tx, server, into string, tables []string) error {
	bySchema := map[string][]string{}
	for _, t := range tables {
		s, n, _ := strings.Cut(t, ".")
		bySchema[s] = append(bySchema[s], quote(n))
	}
	schemas := make([]string, 0, len(bySchema))
	for s := range bySchema {
		schemas = append(schemas, s)
	}
	sort.Strings(schemas)
	for _, s := range schemas {
		q := fmt.Sprintf("IMPORT FOREIGN SCHEMA %s LIMIT TO (%s) FROM SERVER %s INTO %s",
			quote(s), strings.Join(bySchema[s], ", "), quote(server), quote(into))
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("import foreign tables %v of source schema %s into %s: %w", bySchema[s], s, into, err)
		}
	}
	return nil
}

// fdwOptions turns a postgres:// URL into postgres_fdw server and user
// mapping options.
func fdwOptions(raw string) (server, user string, err error) {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return "", "", fmt.Errorf("parse source URL: %w", err)
	}
	s := []string{"host " + literal(cfg.Host), fmt.Sprintf("port %s", literal(fmt.Sprint(cfg.Port))), "dbname " + literal(cfg.Database)}
	if u, err := url.Parse(raw); err == nil {
		if m := u.Query().Get("sslmode"); m != "" {
			s = append(s, "sslmode "+literal(m))
		}
	}
	us := []string{"user " + literal(cfg.User)}
	if cfg.Password != "" {
		us = append(us, "password "+literal(cfg.Password))
	}
	return strings.Join(s, ", "), strings.Join(us, ", "), nil
}
