package replicate

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Problem is one finding of the pre-flight checks. Fatal problems make Add
// refuse; the others are printed and Add goes on.
type Problem struct {
	Check   string // what was checked: "wal_level", "replica identity", ...
	Object  string // the setting, role or table concerned
	Fatal   bool
	Message string
	Fix     string // the command that resolves it
}

func (p Problem) String() string {
	sev := "warning"
	if p.Fatal {
		sev = "error"
	}
	s := fmt.Sprintf("%s: %s: %s", sev, p.Object, p.Message)
	if p.Fix != "" {
		s += "\n    fix: " + p.Fix
	}
	return s
}

// PreflightError is returned by Add when the source is not ready.
type PreflightError struct{ Problems []Problem }

func (e *PreflightError) Error() string {
	var b strings.Builder
	n := 0
	for _, p := range e.Problems {
		if p.Fatal {
			n++
		}
	}
	fmt.Fprintf(&b, "the source is not ready for logical replication (%d problems):", n)
	for _, p := range e.Problems {
		if p.Fatal {
			b.WriteString("\n  " + p.String())
		}
	}
	return b.String()
}

// minServerVersion is the first release whose logical replication herd
// trusts: 10.4 fixed several apply and initial-copy bugs of 10.0-10.3.
const minServerVersion = 100004

// Preflight checks the source for logical replication of the given tables
// (names as in Config.Tables, or all) and returns every problem found, each
// with the command that fixes it. It changes nothing.
func Preflight(ctx context.Context, cfg Config) ([]Problem, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	src, err := connectSource(ctx, cfg.SourceURL)
	if err != nil {
		return nil, err
	}
	defer src.Close(context.WithoutCancel(ctx))
	oids, err := resolveTables(ctx, src, cfg.Tables, cfg.All)
	if err != nil {
		return nil, err
	}
	tables, err := readTables(ctx, src, oids)
	if err != nil {
		return nil, err
	}
	return preflight(ctx, src, cfg, tables)
}

