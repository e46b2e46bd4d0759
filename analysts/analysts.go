// Package analysts gives each person a login role and a schema of their own
// with read access to the warehouse, and reports who uses how much of it:
// size per schema and query time per role.
package analysts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/secrets"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures analyst roles. The zero value works.
type Config struct {
	// Schemas analysts may read, created empty when missing so that grants
	// and default privileges are in place before data arrives.
	// Default: herd, app, stripe, rollups.
	Schemas []string
	// StatementTimeout is set on each analyst role, so a runaway query
	// cannot hold the warehouse for hours. Default 5m.
	StatementTimeout time.Duration
	// TableOwners are the roles that will create tables in Schemas later
	// (the loaders, the rollup scheduler). Default: the role herd connects as.
	TableOwners []string
	// Host and Port override the server address in the printed connection
	// string, for when herd reaches Postgres by a different address than
	// people do. Default: the address herd connected to.
	Host string
	Port int
	// Group is a NOLOGIN role every analyst is made a member of, created
	// when missing. herd replicate grants the tables it loads to it, also
	// where they land outside Schemas (logical replication keeps the
	// source's schema, public.users stays public.users). Roles are
	// server-wide, so the default is one group per warehouse database,
	// GroupName(database): an analyst of one warehouse gets nothing another
	// warehouse on the same server grants its own analysts.
	Group string
}

// GroupName is the default analysts group of database dbname:
// herd_analysts_<dbname>, or herd_analysts_ and a hash of the name when that
// would pass Postgres's 63-byte limit (which would silently truncate it, and
// two long names could meet). herd.analysts_group() computes the same in SQL.
func GroupName(dbname string) string { return perDatabase("herd_analysts_", dbname) }

// RetiredName is the role that owns what removed analysts of database dbname
// left behind (herd analysts remove without --drop-objects):
// herd_retired_analysts_<dbname>, hashed like GroupName when too long. It
// cannot log in and is granted nothing, so a view or SECURITY DEFINER
// function an analyst wrote reads nothing more once it is this role's.
func RetiredName(dbname string) string { return perDatabase("herd_retired_analysts_", dbname) }

func perDatabase(prefix, dbname string) string {
	if len(prefix)+len(dbname) <= 63 {
		return prefix + dbname
	}
	sum := sha256.Sum256([]byte(dbname))
	return prefix + hex.EncodeToString(sum[:])[:32]
}

// reservedPrefixes start the names of roles herd makes itself (analysts
// groups, the retired analysts' role, herd_replicate_*), and pg_ those of
// Postgres: an analyst named herd_analysts_<db> would otherwise be taken
// for that database's group.
var reservedPrefixes = []string{"pg_", "herd_"}

// CheckGroup refuses group as an analysts group when it exists but is not
// one: a role that can log in (an analyst, or anyone's login role), or one
// herd added as an analyst. Roles are server-wide, so a name meant for the
// group of one database may have been taken by another's role first; making
// it the group would give whoever logs in as it every analyst's grants.
func CheckGroup(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, group string) error {
	var login, known bool
	err := q.QueryRow(ctx, `SELECT coalesce((SELECT rolcanlogin FROM pg_roles WHERE rolname = $1), false),
			to_regclass('herd.analysts') IS NOT NULL`, group).Scan(&login, &known)
	if err != nil {
		return fmt.Errorf("look up analysts group %s: %w", group, err)
	}
	var analyst bool
	if known { // a warehouse where only replicate's migrations ran has no herd.analysts
		if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT FROM herd.analysts WHERE name = $1)", group).Scan(&analyst); err != nil {
			return fmt.Errorf("look up analysts group %s: %w", group, err)
		}
	}
	if login || analyst {
		return fmt.Errorf("role %s exists and is not an analysts group (it can log in, or is an analyst); "+
			"rename or drop that role, or name another group", group)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if len(c.Schemas) == 0 {
		c.Schemas = []string{"herd", "app", "stripe", "intercom", "front", "salesforce", "rollups"}
	}
	if c.StatementTimeout <= 0 {
		c.StatementTimeout = 5 * time.Minute
	}
	return c
}

// Analyst is one analyst role.
type Analyst struct {
	Name        string
	Password    string // only returned by Add
	URL         string // only returned by Add: connection string with the password
	CreatedAt   time.Time
	CreatedBy   string
	RoleExists  bool  // false when the role was dropped outside herd
	SchemaBytes int64 // size of the analyst's own schema
}

