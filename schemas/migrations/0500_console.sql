-- herd console: the operators' role, shared saved queries, and a lookup of
-- rejects by message id for the console's trace.

-- Members of herd_admin see the console's operator pages. Roles are
-- server-wide; the role is created once, NOLOGIN, and granted by hand
-- (GRANT herd_admin TO alice). Without CREATEROLE the console has no
-- operators until a superuser creates it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'herd_admin') THEN
        BEGIN
            CREATE ROLE herd_admin NOLOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'herd cannot create role herd_admin (it needs CREATEROLE): the console shows no operator pages until a superuser runs CREATE ROLE herd_admin NOLOGIN';
        END;
    END IF;
END $$;

-- A query saved through the console is shared: every role that may read
-- herd.saved_queries (the analysts) sees it and its snapshots. Its
-- snapshots are computed as the role that saved it, never as herd, so a
-- shared snapshot shows only what its saver could read and chose to show.
ALTER TABLE herd.saved_queries ADD COLUMN shared boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN herd.saved_queries.shared IS 'Whether every analyst sees the query and its snapshots (saved through the console); its runs are computed as saved_by, never as herd';

DROP POLICY saver_reads ON herd.saved_queries;
CREATE POLICY saver_reads ON herd.saved_queries FOR SELECT
    USING ((shared AND saved_by <> (SELECT tableowner FROM pg_tables WHERE schemaname = 'herd' AND tablename = 'saved_queries'))
        OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = saved_by AND pg_has_role(r.oid, 'USAGE')));
DROP POLICY runner_reads ON herd.query_runs;
CREATE POLICY runner_reads ON herd.query_runs FOR SELECT
    USING (EXISTS (SELECT FROM herd.saved_queries q WHERE q.name = query_name AND q.shared AND q.saved_by = run_as
                   AND run_as <> (SELECT tableowner FROM pg_tables WHERE schemaname = 'herd' AND tablename = 'query_runs'))
        OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = run_as AND pg_has_role(r.oid, 'USAGE')));

CREATE INDEX rejects_message_id ON herd.rejects (message_id) WHERE message_id IS NOT NULL;
