-- Managing the warehouse: the rollup registry and its run log, analysts,
-- usage views, and saved queries with their result snapshots.

-- One row per rollup applied from the rollups directory. The scheduler reads
-- this registry rather than the directory, so herd up need not run where
-- the SQL files live.
CREATE TABLE herd.rollups (
    name          text PRIMARY KEY,          -- schema-qualified for display, e.g. rollups.daily_signups
    schema_name   text NOT NULL,
    rel_name      text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('view', 'materialized')),
    refresh_every interval,                  -- NULL for plain views
    sql           text NOT NULL,
    sql_hash      text NOT NULL,
    file          text NOT NULL,
    applied_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE herd.rollup_runs (
    id          bigserial PRIMARY KEY,
    rollup      text NOT NULL,
    action      text NOT NULL CHECK (action IN ('apply', 'refresh')),
    status      text NOT NULL CHECK (status IN ('ok', 'error', 'skipped')),
    started_at  timestamptz NOT NULL,
    duration_ms double precision NOT NULL DEFAULT 0,
    rows        bigint,
    concurrent  boolean NOT NULL DEFAULT false,
    error       text,                        -- the failure, or why it was skipped
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX rollup_runs_rollup ON herd.rollup_runs (rollup, started_at DESC);

-- Roles created by herd analysts add. Only these can be removed by herd, so a
-- typo cannot drop an unrelated role.
CREATE TABLE herd.analysts (
    name       text PRIMARY KEY,
    created_by text NOT NULL DEFAULT current_user,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Total on-disk size (tables, indexes, TOAST) of every user schema.
CREATE VIEW herd.schema_sizes AS
SELECT n.nspname::text AS schema,
       pg_get_userbyid(n.nspowner)::text AS owner,
       count(c.oid) AS relations,
       coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes,
       pg_size_pretty(coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint) AS size
FROM pg_namespace n
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm')
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%'
GROUP BY n.nspname, n.nspowner;

-- Query time per role in this database. pg_stat_statements can be loaded or
-- unloaded after this migration ran, and its schema is the installer's
-- choice, so the lookup is dynamic; when it is not available the one row
-- returned says how to enable it instead of failing.
CREATE FUNCTION herd.user_query_time_rows()
RETURNS TABLE (role text, calls bigint, total_ms double precision, mean_ms double precision, note text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    ext_schema text;
    time_col   text := CASE WHEN current_setting('server_version_num')::int >= 130000
                            THEN 'total_exec_time' ELSE 'total_time' END;
BEGIN
    IF NOT (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')
            @> ARRAY['pg_stat_statements']) THEN
        RETURN QUERY SELECT NULL::text, NULL::bigint, NULL::double precision, NULL::double precision,
            'pg_stat_statements is not loaded: add pg_stat_statements to shared_preload_libraries in postgresql.conf, restart PostgreSQL, then run CREATE EXTENSION pg_stat_statements in this database'::text;
        RETURN;
    END IF;
    SELECT e.extnamespace::regnamespace::text INTO ext_schema
    FROM pg_extension e WHERE e.extname = 'pg_stat_statements';
    IF ext_schema IS NULL THEN
        RETURN QUERY SELECT NULL::text, NULL::bigint, NULL::double precision, NULL::double precision,
            'pg_stat_statements is loaded but not installed in this database: run CREATE EXTENSION pg_stat_statements (as a superuser)'::text;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT r.rolname::text, sum(s.calls)::bigint, sum(s.%1$I)::double precision,
                (sum(s.%1$I) / nullif(sum(s.calls), 0))::double precision, NULL::text
         FROM %2$I.pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
         WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
         GROUP BY r.rolname ORDER BY 3 DESC', time_col, ext_schema);
END $$;

CREATE VIEW herd.user_query_time AS SELECT * FROM herd.user_query_time_rows();

CREATE TABLE herd.saved_queries (
    name       text PRIMARY KEY,
    sql        text NOT NULL,
    run_every  interval,                     -- NULL: only run on demand
    saved_by   text NOT NULL DEFAULT current_user,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Each run keeps the SQL it ran and its result as text values, exactly as
-- psql would print them, so an old link shows what was seen then even after
-- the data or the saved SQL changed.
CREATE TABLE herd.query_runs (
    id          bigserial PRIMARY KEY,
    query_name  text NOT NULL REFERENCES herd.saved_queries (name) ON DELETE CASCADE,
    started_at  timestamptz NOT NULL,
    duration_ms double precision NOT NULL,
    sql         text NOT NULL,
    columns     jsonb NOT NULL DEFAULT '[]',  -- ["name", ...]
    rows        jsonb NOT NULL DEFAULT '[]',  -- [["text value" | null, ...], ...]
    row_count   bigint NOT NULL DEFAULT 0,
    truncated   boolean NOT NULL DEFAULT false,
    error       text
);
CREATE INDEX query_runs_name ON herd.query_runs (query_name, id DESC);