func preflight(ctx context.Context, src *pgx.Conn, cfg Config, tables []table) ([]Problem, error) {
	var (
		version                    int
		walLevel                   string
		maxSlots, usedSlots        int
		maxSenders, usedSenders    int
		user                       string
		super, replication, create bool
		slotExists, pubExists      bool
	)
	err := src.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('wal_level'),
			current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_replication_slots),
			current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_stat_replication),
			current_user, r.rolsuper, r.rolreplication, has_database_privilege(current_database(), 'CREATE'),
			EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1),
			EXISTS (SELECT FROM pg_publication WHERE pubname = $1)
		FROM pg_roles r WHERE r.rolname = current_user`, cfg.Name).Scan(
		&version, &walLevel, &maxSlots, &usedSlots, &maxSenders, &usedSenders,
		&user, &super, &replication, &create, &slotExists, &pubExists)
	if err != nil {
		return nil, fmt.Errorf("read source settings: %w", err)
	}
	var ps []Problem
	add := func(p Problem) { ps = append(ps, p) }
	if version < minServerVersion {
		add(Problem{Check: "version", Object: "server_version", Fatal: true,
			Message: fmt.Sprintf("the source runs PostgreSQL %d.%d; logical replication needs 10.4 or later", version/10000, version%100),
			Fix:     "upgrade the source, or use --mode fdw (postgres_fdw reads it directly)"})
	}
	if walLevel != "logical" {
		add(Problem{Check: "wal_level", Object: "wal_level", Fatal: true,
			Message: fmt.Sprintf("wal_level is %q; publishing changes needs \"logical\"", walLevel),
			Fix:     "ALTER SYSTEM SET wal_level = logical; then restart the source server (Amazon RDS: set rds.logical_replication = 1 in the parameter group and reboot)"})
	}
	// The subscription holds one slot and one WAL sender; during the
	// initial copy each table-sync worker (max_sync_workers_per_subscription,
	// 2 by default) holds one more of each.
	need := 1 + min(len(tables), 2)
	if maxSlots-usedSlots < need {
		add(Problem{Check: "replication slots", Object: "max_replication_slots", Fatal: true,
			Message: fmt.Sprintf("%d of %d replication slots are in use; herd needs %d free", usedSlots, maxSlots, need),
			Fix:     fmt.Sprintf("ALTER SYSTEM SET max_replication_slots = %d; then restart the source server (or drop unused slots: SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active)", usedSlots+need+2)})
	}
	if maxSenders-usedSenders < need {
		add(Problem{Check: "WAL senders", Object: "max_wal_senders", Fatal: true,
			Message: fmt.Sprintf("%d of %d WAL senders are in use; herd needs %d free", usedSenders, maxSenders, need),
			Fix:     fmt.Sprintf("ALTER SYSTEM SET max_wal_senders = %d; then restart the source server", usedSenders+need+2)})
	}
	if slotExists {
		add(Problem{Check: "replication slots", Object: "slot " + cfg.Name, Fatal: true,
			Message: "a replication slot of this name already exists (an earlier herd replicate add, or another tool)",
			Fix:     fmt.Sprintf("SELECT pg_drop_replication_slot(%s); on the source, or choose another --name", literal(cfg.Name))})
	}
	if pubExists {
		add(Problem{Check: "publication", Object: "publication " + cfg.Name, Fatal: true,
			Message: "a publication of this name already exists on the source",
			Fix:     fmt.Sprintf("DROP PUBLICATION %s; on the source, or choose another --name", quote(cfg.Name))})
	}
	if !super && !replication {
		add(Problem{Check: "privileges", Object: "role " + user, Fatal: true,
			Message: "the role has neither REPLICATION nor SUPERUSER; the subscription cannot stream",
			Fix:     fmt.Sprintf("ALTER ROLE %s WITH REPLICATION;", quote(user))})
	}
	if !super && !create {
		add(Problem{Check: "privileges", Object: "role " + user, Fatal: true,
			Message: "the role may not create publications in this database",
			Fix:     fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s;", quote(currentDB(ctx, src)), quote(user))})
	}
	if !super {
		add(Problem{Check: "schema drift", Object: "role " + user,
			Message: "event triggers need a superuser: column changes on the source will not be followed automatically",
			Fix:     "run herd replicate add once as a superuser, or add new columns on the warehouse before the source"})
	}
	if len(tables) == 0 {
		add(Problem{Check: "tables", Object: "source", Fatal: true, Message: "no tables to replicate",
			Fix: "create the tables first, or name them with --tables"})
	}
	for _, t := range tables {
		for _, p := range preflightTable(t, super, user, version) {
			add(p)
		}
		if cfg.IntoSchema != "" && cfg.IntoSchema != t.Schema {
			add(Problem{Check: "schema", Object: t.String(), Fatal: true,
				Message: fmt.Sprintf("logical replication matches tables by schema-qualified name, so %s can only land in schema %q on the warehouse, not %q", t, t.Schema, cfg.IntoSchema),
				Fix:     "omit --into-schema (the warehouse keeps the source's schemas), or use --mode fdw --into-schema " + cfg.IntoSchema})
		}
	}
	return ps, nil
}

// preflightTable is the per-table part of the pre-flight.
func preflightTable(t table, super bool, user string, version int) []Problem {
	var ps []Problem
	q := t.qualified()
	switch {
	case t.Kind == "p" && version < 130000:
		ps = append(ps, Problem{Check: "table kind", Object: t.String(), Fatal: true,
			Message: "partitioned tables can be published from PostgreSQL 13 on",
			Fix:     "name the partitions with --tables instead, or upgrade the source"})
	case t.Kind != "r" && t.Kind != "p":
		ps = append(ps, Problem{Check: "table kind", Object: t.String(), Fatal: true,
			Message: "only ordinary and partitioned tables can be published (this is a view, foreign table or sequence)",
			Fix:     "replicate the tables it reads from, or use --mode fdw"})
	}
	if t.Persistence != "p" {
		ps = append(ps, Problem{Check: "table kind", Object: t.String(), Fatal: true,
			Message: "unlogged and temporary tables write no WAL, so they cannot be replicated",
			Fix:     fmt.Sprintf("ALTER TABLE %s SET LOGGED;", q)})
	}
	if !super && !t.Owned {
		ps = append(ps, Problem{Check: "privileges", Object: t.String(), Fatal: true,
			Message: fmt.Sprintf("the table belongs to %s; only its owner may add it to a publication", t.Owner),
			Fix:     fmt.Sprintf("GRANT %s TO %s; (or run herd replicate add as %s)", quote(t.Owner), quote(user), t.Owner)})
	}
	if len(t.Key) == 0 {
		switch t.ReplIdent {
		case "f":
			ps = append(ps, Problem{Check: "replica identity", Object: t.String(),
				Message: "REPLICA IDENTITY FULL: every UPDATE and DELETE is applied by scanning the warehouse table",
				Fix:     fmt.Sprintf("ALTER TABLE %s ADD PRIMARY KEY (...);", q)})
		default:
			fix := fmt.Sprintf("ALTER TABLE %s ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;", q)
			for _, c := range t.Columns {
				if c.Name == "id" {
					fix = fmt.Sprintf("ALTER TABLE %s ADD PRIMARY KEY (id);", q)
				}
			}
			if t.UniqueIndex != "" {
				fix = fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY USING INDEX %s;", q, quote(t.UniqueIndex))
			}
			fix += fmt.Sprintf(" (or, slower to apply: ALTER TABLE %s REPLICA IDENTITY FULL;)", q)
			ps = append(ps, Problem{Check: "replica identity", Object: t.String(), Fatal: true,
				Message: "no primary key or replica identity: once published, the app's own UPDATEs and DELETEs on it would fail",
				Fix:     fix})
		}
	}
	for _, c := range t.Columns {
		switch {
		case c.Generated != "" && c.Portable:
			ps = append(ps, Problem{Check: "generated column", Object: t.String() + "." + c.Name,
				Message: "generated columns are not replicated; the warehouse computes it from the same expression"})
		case c.Generated != "":
			ps = append(ps, Problem{Check: "generated column", Object: t.String() + "." + c.Name,
				Message: "generated column of a type the warehouse lacks: it stays empty on the warehouse"})
		case !c.Portable:
			ps = append(ps, Problem{Check: "column type", Object: t.String() + "." + c.Name,
				Message: fmt.Sprintf("type %s is not built in and may not exist on the warehouse; the column is created as %s", c.Type, c.TargetType)})
		}
		if c.Type == "oid" || c.Type == "lo" {
			ps = append(ps, Problem{Check: "column type", Object: t.String() + "." + c.Name,
				Message: "large objects are not replicated; only the oid number arrives"})
		}
	}
	return ps
}

func currentDB(ctx context.Context, c *pgx.Conn) string {
	var s string
	_ = c.QueryRow(ctx, "SELECT current_database()").Scan(&s)
	return s
}

func fatal(ps []Problem) bool {
	for _, p := range ps {
		if p.Fatal {
			return true
		}
	}
	return false
}