// reserved names would collide with the warehouse's own schemas or roles.
var reserved = map[string]bool{
	"herd": true, "app": true, "stripe": true, "rollups": true, "public": true,
	"postgres": true, "information_schema": true,
}

// ValidName checks an analyst name: a lowercase SQL identifier of at most 63
// bytes (Postgres truncates longer names silently), not starting with pg_
// (reserved by Postgres) or herd_ (reserved for herd's own roles) and not
// one of the warehouse's schemas.
func ValidName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("analyst name %q: want 1 to 63 characters", name)
	}
	for i, c := range name {
		ok := c == '_' || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return fmt.Errorf("analyst name %q: want lowercase letters, digits and _, starting with a letter or _", name)
		}
	}
	if reserved[name] {
		return fmt.Errorf("analyst name %q is reserved; choose another", name)
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("analyst name %q: names starting with %s are reserved; choose another", name, p)
		}
	}
	return nil
}

// Add creates the analyst's login role and schema, grants read access to
// the warehouse schemas including tables created there later, and returns
// the connection string. Everything happens in one transaction: a failure
// leaves no half-made role behind.
func Add(ctx context.Context, db *pgxpool.Pool, log *slog.Logger, cfg Config, name string) (Analyst, error) {
	cfg = cfg.withDefaults()
	if err := ValidName(name); err != nil {
		return Analyst{}, err
	}
	if cfg.Group != "" && (!groupRE.MatchString(cfg.Group) || strings.HasPrefix(cfg.Group, "pg_")) {
		return Analyst{}, fmt.Errorf("analysts group %q: want a lower-case SQL identifier of at most 63 characters, not starting with pg_", cfg.Group)
	}
	password := secrets.Generate(18)
	verifier, err := secrets.ScramVerifier(password)
	if err != nil {
		return Analyst{}, fmt.Errorf("add analyst %s: hash password: %w", name, err)
	}
	role := pgx.Identifier{name}.Sanitize()
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var exists, super bool
		var me, dbname string
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
				(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), current_user, current_database()`,
			name).Scan(&exists, &super, &me, &dbname); err != nil {
			return err
		}
		if exists {
			return fmt.Errorf("a role named %s already exists on this server (roles are server-wide); choose another name", name)
		}
		if cfg.Group == "" {
			cfg.Group = GroupName(dbname)
		}
		if name == cfg.Group {
			return fmt.Errorf("analyst name %q is the analysts group's name; choose another", name)
		}
		if err := CheckGroup(ctx, tx, cfg.Group); err != nil {
			return err
		}
		stmts := []string{
			// The password goes over the wire as a SCRAM verifier, never
			// in clear text, so statement logs do not capture it.
			"CREATE ROLE " + role + " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD " + quoteLiteral(verifier),
		}
		if !super {
			// Before PostgreSQL 16 a CREATEROLE user must be a member of
			// a role to create a schema owned by it.
			stmts = append(stmts, "GRANT "+role+" TO "+pgx.Identifier{me}.Sanitize())
		}
		group := pgx.Identifier{cfg.Group}.Sanitize()
		stmts = append(stmts,
			// Roles are server-wide: a concurrent add (or herd replicate,
			// which also creates the group) may create it at the same time.
			`DO $herd$ BEGIN
				IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = `+quoteLiteral(cfg.Group)+`) THEN CREATE ROLE `+group+` NOLOGIN; END IF;
			EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
			END $herd$`,
			"GRANT "+group+" TO "+role,
			"GRANT CONNECT ON DATABASE "+pgx.Identifier{dbname}.Sanitize()+" TO "+role,
			"CREATE SCHEMA "+role+" AUTHORIZATION "+role,
			"ALTER ROLE "+role+" SET statement_timeout = "+strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10),
		)
		owners := cfg.TableOwners
		if len(owners) == 0 {
			owners = []string{me}
		}
		for _, s := range cfg.Schemas {
			schema := pgx.Identifier{s}.Sanitize()
			if s == "herd" {
				// herd's own schema holds credentials (write keys, the
				// app database's URL) and results computed with herd's
				// privileges: the analyst reads the tables and columns
				// herd.grant_analyst_read lists, and no default
				// privileges, so a table herd adds later stays private.
				stmts = append(stmts, "SELECT herd.grant_analyst_read("+quoteLiteral(name)+")",
					"SELECT herd.grant_event_views("+quoteLiteral(name)+")")
				continue
			}
			stmts = append(stmts,
				"CREATE SCHEMA IF NOT EXISTS "+schema,
				"GRANT USAGE ON SCHEMA "+schema+" TO "+role,
				"GRANT SELECT ON ALL TABLES IN SCHEMA "+schema+" TO "+role,
			)
			// Default privileges belong to the role that creates the
			// object: ALTER DEFAULT PRIVILEGES without FOR ROLE would only
			// cover tables the analyst itself creates, which is useless.
			// Tables appear later in these schemas when herd (replication,
			// Stripe sync, rollups) creates them as its own role, so the
			// defaults are set FOR ROLE of those creators.
			for _, o := range owners {
				stmts = append(stmts, "ALTER DEFAULT PRIVILEGES FOR ROLE "+pgx.Identifier{o}.Sanitize()+
					" IN SCHEMA "+schema+" GRANT SELECT ON TABLES TO "+role)
			}
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", strings.Replace(s, quoteLiteral(verifier), "'***'", 1), err)
			}
		}
		_, err := tx.Exec(ctx, "INSERT INTO herd.analysts (name) VALUES ($1)", name)
		return err
	})
	if err != nil {
		return Analyst{}, fmt.Errorf("add analyst %s: %w", name, err)
	}
	log.Info("analyst added", "name", name, "schemas", cfg.Schemas, "group", cfg.Group)
	return Analyst{Name: name, Password: password, URL: connString(db, cfg, name, password), CreatedAt: time.Now()}, nil
}

func connString(db *pgxpool.Pool, cfg Config, user, password string) string {
	cc := db.Config().ConnConfig
	host, port := cc.Host, int(cc.Port)
	if cfg.Host != "" {
		host = cfg.Host
	}
	if cfg.Port != 0 {
		port = cfg.Port
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Path: "/" + cc.Database}
	q := url.Values{}
	if strings.HasPrefix(host, "/") {
		q.Set("host", host) // a Unix socket directory
		u.Host = ""
	} else {
		u.Host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	if cc.TLSConfig != nil {
		q.Set("sslmode", "require")
	} else {
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Remove drops an analyst's role. With dropObjects the analyst's schema and
// everything it owns are dropped (refused, as Postgres does, when another
// role's object depends on them); without it they are handed to
// RetiredName(database), a role that cannot log in and may read nothing, so
// nothing is lost and nothing the analyst wrote runs with more privileges
// than before (handed to herd's role, a view of theirs would read what herd
// reads, and a SECURITY DEFINER function of theirs would run as herd).
// Every grant on those objects is revoked, PUBLIC's EXECUTE on functions
// included. Only roles created by Add can be removed.
func Remove(ctx context.Context, db *pgxpool.Pool, log *slog.Logger, name string, dropObjects bool) error {
	if err := ValidName(name); err != nil {
		return err
	}
	role := pgx.Identifier{name}.Sanitize()
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var known bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM herd.analysts WHERE name = $1)", name).Scan(&known); err != nil {
			return err
		}
		if !known {
			return fmt.Errorf("%s is not an analyst added by herd (see herd analysts list); refusing to drop it", name)
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
			return err
		}
		var stmts []string
		if exists {
			// Leave the groups the analyst is a member of, the analysts
			// group of Add among them; the groups stay for the others.
			// DROP ROLE would end the memberships as well, so a group herd
			// may not administer is left to it.
			rows, _ := tx.Query(ctx, `SELECT quote_ident(g.rolname) FROM pg_auth_members m
				JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
				WHERE r.rolname = $1 AND pg_has_role(g.oid, 'MEMBER WITH ADMIN OPTION') ORDER BY 1`, name)
			groups, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return fmt.Errorf("read memberships of %s: %w", name, err)
			}
			if len(groups) > 0 {
				stmts = append(stmts, "REVOKE "+strings.Join(groups, ", ")+" FROM "+role)
			}
			if !dropObjects {
				retire, err := retireStatements(ctx, tx, name)
				if err != nil {
					return err
				}
				stmts = append(stmts, retire...)
			}
			// DROP OWNED also revokes the role's grants and the default
			// privileges naming it, which would otherwise block DROP ROLE.
			// No CASCADE: another role's view on the analyst's tables
			// makes this fail instead of silently disappearing.
			stmts = append(stmts, "DROP OWNED BY "+role, "DROP ROLE "+role)
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %s", s, pgText(err))
			}
		}
		// Queries saved as the analyst run as the analyst: with the role
		// gone they cannot run, and a later role of the same name must
		// not inherit them.
		if _, err := tx.Exec(ctx, "DELETE FROM herd.saved_queries WHERE saved_by = $1", name); err != nil {
			return fmt.Errorf("delete the queries %s saved: %w", name, err)
		}
		_, err := tx.Exec(ctx, "DELETE FROM herd.analysts WHERE name = $1", name)
		return err
	})
	if err != nil {
		return fmt.Errorf("remove analyst %s: %w", name, err)
	}
	log.Info("analyst removed", "name", name, "dropped_objects", dropObjects)
	return nil
}

// retireStatements hands what analyst name owns to the retired analysts'
// role of this database (created NOLOGIN when missing) and takes back every
// grant on it: the objects' owner is the only one who can use them until an
// operator decides otherwise.
func retireStatements(ctx context.Context, tx pgx.Tx, name string) ([]string, error) {
	var dbname, me string
	var super bool
	if err := tx.QueryRow(ctx, "SELECT current_database(), current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)").Scan(&dbname, &me, &super); err != nil {
		return nil, err
	}
	retired := RetiredName(dbname)
	var login bool
	if err := tx.QueryRow(ctx, "SELECT coalesce((SELECT rolcanlogin FROM pg_roles WHERE rolname = $1), false)", retired).Scan(&login); err != nil {
		return nil, err
	}
	if login {
		return nil, fmt.Errorf("role %s, meant to own removed analysts' objects, can log in; fix that role, or remove with --drop-objects", retired)
	}
	r := pgx.Identifier{retired}.Sanitize()
	stmts := []string{`DO $herd$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ` + quoteLiteral(retired) + `) THEN
			CREATE ROLE ` + r + ` NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
		END IF;
	EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
	END $herd$`}
	if !super {
		// REASSIGN OWNED needs the privileges of the new owner.
		stmts = append(stmts, "GRANT "+r+" TO "+pgx.Identifier{me}.Sanitize())
	}
	stmts = append(stmts, "REASSIGN OWNED BY "+pgx.Identifier{name}.Sanitize()+" TO "+r,
		// Grants on what the retired role now owns, to PUBLIC (a function's
		// EXECUTE by default) or to anyone, are revoked; the owner's stay.
		`DO $herd$
		DECLARE
			owner oid := (SELECT oid FROM pg_roles WHERE rolname = `+quoteLiteral(retired)+`);
			q text;
		BEGIN
			FOR q IN
				SELECT format('REVOKE ALL ON %s %s FROM %s', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass, g)
				FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", c.relowner))) a,
					LATERAL (SELECT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END) x(g)
				WHERE c.relowner = owner AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND a.grantee <> owner
				UNION
				SELECT format('REVOKE ALL ON ROUTINE %s FROM %s', p.oid::regprocedure, g)
				FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f'::"char", p.proowner))) a,
					LATERAL (SELECT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END) x(g)
				WHERE p.proowner = owner AND a.grantee <> owner
				UNION
				SELECT format('REVOKE ALL ON SCHEMA %I FROM %s', n.nspname, g)
				FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n'::"char", n.nspowner))) a,
					LATERAL (SELECT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END) x(g)
				WHERE n.nspowner = owner AND a.grantee <> owner
			LOOP
				EXECUTE q;
			END LOOP;
		END $herd$`)
	return stmts, nil
}

// List returns the analysts herd added, with the size of their schemas.
func List(ctx context.Context, db *pgxpool.Pool) ([]Analyst, error) {
	rows, _ := db.Query(ctx, `SELECT a.name, a.created_at, a.created_by,
			EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = a.name), coalesce(s.bytes, 0)
		FROM herd.analysts a LEFT JOIN herd.schema_sizes s ON s.schema = a.name
		ORDER BY a.name`)
	var out []Analyst
	var a Analyst
	_, err := pgx.ForEachRow(rows, []any{&a.Name, &a.CreatedAt, &a.CreatedBy, &a.RoleExists, &a.SchemaBytes}, func() error {
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list analysts: %w", err)
	}
	return out, nil
}

var groupRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// pgText adds Postgres's detail to an error: for DROP ROLE it lists the
// objects still owned, which is what the operator must act on.
func pgText(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Detail != "" {
		return pe.Message + "; " + pe.Detail
	}
	return err.Error()
}
