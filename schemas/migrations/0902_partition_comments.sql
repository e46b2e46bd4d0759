-- Partitions of herd.events say which days they hold: \d+ on one, or
-- listing herd's tables, showed nothing, since the writer creates them at
-- run time. herd.ensure_partitions (0005's definition, unchanged but for
-- the COMMENT after each CREATE TABLE; herd.ensure_partition calls it)
-- comments every partition it makes, the partitions that exist already are
-- commented here, and herd's functions and sequences get comments too.
-- schemas.UncommentedSQL checks partitions (table comment only: their
-- columns are herd.events'), functions and sequences.

-- partition_comment is the comment of the partition of herd.events from lo
-- to hi (UTC days).
CREATE FUNCTION herd.partition_comment(lo timestamptz, hi timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE SET timezone = 'UTC' SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN hi = lo + interval '1 day'
        THEN pg_catalog.format('Events whose "timestamp" falls on %s (UTC): a daily partition of herd.events, made by the writer. '
                               'Its columns are herd.events''s: \d+ herd.events describes them', lo::date)
        ELSE pg_catalog.format('Events whose "timestamp" is from %s to before %s (UTC): a coarse partition of herd.events for days older than '
                               'the writer''s --partition-window, made by the writer. Its columns are herd.events''s: \d+ herd.events describes them',
                               lo::date, hi::date)
    END
$$;

CREATE OR REPLACE FUNCTION herd.ensure_partitions(days date[], day_from date) RETURNS integer
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    missing date[];
    los timestamptz[];
    his timestamptz[];
    d date;
    lo timestamptz;
    hi timestamptz;
    last_lo timestamptz := 'infinity';
    last_hi timestamptz := '-infinity';
    part text;
    n integer := 0;
BEGIN
    -- Most calls find every day covered and take no lock.
    WITH p AS MATERIALIZED (SELECT * FROM herd.event_partitions())
    SELECT array_agg(DISTINCT x.d ORDER BY x.d) INTO missing
    FROM unnest(days) x(d)
    WHERE x.d IS NOT NULL AND NOT EXISTS (SELECT 1 FROM p WHERE p.lo <= x.d AND x.d < p.hi);
    IF missing IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('herd.ensure_partition'));
    SELECT array_agg(p.lo), array_agg(p.hi) INTO los, his FROM herd.event_partitions() p;
    FOREACH d IN ARRAY missing LOOP
        -- The days are in order: most old ones fall in the partition just
        -- made or found.
        IF last_lo <= d AND d < last_hi THEN
            CONTINUE;
        END IF;
        SELECT b.lo, b.hi INTO lo, hi FROM unnest(los, his) b(lo, hi) WHERE b.lo <= d AND d < b.hi LIMIT 1;
        IF FOUND THEN
            last_lo := lo;
            last_hi := hi;
            CONTINUE;
        END IF;
        IF d >= day_from THEN
            lo := d;
            hi := d + 1;
            part := 'events_' || to_char(d, 'YYYYMMDD');
        ELSE
            lo := greatest(date_trunc('year', d::timestamptz),
                           (SELECT max(b.hi) FROM unnest(los, his) b(lo, hi) WHERE b.hi <= d));
            hi := least(date_trunc('year', d::timestamptz) + interval '1 year',
                        (SELECT min(b.lo) FROM unnest(los, his) b(lo, hi) WHERE b.lo > d),
                        day_from::timestamptz);
            part := 'events_' || to_char(lo, 'YYYYMMDD') || '_' || to_char(hi, 'YYYYMMDD');
        END IF;
        BEGIN
            EXECUTE format('CREATE TABLE herd.%I PARTITION OF herd.events FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
            EXECUTE format('COMMENT ON TABLE herd.%I IS %L', part, herd.partition_comment(lo, hi));
            n := n + 1;
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            -- Created by hand, outside the lock, between the check and here.
            NULL;
        END;
        los := los || lo;
        his := his || hi;
        last_lo := lo;
        last_hi := hi;
    END LOOP;
    RETURN n;
END $$;

-- The partitions made before this migration.
DO $$
DECLARE
    p record;
BEGIN
    FOR p IN
        SELECT e.name, e.lo, e.hi FROM herd.event_partitions() e
        WHERE coalesce(obj_description(format('herd.%I', e.name)::regclass, 'pg_class'), '') = ''
    LOOP
        EXECUTE format('COMMENT ON TABLE herd.%I IS %L', p.name, herd.partition_comment(p.lo, p.hi));
    END LOOP;
END $$;

COMMENT ON FUNCTION herd.partition_comment(timestamptz, timestamptz) IS 'The COMMENT of the partition of herd.events from lo to hi, which herd.ensure_partitions sets on each partition it makes';
COMMENT ON FUNCTION herd.event_partitions() IS 'Range partitions of herd.events with their bounds (MINVALUE, MAXVALUE as -infinity, infinity); a DEFAULT partition is not listed';
COMMENT ON FUNCTION herd.ensure_partitions(date[], date) IS 'Called by the writer before each COPY: gives every day in days a partition of herd.events, a daily one from day_from on (the writer''s --partition-window) and coarse ones before; returns how many it created';
COMMENT ON FUNCTION herd.ensure_partition(date) IS 'Makes sure day d has a partition of herd.events: its own daily one unless a partition covers it already';
COMMENT ON FUNCTION herd.drop_partitions_before(date) IS 'Retention: drops the partitions of herd.events wholly before d, deletes older rows of one straddling d, and forgets their message ids in herd.message_ids; returns the partitions dropped';
COMMENT ON FUNCTION herd.notify_sources() IS 'Trigger on herd.sources: NOTIFY herd_sources, which wakes the writer to mirror the sources into the NATS bucket the collectors read';
COMMENT ON FUNCTION herd.notify_suppressions() IS 'Trigger on herd.suppressions: NOTIFY herd_suppressions, so that herd mirrors the suppressed people to the collectors';
COMMENT ON FUNCTION herd.keep_erased_ids() IS 'Trigger on herd.message_ids: keeps the ledger entry of a message id listed in herd.privacy_erased when it is deleted, so a client''s retry of an erased event is not stored again';
COMMENT ON FUNCTION herd.raw_has_id(text, text[]) IS 'Whether a reject''s raw text carries one of ids as userId, anonymousId or previousId (top level or in a batch item; anywhere when not JSON); privacy deletions use it to find a person''s rejects';
COMMENT ON FUNCTION herd.redact_keys(jsonb) IS 'The JSON value with every writeKey (any case, with or without _) removed at any depth; what analysts see of rejects';
COMMENT ON FUNCTION herd.redacted_raw(text) IS 'A reject''s raw body as JSON with write keys removed (herd.redact_keys); NULL when it is not JSON';
COMMENT ON FUNCTION herd.analysts_group() IS 'The role of this database''s analysts (roles are server-wide, so its name is derived from the database''s)';
COMMENT ON FUNCTION herd.grant_analyst_read(text) IS 'Grants grantee what analysts may read: herd''s tables named one by one, holding no credential (tables with a secret column by column, without it)';
COMMENT ON FUNCTION herd.adopt_legacy_analysts_group(text) IS 'Moves this database''s grants and members from the server-wide group legacy to herd.analysts_group()';
COMMENT ON FUNCTION herd.grant_event_views(text) IS 'Grants grantee SELECT on every per-event view (herd.event_views) herd views refresh made; run when an analyst is added';
COMMENT ON FUNCTION herd.grant_event_view(text) IS 'Grants every analyst who may use schema herd SELECT on one per-event view, when herd views refresh makes it';
COMMENT ON FUNCTION herd.user_query_time_rows() IS 'Query time per role in this database from pg_stat_statements (herd usage); one explanatory row when the extension is not available';
COMMENT ON AGGREGATE herd.jsonb_merge(jsonb) IS 'Aggregate: merges JSON objects left to right, later keys winning; with ORDER BY "timestamp" the latest value of every trait';
COMMENT ON FUNCTION stripe.ref(jsonb) IS 'The id of a Stripe reference: the object''s id when expanded, else the id string';
COMMENT ON FUNCTION stripe.ts(jsonb) IS 'A Stripe timestamp (Unix seconds) as timestamptz; NULL when not a number';
COMMENT ON FUNCTION stripe.int(jsonb) IS 'A JSON number as bigint; NULL when not a number';
COMMENT ON FUNCTION stripe.bool(jsonb) IS 'A JSON boolean as boolean; NULL when not a boolean';

-- The sequences of serial columns.
DO $$
DECLARE
    s record;
BEGIN
    FOR s IN
        SELECT c.oid::regclass AS seq, d.refobjid::regclass AS tab, a.attname AS col
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
        JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE c.relkind = 'S' AND n.nspname IN ('herd', 'stripe') AND coalesce(obj_description(c.oid, 'pg_class'), '') = ''
    LOOP
        EXECUTE format('COMMENT ON SEQUENCE %s IS %L', s.seq,
                       format('Next value of %s.%I, given to each new row', s.tab, s.col));
    END LOOP;
END $$;
