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
-- The log's rows come from the source: anyone who may insert into the
-- source's log table writes them, and this trigger runs them in the apply
-- worker as a superuser. Every value that reaches SQL is therefore quoted
-- (%%I, %%L) or checked first: safe_type accepts exactly one type name of
-- pg_catalog (what the source's event trigger computes), safe_expr an
-- expression that cannot leave the parentheses it is put in.
CREATE OR REPLACE FUNCTION herd_replicate.safe_type(t text) RETURNS text LANGUAGE plpgsql STABLE AS $herd$
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
CREATE OR REPLACE FUNCTION herd_replicate.safe_expr(e text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $herd$
DECLARE
	depth int := 0;
	q     text; -- the quote character we are inside, if any
	c     text;
BEGIN
	-- No statement separator, comment, dollar quote or backslash escape,
	-- and parentheses (outside quotes) that never close more than they
	-- opened: the expression stays inside GENERATED ALWAYS AS (...).
	IF e IS NULL OR e = '' OR e ~ '[;$\\]' OR strpos(e, '--') > 0 OR strpos(e, '/*') > 0 THEN
		RETURN NULL;
	END IF;
	FOR i IN 1 .. length(e) LOOP
		c := substr(e, i, 1);
		IF q IS NOT NULL THEN
			IF c = q THEN
				q := NULL; -- a doubled quote closes and opens again
			END IF;
		ELSIF c IN ('''', '"') THEN
			q := c;
		ELSIF c = '(' THEN
			depth := depth + 1;
		ELSIF c = ')' THEN
			depth := depth - 1;
			IF depth < 0 THEN
				RETURN NULL;
			END IF;
		END IF;
	END LOOP;
	IF q IS NOT NULL OR depth <> 0 THEN
		RETURN NULL;
	END IF;
	RETURN e;
END
$herd$;
CREATE OR REPLACE FUNCTION herd_replicate.apply_ddl() RETURNS trigger LANGUAGE plpgsql AS $herd$
DECLARE
	sub    text := TG_ARGV[0];
	qname  text := format('%%I.%%I', coalesce(NEW.schema_name, ''), coalesce(NEW.table_name, ''));
	target regclass;
	col    jsonb;
	cur    text;
	def    text;
	ctype  text; -- the column's type, checked by safe_type
	wanted text[];
	extra  text;
BEGIN
	IF NEW.command_tag = 'MARK' THEN
		RETURN NEW; -- written by herd replicate check to know what has been applied
	END IF;
	IF NEW.schema_name IS NULL OR NEW.table_name IS NULL THEN
		RETURN NEW; -- not written by herd's event trigger; nothing to apply
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
	FOR col IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(NEW.columns) = 'array' THEN NEW.columns ELSE '[]' END) LOOP
		IF jsonb_typeof(col) <> 'object' OR col->>'name' IS NULL THEN
			CONTINUE;
		END IF;
		wanted := wanted || (col->>'name');
		ctype := herd_replicate.safe_type(col->>'target');
		IF ctype IS NULL THEN
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
			VALUES (sub, qname, 'refused', format('column %%I: the source gave the type %%L, which is not a type name herd accepts; nothing was changed', col->>'name', left(col->>'target', 200)),
			        format('find out who wrote this row into %%s on the source', 'herd_replicate.' || quote_ident(sub || '_ddl_log')), 'reported');
			CONTINUE;
		END IF;
		SELECT format_type(atttypid, atttypmod) INTO cur FROM pg_attribute
		WHERE attrelid = target AND attname = col->>'name' AND attnum > 0 AND NOT attisdropped;
		IF NOT FOUND THEN
			IF coalesce(col->>'generated', '') <> '' THEN
				IF herd_replicate.safe_expr(col->>'generated') IS NULL THEN
					-- Generated values are not replicated, so leaving the
					-- column out stalls nothing.
					INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
					VALUES (sub, qname, 'refused', format('generated column %%I: herd does not apply the expression %%L on its own', col->>'name', left(col->>'generated', 200)),
					        format('add the column by hand: ALTER TABLE %%s ADD COLUMN %%I %%s GENERATED ALWAYS AS (...) STORED', qname, col->>'name', ctype), 'reported');
					CONTINUE;
				END IF;
				def := format(' GENERATED ALWAYS AS (%%s) STORED', herd_replicate.safe_expr(col->>'generated'));
			ELSIF col->>'missing' IS NOT NULL THEN
				-- The value the source's existing rows read for the new
				-- column (its "fast default"), so old rows agree.
				def := format(' DEFAULT (%%L::%%s[])[1]', col->>'missing', ctype);
			ELSE
				def := '';
			END IF;
			BEGIN
				EXECUTE format('ALTER TABLE %%s ADD COLUMN %%I %%s%%s', target, col->>'name', ctype, def);
			EXCEPTION WHEN others THEN
				EXECUTE format('ALTER TABLE %%s ADD COLUMN %%I %%s', target, col->>'name', ctype);
			END;
			IF coalesce(col->>'generated', '') = '' AND def <> '' THEN
				EXECUTE format('ALTER TABLE %%s ALTER COLUMN %%I DROP DEFAULT', target, col->>'name');
			END IF;
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, state)
			VALUES (sub, qname, 'add_column', format('added column %%I %%s', col->>'name', ctype), 'applied');
			IF col->>'default' <> '' AND col->>'missing' IS NULL AND coalesce(col->>'generated', '') = '' THEN
				INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
				VALUES (sub, qname, 'volatile_default',
				        format('column %%I was added with a volatile default (%%s): the source rewrote its existing rows, which replication does not carry', col->>'name', left(col->>'default', 200)),
				        format('herd replicate resync %%s', qname), 'reported');
			END IF;
		ELSIF cur <> ctype THEN
			INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
			SELECT sub, qname, 'type_change', format('column %%I is %%s on the source, %%s on the warehouse', col->>'name', ctype, cur),
			       format('ALTER TABLE %%s ALTER COLUMN %%I TYPE %%s USING %%I::%%s;', qname, col->>'name', ctype, col->>'name', ctype),
			       'reported'
			WHERE NOT EXISTS (SELECT FROM herd.replicate_drift d WHERE d.subscription = sub AND d.table_name = qname
			                  AND d.kind = 'type_change' AND d.state = 'reported' AND d.detail LIKE format('column %%I is %%s %%%%', col->>'name', ctype));
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
