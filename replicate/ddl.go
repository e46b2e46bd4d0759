package replicate

import (
	"fmt"
	"strings"
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
CREATE OR REPLACE FUNCTION herd_replicate.apply_ddl() RETURNS trigger LANGUAGE plpgsql AS $herd$
DECLARE
	sub    text := TG_ARGV[0];
	qname  text := format('%%I.%%I', NEW.schema_name, NEW.table_name);
	target regclass;
	col    jsonb;
	cur    text;
	def    text;
	wanted text[];
	extra  text;
BEGIN
	IF NEW.command_tag = 'MARK' THEN
		RETURN NEW; -- written by herd replicate check to know what has been applied
	END IF;
	target := to_regclass(qname);
	IF NEW.command_tag = 'DROP TABLE' THEN
		IF target IS NOT NULL THEN
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
			VALUES (sub, qname, 'drop_table', 'dropped on the source; the warehouse keeps its copy',
			        format('DROP TABLE %%s;', qname), 'reported');
		END IF;
		RETURN NEW;
	END IF;
	IF target IS NULL THEN
		-- A table herd does not replicate (yet). With --all the watcher adds it.
		IF NEW.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO') THEN
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, state)
			VALUES (sub, qname, 'new_table', 'created on the source', 'pending');
		END IF;
		RETURN NEW;
	END IF;
	FOR col IN SELECT * FROM jsonb_array_elements(coalesce(NEW.columns, '[]')) LOOP
		wanted := wanted || (col->>'name');
		SELECT format_type(atttypid, atttypmod) INTO cur FROM pg_attribute
		WHERE attrelid = target AND attname = col->>'name' AND attnum > 0 AND NOT attisdropped;
		IF NOT FOUND THEN
			IF col->>'generated' <> '' THEN
				def := format(' GENERATED ALWAYS AS (%%s) STORED', col->>'generated');
			ELSIF col->>'missing' IS NOT NULL THEN
				-- The value the source's existing rows read for the new
				-- column (its "fast default"), so old rows agree.
				def := format(' DEFAULT (%%L::%%s[])[1]', col->>'missing', col->>'target');
			ELSE
				def := '';
			END IF;
			BEGIN
				EXECUTE format('ALTER TABLE %%s ADD COLUMN %%I %%s%%s', target, col->>'name', col->>'target', def);
			EXCEPTION WHEN others THEN
				EXECUTE format('ALTER TABLE %%s ADD COLUMN %%I %%s', target, col->>'name', col->>'target');
			END;
			IF col->>'generated' = '' AND def <> '' THEN
				EXECUTE format('ALTER TABLE %%s ALTER COLUMN %%I DROP DEFAULT', target, col->>'name');
			END IF;
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, state)
			VALUES (sub, qname, 'add_column', format('added column %%I %%s', col->>'name', col->>'target'), 'applied');
			IF col->>'default' <> '' AND col->>'missing' IS NULL AND col->>'generated' = '' THEN
				INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
				VALUES (sub, qname, 'volatile_default',
				        format('column %%I was added with a volatile default (%%s): the source rewrote its existing rows, which replication does not carry', col->>'name', col->>'default'),
				        format('herd replicate resync %%s', qname), 'reported');
			END IF;
		ELSIF cur <> col->>'target' THEN
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
			SELECT sub, qname, 'type_change', format('column %%I is %%s on the source, %%s on the warehouse', col->>'name', col->>'target', cur),
			       format('ALTER TABLE %%s ALTER COLUMN %%I TYPE %%s USING %%I::%%s;', qname, col->>'name', col->>'target', col->>'name', col->>'target'),
			       'reported'
			WHERE NOT EXISTS (SELECT FROM herd.replicate_drift d WHERE d.subscription = sub AND d.table_name = qname
			                  AND d.kind = 'type_change' AND d.state = 'reported' AND d.detail LIKE format('column %%I is %%s %%%%', col->>'name', col->>'target'));
		END IF;
	END LOOP;
	IF NEW.columns IS NOT NULL THEN
		FOR extra IN SELECT attname FROM pg_attribute WHERE attrelid = target AND attnum > 0 AND NOT attisdropped
		             AND attname <> ALL (wanted) LOOP
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
			SELECT sub, qname, 'drop_column', format('column %%I no longer exists on the source; the warehouse keeps it (NULL in new rows)', extra),
			       format('ALTER TABLE %%s DROP COLUMN %%I;', qname, extra), 'reported'
			WHERE NOT EXISTS (SELECT FROM herd.replicate_drift d WHERE d.subscription = sub AND d.table_name = qname
			                  AND d.kind = 'drop_column' AND d.fix = format('ALTER TABLE %%s DROP COLUMN %%I;', qname, extra));
		END LOOP;
	END IF;
	RETURN NEW;
END
$herd$;
DROP TRIGGER IF EXISTS apply_ddl ON %[1]s;
CREATE TRIGGER apply_ddl BEFORE INSERT ON %[1]s FOR EACH ROW EXECUTE PROCEDURE herd_replicate.apply_ddl(%[2]s);
-- Triggers do not fire in the subscription's apply worker unless ALWAYS.
ALTER TABLE %[1]s ENABLE ALWAYS TRIGGER apply_ddl;
`, ddlLogTable(name), literal(name))
}
