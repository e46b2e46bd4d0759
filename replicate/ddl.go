package replicate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema drift.
//
// The source gets an event trigger that writes one row per CREATE/ALTER/DROP
// TABLE into herd_replicate.<name>_ddl_log, in the same transaction as the
// DDL. That log table is itself in the publication, so its rows reach the
// warehouse in commit order: the row describing ALTER TABLE ... ADD COLUMN
// is applied before any transaction that writes the new column.
//
// On the warehouse the log table has a row trigger, enabled ALWAYS so that
// it fires inside the subscription's apply worker, which adds the missing
// columns in that same apply transaction. The column therefore exists
// before the first row carrying it is applied, and apply never fails on it.
// A polling loop could not give that guarantee: apply would fail on the
// missing column and only succeed on the worker's retry, every time.
//
// The log row carries the table's complete column list after the command
// (a snapshot, not the statement text), so the warehouse compares states
// instead of parsing SQL: a column missing on the warehouse is added, a
// column whose type differs or that the source no longer has is reported in
// herd.replicate_drift with the command that resolves it. Target columns
// are nullable (except the key), so a dropped source column cannot stall
// apply.

// ddlLogTable is the log table of replication name, on both sides.
func ddlLogTable(name string) string { return quote("herd_replicate", name+"_ddl_log") }

// targetTypeSQL computes, on the source, the type a column gets on the
// warehouse; it mirrors readColumns.
const targetTypeSQL = `CASE
	WHEN (SELECT tn.nspname FROM pg_type et JOIN pg_namespace tn ON tn.oid = et.typnamespace
	      WHERE et.oid = CASE WHEN t.typelem <> 0 AND t.typlen = -1 THEN t.typelem ELSE t.oid END) = 'pg_catalog'
	THEN format_type(a.atttypid, a.atttypmod)
	WHEN t.typtype = 'd' AND (SELECT bn.nspname FROM pg_type bt JOIN pg_namespace bn ON bn.oid = bt.typnamespace
	      WHERE bt.oid = t.typbasetype) = 'pg_catalog'
	THEN format_type(t.typbasetype, t.typtypmod)
	ELSE 'text' END`

// sourceDDLSQL installs the log table, and (when superuser) the event
// triggers, on the source.
func sourceDDLSQL(name string, eventTriggers bool) string {
	log := ddlLogTable(name)
	fn := quote("herd_replicate", name+"_capture_ddl")
	dropFn := quote("herd_replicate", name+"_capture_drop")
	var b strings.Builder
	fmt.Fprintf(&b, `
CREATE SCHEMA IF NOT EXISTS herd_replicate;
CREATE TABLE IF NOT EXISTS %[1]s (
	id          bigserial PRIMARY KEY,
	at          timestamptz NOT NULL DEFAULT now(),
	command_tag text NOT NULL,
	schema_name text NOT NULL,
	table_name  text NOT NULL,
	columns     jsonb,
	query       text
);
`, log)
	b.WriteString(ddlLogComments(name, "written on this database by herd's event triggers and replicated to the warehouse"))
	if !eventTriggers {
		return b.String()
	}
	fmt.Fprintf(&b, `
CREATE OR REPLACE FUNCTION %[2]s() RETURNS event_trigger LANGUAGE plpgsql AS $herd$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT * FROM pg_event_trigger_ddl_commands()
	         WHERE object_type IN ('table', 'table column') AND schema_name IS NOT NULL
	           AND schema_name NOT IN ('herd_replicate', 'pg_catalog', 'information_schema')
	           AND schema_name NOT LIKE 'pg_temp%%' AND schema_name NOT LIKE 'pg_toast%%'
	LOOP
		INSERT INTO %[1]s (command_tag, schema_name, table_name, columns, query)
		SELECT r.command_tag, r.schema_name, c.relname,
		       (SELECT jsonb_agg(jsonb_build_object(
		                'name', a.attname,
		                'type', format_type(a.atttypid, a.atttypmod),
		                'target', %[4]s,
		                'generated', CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) ELSE '' END,
		                'default', CASE WHEN a.attgenerated = '' THEN coalesce(pg_get_expr(d.adbin, d.adrelid), '') ELSE '' END,
		                'missing', CASE WHEN a.atthasmissing THEN a.attmissingval::text END)
		                ORDER BY a.attnum)
		        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
		       current_query()
		FROM pg_class c WHERE c.oid = r.objid AND c.relkind IN ('r', 'p') AND c.relpersistence = 'p';
	END LOOP;
END
$herd$;

CREATE OR REPLACE FUNCTION %[3]s() RETURNS event_trigger LANGUAGE plpgsql AS $herd$
BEGIN
	INSERT INTO %[1]s (command_tag, schema_name, table_name, query)
	SELECT 'DROP TABLE', o.schema_name, o.object_name, current_query()
	FROM pg_event_trigger_dropped_objects() o
	WHERE o.object_type = 'table' AND o.original
	  AND o.schema_name NOT IN ('herd_replicate') AND o.schema_name NOT LIKE 'pg_temp%%';
END
$herd$;

DROP EVENT TRIGGER IF EXISTS %[5]s;
CREATE EVENT TRIGGER %[5]s ON ddl_command_end
	WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE TABLE AS', 'SELECT INTO')
	EXECUTE PROCEDURE %[2]s();
DROP EVENT TRIGGER IF EXISTS %[6]s;
CREATE EVENT TRIGGER %[6]s ON sql_drop WHEN TAG IN ('DROP TABLE')
	EXECUTE PROCEDURE %[3]s();
`, log, fn, dropFn, targetTypeSQL, quote("herd_"+name+"_ddl"), quote("herd_"+name+"_drop"))
	return b.String()
}

