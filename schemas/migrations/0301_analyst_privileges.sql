-- What analysts may read in schema herd, and an analysts group per database.
--
-- Until now every analyst got SELECT on every table in herd (and on every
-- table herd created there later), which included credentials: write keys
-- (herd.sources.write_key), the app database's URL with its password
-- (herd.replicate_subscriptions.source_url), request bodies that carry a
-- writeKey (herd.rejects.raw), and saved query results computed with herd's
-- own privileges (herd.query_runs). From here on analysts read an explicit
-- list of herd's tables and columns (herd.grant_analyst_read); a table added
-- to herd later stays private until that list names it.

-- The analysts group of this database. Roles are server-wide, so a single
-- group name would let an analyst of one warehouse read what another
-- warehouse on the same server grants its analysts. analysts.GroupName
-- computes the same name in Go; a test keeps the two in step.
CREATE FUNCTION herd.analysts_group() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN octet_length('herd_analysts_' || current_database()) <= 63
                THEN 'herd_analysts_' || current_database()
                ELSE 'herd_analysts_' || left(encode(sha256(convert_to(current_database(), 'UTF8')), 'hex'), 32) END
$$;

-- herd.redact_keys removes every writeKey (or write_key) member from a JSON
-- value, at any depth; herd.redacted_raw parses a refused body and redacts
-- it, NULL when it is not JSON (then it cannot be redacted reliably).
CREATE FUNCTION herd.redact_keys(j jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE jsonb_typeof(j)
        WHEN 'object' THEN coalesce((SELECT jsonb_object_agg(k, herd.redact_keys(v)) FROM jsonb_each(j) AS e(k, v)
                                     WHERE lower(replace(k, '_', '')) <> 'writekey'), '{}'::jsonb)
        WHEN 'array' THEN coalesce((SELECT jsonb_agg(herd.redact_keys(v) ORDER BY o)
                                    FROM jsonb_array_elements(j) WITH ORDINALITY AS a(v, o)), '[]'::jsonb)
        ELSE j END
$$;

CREATE FUNCTION herd.redacted_raw(raw text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN herd.redact_keys(raw::jsonb);
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- Refused events as analysts see them: the body without its write key.
CREATE VIEW herd.rejects_redacted AS
SELECT id, source_id, message_id, reason, herd.redacted_raw(raw) AS raw, received_at, stream_seq, stream_pos, stored_at
FROM herd.rejects;

-- A saved query records the role that saved it, and each run the role it was
-- computed as; a role sees the queries and runs of roles whose privileges it
-- has (its own), never those computed as herd.
ALTER TABLE herd.query_runs ADD COLUMN run_as text;
ALTER TABLE herd.saved_queries ENABLE ROW LEVEL SECURITY;
ALTER TABLE herd.query_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY saver_reads ON herd.saved_queries FOR SELECT
    USING (EXISTS (SELECT FROM pg_roles r WHERE r.rolname = saved_by AND pg_has_role(r.oid, 'USAGE')));
CREATE POLICY runner_reads ON herd.query_runs FOR SELECT
    USING (EXISTS (SELECT FROM pg_roles r WHERE r.rolname = run_as AND pg_has_role(r.oid, 'USAGE')));

-- grant_analyst_read lets grantee read herd's tables that hold no credential
-- and nothing computed with herd's privileges. Tables are named one by one
-- (a table added to herd later is not readable until listed here), and the
-- tables that hold a secret are granted column by column, without it.
CREATE FUNCTION herd.grant_analyst_read(grantee text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
    cols text;
    readable text[] := ARRAY[
        'events', 'pages', 'screens', 'tracks', 'identifies', 'group_calls', 'aliases',
        'users', 'identities', 'groups', 'group_members', 'event_sessions', 'sessions', 'event_views',
        'rollups', 'rollup_runs', 'schema_sizes', 'analysts', 'replicate_drift',
        'schema_migrations', 'rejects_redacted',
        -- rows filtered by row level security: the grantee's own
        'saved_queries', 'query_runs'];
    by_column jsonb := '{
        "sources": ["id", "name", "kind", "allowed_origins", "anonymize_ip", "revoked_at", "created_at", "rate_limit"],
        "replicate_subscriptions": ["name", "mode", "into_schema", "tables", "all_tables", "created_at"],
        "rejects": ["id", "source_id", "message_id", "reason", "received_at", "stream_seq", "stream_pos", "stored_at"]
    }';
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA herd TO %I', grantee);
    FOREACH t IN ARRAY readable LOOP
        IF to_regclass(format('herd.%I', t)) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON herd.%I TO %I', t, grantee);
        END IF;
    END LOOP;
    FOR t IN SELECT jsonb_object_keys(by_column) LOOP
        IF to_regclass(format('herd.%I', t)) IS NULL THEN
            CONTINUE;
        END IF;
        -- Only the listed columns that exist: a column added later is
        -- private until listed.
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_attribute a
        WHERE a.attrelid = format('herd.%I', t)::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attname IN (SELECT jsonb_array_elements_text(by_column -> t));
        IF cols IS NOT NULL THEN
            EXECUTE format('GRANT SELECT (%s) ON herd.%I TO %I', cols, t, grantee);
        END IF;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION herd.grant_analyst_read(text) FROM PUBLIC;

-- adopt_legacy_analysts_group moves this database's use of the server-wide
-- group legacy (herd_analysts until now) to herd.analysts_group(): what
-- legacy may read here is granted to the new group and revoked from legacy,
-- and this database's analysts leave legacy for the new group. Other
-- databases' grants to legacy are theirs; the role itself stays.
CREATE FUNCTION herd.adopt_legacy_analysts_group(legacy text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    grp text := herd.analysts_group();
    r record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = legacy) OR legacy = grp THEN
        RETURN;
    END IF;
    -- Nothing of this database uses legacy: create no role.
    IF NOT EXISTS (SELECT FROM pg_class c, aclexplode(c.relacl) a WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = legacy))
       AND NOT EXISTS (SELECT FROM pg_namespace n, aclexplode(n.nspacl) a WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = legacy))
       AND NOT EXISTS (SELECT FROM herd.analysts h JOIN pg_roles m ON m.rolname = h.name
                       WHERE pg_has_role(m.oid, (SELECT oid FROM pg_roles WHERE rolname = legacy), 'MEMBER')) THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = grp) THEN
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', grp);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'herd cannot create role % (it needs CREATEROLE); analysts here stay in the server-wide group %', grp, legacy;
            RETURN;
        END;
    END IF;
    FOR r IN SELECT DISTINCT n.nspname FROM pg_namespace n, aclexplode(n.nspacl) a
             WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = legacy) LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', r.nspname, grp);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %I', r.nspname, legacy);
    END LOOP;
    FOR r IN SELECT n.nspname, c.relname, string_agg(DISTINCT a.privilege_type, ', ') AS privs
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
             WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = legacy)
             GROUP BY n.nspname, c.relname LOOP
        EXECUTE format('GRANT %s ON %I.%I TO %I', r.privs, r.nspname, r.relname, grp);
        EXECUTE format('REVOKE ALL ON %I.%I FROM %I', r.nspname, r.relname, legacy);
    END LOOP;
    FOR r IN SELECT a.name FROM herd.analysts a
             JOIN pg_roles m ON m.rolname = a.name
             JOIN pg_auth_members am ON am.member = m.oid
             WHERE am.roleid = (SELECT oid FROM pg_roles WHERE rolname = legacy) LOOP
        EXECUTE format('GRANT %I TO %I', grp, r.name);
        EXECUTE format('REVOKE %I FROM %I', legacy, r.name);
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION herd.adopt_legacy_analysts_group(text) FROM PUBLIC;

-- Existing analysts: take back SELECT on all of herd and the default
-- privileges that granted them every table herd creates there, then grant
-- the list above.
DO $$
DECLARE
    a record;
    d record;
BEGIN
    FOR a IN SELECT h.name FROM herd.analysts h JOIN pg_roles r ON r.rolname = h.name LOOP
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA herd FROM %I', a.name);
        FOR d IN SELECT pg_get_userbyid(da.defaclrole) AS owner FROM pg_default_acl da
                 WHERE da.defaclnamespace = 'herd'::regnamespace AND da.defaclobjtype = 'r' LOOP
            BEGIN
                EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA herd REVOKE ALL ON TABLES FROM %I', d.owner, a.name);
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE WARNING 'cannot revoke the default privileges of % in schema herd from analyst %: run ALTER DEFAULT PRIVILEGES FOR ROLE % IN SCHEMA herd REVOKE ALL ON TABLES FROM % as a superuser', d.owner, a.name, d.owner, a.name;
            END;
        END LOOP;
        PERFORM herd.grant_analyst_read(a.name);
    END LOOP;
    PERFORM herd.adopt_legacy_analysts_group('herd_analysts');
END $$;
