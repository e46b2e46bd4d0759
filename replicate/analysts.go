package replicate

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"

	"github.com/herdhq/herd/analysts"
	"github.com/jackc/pgx/v5"
)

var groupRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// validGroup checks an analysts group given in a configuration; empty means
// the warehouse database's own group (analysts.GroupName), which every
// analyst of that database is a member of.
func validGroup(group string) error {
	if group == "" {
		return nil
	}
	if !groupRE.MatchString(group) || strings.HasPrefix(group, "pg_") {
		return fmt.Errorf("analysts group %q: want a lower-case SQL identifier of at most 63 characters, not starting with pg_", group)
	}
	return nil
}

// grantAnalysts lets the analysts group read tables (quoted, schema-qualified
// names) in schemas: USAGE on each schema that the group cannot use yet
// (public usually grants it to everyone already, and herd may not own it)
// and SELECT on the tables. The group is created, NOLOGIN, when missing.
// When it is missing and herd's role may not create roles, nothing is
// granted: then no analyst can exist either (adding one creates the group),
// so there is nobody to grant to.
func grantAnalysts(ctx context.Context, tx pgx.Tx, log *slog.Logger, group string, schemas, tables []string) error {
	if len(tables) == 0 {
		return nil
	}
	if err := validGroup(group); err != nil {
		return err
	}
	if group == "" {
		// Roles are server-wide: a group per database, so that another
		// warehouse's analysts on this server cannot read these tables.
		var db string
		if err := tx.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
			return fmt.Errorf("read the warehouse database's name: %w", err)
		}
		group = analysts.GroupName(db)
	}
	if err := analysts.CheckGroup(ctx, tx, group); err != nil {
		return fmt.Errorf("let analysts read the replicated tables: %w", err)
	}
	var exists, canCreate bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1),
			(SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user)`, group).Scan(&exists, &canCreate); err != nil {
		return fmt.Errorf("look up role %s: %w", group, err)
	}
	if !exists && !canCreate {
		log.Warn("replicate: analysts group missing and herd's role may not create it; not granting", "group", group)
		return nil
	}
	// Roles are server-wide: another database's herd (or a concurrent
	// analysts add) may create the group at the same moment.
	create := fmt.Sprintf(`DO $herd$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN CREATE ROLE %s NOLOGIN; END IF;
	EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
	END $herd$`, literal(group), quote(group))
	if _, err := tx.Exec(ctx, create); err != nil {
		return fmt.Errorf("create role %s: %w", group, err)
	}
	var stmts []string
	seen := map[string]bool{}
	sorted := append([]string(nil), schemas...)
	sort.Strings(sorted)
	for _, s := range sorted {
		if seen[s] {
			continue
		}
		seen[s] = true
		var usable bool
		if err := tx.QueryRow(ctx, "SELECT has_schema_privilege($1, $2, 'USAGE')", group, s).Scan(&usable); err != nil {
			return fmt.Errorf("check %s's access to schema %s: %w", group, s, err)
		}
		if !usable {
			stmts = append(stmts, fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", quote(s), quote(group)))
		}
	}
	stmts = append(stmts, fmt.Sprintf("GRANT SELECT ON %s TO %s", strings.Join(tables, ", "), quote(group)))
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("let analysts (role %s) read the replicated tables: %s: %w", group, firstLine(s), err)
		}
	}
	return nil
}

// ensurePublicMapping creates the FDW server's user mapping FOR PUBLIC, with
// the options of herd's own mapping, unless it exists. A foreign table is
// read with the user mapping of the role that queries it, so without this
// an analyst gets "user mapping not found". PUBLIC does not open the source
// to every role: a role still needs SELECT on a foreign table to read it
// through the mapping, and only herd's role (owner of the server) may create
// foreign tables on it; the tables herd imports are granted to the
// analysts group alone. The mapping's options, with the source password,
// are shown in pg_user_mappings only to members of the server's owner.
func ensurePublicMapping(ctx context.Context, tx pgx.Tx, server string) error {
	var exists, super bool
	var version int
	var opts []string
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_user_mappings WHERE srvname = $1 AND umuser = 0),
			coalesce((SELECT umoptions FROM pg_user_mappings WHERE srvname = $1 AND umuser <> 0 AND usename = current_user), '{}'),
			(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), current_setting('server_version_num')::int`,
		server).Scan(&exists, &opts, &super, &version)
	if err != nil {
		return fmt.Errorf("read user mappings of server %s: %w", server, err)
	}
	if exists || len(opts) == 0 {
		return nil
	}
	var list []string
	keys := map[string]bool{}
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		keys[k] = true
		list = append(list, quote(k)+" "+literal(v))
	}
	if super && !keys["password"] && !keys["password_required"] && version >= 130000 {
		// postgres_fdw lets a non-superuser connect only with a password
		// the source asked for, so that nobody borrows the warehouse
		// server's own identity (trust, peer, its .pgpass) through a
		// mapping they wrote themselves. This one is written by a
		// superuser for the source herd itself reads, so analysts connect
		// exactly as herd does; only a superuser may set this option.
		list = append(list, "password_required 'false'")
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE USER MAPPING IF NOT EXISTS FOR PUBLIC SERVER %s OPTIONS (%s)", quote(server), strings.Join(list, ", "))); err != nil {
		return fmt.Errorf("create user mapping for public on server %s: %w", server, err)
	}
	return nil
}

// grantForeignTables grants the foreign tables of server in schema into to
// the analysts group.
func grantForeignTables(ctx context.Context, tx pgx.Tx, log *slog.Logger, group, server, into string) error {
	rows, _ := tx.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname)
		FROM pg_foreign_table ft JOIN pg_foreign_server s ON s.oid = ft.ftserver
		JOIN pg_class c ON c.oid = ft.ftrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE s.srvname = $1 AND n.nspname = $2 ORDER BY 1`, server, into)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list foreign tables of server %s: %w", server, err)
	}
	return grantAnalysts(ctx, tx, log, group, []string{into}, names)
}