// ddlLogComments comments the DDL log table of replication name and its
// schema, on the source or the warehouse (how says which).
func ddlLogComments(name, how string) string {
	log := ddlLogTable(name)
	stmts := []string{
		// The schema may belong to another role (an earlier replication
		// added by someone else): its comment is then theirs to keep.
		"DO $herd$ BEGIN COMMENT ON SCHEMA herd_replicate IS " + literal("herd replicate's bookkeeping: the DDL logs of the replications and the functions that capture and apply them") +
			"; EXCEPTION WHEN insufficient_privilege THEN NULL; END $herd$",
		"COMMENT ON TABLE " + log + " IS " + literal("Schema changes of the source of replication "+name+" (herd replicate): "+how),
	}
	for _, c := range [][2]string{
		{"id", "Row id on the source, in the order the changes were made"},
		{"at", "When the change was made on the source"},
		{"command_tag", "The DDL command: CREATE TABLE, ALTER TABLE, CREATE TABLE AS, SELECT INTO or DROP TABLE"},
		{"schema_name", "Schema of the table changed, on the source"},
		{"table_name", "Table changed, on the source"},
		{"columns", "The table's columns after the change: [{name, type, target (the type on the warehouse), generated, default, missing}] (JSON); NULL for DROP TABLE"},
		{"query", "The statement that made the change, as the source ran it"},
	} {
		stmts = append(stmts, "COMMENT ON COLUMN "+log+"."+quote(c[0])+" IS "+literal(c[1]))
	}
	return strings.Join(stmts, ";\n") + ";\n"
}

// dropSourceSQL removes what sourceDDLSQL and Add created on the source.
func dropSourceSQL(name string) string {
	return fmt.Sprintf(`
DROP EVENT TRIGGER IF EXISTS %s;
DROP EVENT TRIGGER IF EXISTS %s;
DROP PUBLICATION IF EXISTS %s;
DROP TABLE IF EXISTS %s;
DROP FUNCTION IF EXISTS %s();
DROP FUNCTION IF EXISTS %s();`,
		quote("herd_"+name+"_ddl"), quote("herd_"+name+"_drop"), quote(name), ddlLogTable(name),
		quote("herd_replicate", name+"_capture_ddl"), quote("herd_replicate", name+"_capture_drop"))
}

// warehouseDDLSQL creates the warehouse copy of the log table and the
// trigger that applies it.
func warehouseDDLSQL(name string) string {
	return fmt.Sprintf(`
CREATE SCHEMA IF NOT EXISTS herd_replicate;
CREATE TABLE IF NOT EXISTS %[1]s (
	id          bigint PRIMARY KEY,
	at          timestamptz,
	command_tag text,
	schema_name text,
	table_name  text,
	columns     jsonb,
	query       text
);
`, ddlLogTable(name)) + ddlLogComments(name, "replicated from the source, where event triggers write it; each row inserted here is applied by the apply_ddl trigger") + warehouseFuncsSQL + fmt.Sprintf(`
DROP TRIGGER IF EXISTS apply_ddl ON %[1]s;
CREATE TRIGGER apply_ddl BEFORE INSERT ON %[1]s FOR EACH ROW EXECUTE PROCEDURE herd_replicate.apply_ddl(%[2]s);
-- Triggers do not fire in the subscription's apply worker unless ALWAYS.
ALTER TABLE %[1]s ENABLE ALWAYS TRIGGER apply_ddl;
`, ddlLogTable(name), literal(name))
}

// warehouseFuncsSQL (re)creates the functions the log tables' triggers
// call; replacing them also upgrades a warehouse whose replications were
// added by an older herd (see upgradeApplyDDL).
//
// The log's rows come from the source: anyone who may insert into the
// source's log table writes them, and the trigger runs them in the apply
// worker as a superuser. So the trigger
//   - acts only on the ordinary (or partitioned) tables of its own
//     subscription (pg_subscription_rel), never on another table of the
//     warehouse a row names;
//   - never applies a generated column's expression (it could call any
//     function, an analyst's among them, as superuser): it records the
//     column as 'refused' with the SQL for an operator to review;
//   - quotes every value that reaches SQL (%I, %L) and accepts as a type
//     exactly one type name of pg_catalog (safe_type);
//   - refuses names Postgres would truncate (over 63 bytes), which made a
//     second, identical ADD COLUMN fail;
//   - records every failure in herd.replicate_drift as 'failed' instead of
//     raising it: an error here fails the apply transaction, which the
//     worker retries forever, and replication stalls for good.
const warehouseFuncsSQL = `
CREATE OR REPLACE FUNCTION herd_replicate.safe_type(t text) RETURNS text LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $herd$
DECLARE
	typ regtype;
BEGIN
	IF t IS NULL OR t !~ '^([a-z][a-z0-9_ ]*|"char")(\([0-9]+(,[0-9]+)?\))?( [a-z ]+)?(\[\])*$' THEN
		RETURN NULL;
	END IF;
	BEGIN
		-- Parses t as "SELECT NULL::t" would, and must consume all of it.
		typ := to_regtype(t);
	EXCEPTION WHEN others THEN
		RETURN NULL;
	END;
	IF typ IS NULL OR (SELECT typnamespace FROM pg_catalog.pg_type WHERE oid = typ) <> 'pg_catalog'::regnamespace THEN
		RETURN NULL;
	END IF;
	RETURN t;
END
$herd$;
-- Generated expressions are no longer applied, so nothing checks them.
DROP FUNCTION IF EXISTS herd_replicate.safe_expr(text);
CREATE OR REPLACE FUNCTION herd_replicate.apply_ddl() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $herd$` + applyDDLBody + `$herd$;
REVOKE ALL ON FUNCTION herd_replicate.safe_type(text) FROM PUBLIC;
`

// applyDDLBody is the body of herd_replicate.apply_ddl.
const applyDDLBody = `
DECLARE
	sub    text := TG_ARGV[0];
	qname  text := format('%I.%I', coalesce(NEW.schema_name, ''), coalesce(NEW.table_name, ''));
	target regclass;
	col    jsonb;
	cname  text;
	cur    text;
	def    text;
	ctype  text; -- the column's type, checked by safe_type
	stmt   text;
	wanted text[];
	extra  text;
BEGIN
	IF NEW.command_tag = 'MARK' THEN
		RETURN NEW; -- written by herd replicate check to know what has been applied
	END IF;
	IF NEW.schema_name IS NULL OR NEW.table_name IS NULL THEN
		RETURN NEW; -- not written by herd's event trigger; nothing to apply
	END IF;
	-- Only a table this subscription replicates into, and only an ordinary
	-- (or partitioned) one: never another table of the warehouse, a view,
	-- nor the log itself.
	SELECT c.oid INTO target
	FROM pg_subscription s
	JOIN pg_subscription_rel sr ON sr.srsubid = s.oid
	JOIN pg_class c ON c.oid = sr.srrelid
	JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE s.subname = sub AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
	  AND n.nspname::text = NEW.schema_name AND c.relname::text = NEW.table_name
	  AND c.relkind IN ('r', 'p') AND n.nspname <> 'herd_replicate';
	IF NEW.command_tag = 'DROP TABLE' THEN
		IF target IS NOT NULL THEN
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
			VALUES (sub, qname, 'drop_table', 'dropped on the source; the warehouse keeps its copy',
			        format('DROP TABLE %s;', qname), 'reported');
		END IF;
		RETURN NEW;
	END IF;
	IF target IS NULL THEN
		-- A table herd does not replicate (yet). With --all the watcher
		-- looks for it on the source itself.
		IF NEW.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
		   AND octet_length(NEW.schema_name) <= 63 AND octet_length(NEW.table_name) <= 63 THEN
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, state)
			VALUES (sub, qname, 'new_table', 'created on the source', 'pending');
		END IF;
		RETURN NEW;
	END IF;
	FOR col IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(NEW.columns) = 'array' THEN NEW.columns ELSE '[]' END) LOOP
		IF jsonb_typeof(col) <> 'object' OR jsonb_typeof(col->'name') <> 'string' THEN
			CONTINUE;
		END IF;
		cname := col->>'name';
		wanted := wanted || cname;
		IF cname = '' OR octet_length(cname) > 63 THEN
			-- Postgres would truncate it: a second ADD of the "same"
			-- column would then fail, and apply with it.
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
			VALUES (sub, qname, 'refused', format('a column name of %s bytes (%L): Postgres names are 1 to 63 bytes; nothing was changed', octet_length(cname), left(cname, 80)),
			        format('find out who wrote this row into %s on the source', 'herd_replicate.' || quote_ident(sub || '_ddl_log')), 'reported');
			CONTINUE;
		END IF;
		ctype := herd_replicate.safe_type(col->>'target');
		IF ctype IS NULL THEN
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
			VALUES (sub, qname, 'refused', format('column %I: the source gave the type %L, which is not a type name herd accepts; nothing was changed', cname, left(col->>'target', 200)),
			        format('find out who wrote this row into %s on the source', 'herd_replicate.' || quote_ident(sub || '_ddl_log')), 'reported');
			CONTINUE;
		END IF;
		SELECT format_type(atttypid, atttypmod) INTO cur FROM pg_attribute
		WHERE attrelid = target AND attname = cname::name AND attnum > 0 AND NOT attisdropped;
		IF NOT FOUND THEN
			IF coalesce(col->>'generated', '') <> '' THEN
				-- The expression may call any function, and this runs as
				-- a superuser: an operator decides. Generated values are
				-- not replicated, so leaving the column out stalls nothing.
				INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
				SELECT sub, qname, 'refused', format('generated column %I: herd does not apply generated expressions on its own; read the expression in the fix before running it', cname),
				       format('ALTER TABLE %s ADD COLUMN %I %s GENERATED ALWAYS AS (%s) STORED;', qname, cname, ctype, left(col->>'generated', 1000)), 'reported'
				WHERE NOT EXISTS (SELECT FROM herd.replicate_drift d WHERE d.subscription = sub AND d.table_name = qname
				                  AND d.kind = 'refused' AND d.detail LIKE format('generated column %I:%%', cname));
				CONTINUE;
			ELSIF col->>'missing' IS NOT NULL THEN
				-- The value the source's existing rows read for the new
				-- column (its "fast default"), so old rows agree.
				def := format(' DEFAULT (%L::%s[])[1]', col->>'missing', ctype);
			ELSE
				def := '';
			END IF;
			BEGIN
				stmt := format('ALTER TABLE %s ADD COLUMN %I %s%s', target, cname, ctype, def);
				BEGIN
					EXECUTE stmt;
				EXCEPTION WHEN others THEN
					def := '';
					stmt := format('ALTER TABLE %s ADD COLUMN %I %s', target, cname, ctype);
					EXECUTE stmt;
				END;
				IF def <> '' THEN
					stmt := format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', target, cname);
					EXECUTE stmt;
				END IF;
			EXCEPTION WHEN others THEN
				INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
				VALUES (sub, qname, 'add_column', format('could not add column %I %s: %s', cname, ctype, SQLERRM),
				        coalesce(stmt || ';', ''), 'failed');
				CONTINUE;
			END;
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, state)
			VALUES (sub, qname, 'add_column', format('added column %I %s', cname, ctype), 'applied');
			IF col->>'default' <> '' AND col->>'missing' IS NULL THEN
				INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
				VALUES (sub, qname, 'volatile_default',
				        format('column %I was added with a volatile default (%s): the source rewrote its existing rows, which replication does not carry', cname, left(col->>'default', 200)),
				        format('herd replicate resync %s', qname), 'reported');
			END IF;
		ELSIF cur <> ctype THEN
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
			SELECT sub, qname, 'type_change', format('column %I is %s on the source, %s on the warehouse', cname, ctype, cur),
			       format('ALTER TABLE %s ALTER COLUMN %I TYPE %s USING %I::%s;', qname, cname, ctype, cname, ctype),
			       'reported'
			WHERE NOT EXISTS (SELECT FROM herd.replicate_drift d WHERE d.subscription = sub AND d.table_name = qname
			                  AND d.kind = 'type_change' AND d.state = 'reported' AND d.detail LIKE format('column %I is %s %%', cname, ctype));
		END IF;
	END LOOP;
	IF NEW.columns IS NOT NULL THEN
		FOR extra IN SELECT attname FROM pg_attribute WHERE attrelid = target AND attnum > 0 AND NOT attisdropped
		             AND attname::text <> ALL (coalesce(wanted, '{}')) LOOP
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
			SELECT sub, qname, 'drop_column', format('column %I no longer exists on the source; the warehouse keeps it (NULL in new rows)', extra),
			       format('ALTER TABLE %s DROP COLUMN %I;', qname, extra), 'reported'
			WHERE NOT EXISTS (SELECT FROM herd.replicate_drift d WHERE d.subscription = sub AND d.table_name = qname
			                  AND d.kind = 'drop_column' AND d.fix = format('ALTER TABLE %s DROP COLUMN %I;', qname, extra));
		END LOOP;
	END IF;
	RETURN NEW;
EXCEPTION WHEN others THEN
	-- Whatever else went wrong is recorded, and the row (and replication)
	-- goes on.
	INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, state)
	VALUES (sub, left(qname, 200), 'failed', format('could not apply a schema change from the source: %s', SQLERRM), 'failed');
	RETURN NEW;
END`

// upgradeApplyDDL replaces herd_replicate.apply_ddl (and what it calls) on
// a warehouse where a replication was added by an older herd, whose trigger
// applied generated expressions as superuser and stalled on bad log rows.
// It does nothing when the function is missing or already current.
func upgradeApplyDDL(ctx context.Context, wh *pgxpool.Pool) error {
	var src *string
	if err := wh.QueryRow(ctx, "SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure('herd_replicate.apply_ddl()')").Scan(&src); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read herd_replicate.apply_ddl: %w", err)
	}
	if src == nil || *src == applyDDLBody {
		return nil
	}
	if _, err := wh.Exec(ctx, warehouseFuncsSQL); err != nil {
		return fmt.Errorf("replace herd_replicate.apply_ddl, the schema-drift trigger, with this version's: %w", err)
	}
	return nil
}
