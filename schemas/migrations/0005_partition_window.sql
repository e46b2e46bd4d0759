-- Partitions of herd.events bounded by wall-clock time, not by what clients
-- send. The collector accepts event times back to 2000 (historical imports
-- through /v1/import are legitimate), and a partition per distinct day let
-- one batch create thousands. Now a day gets its own partition only inside
-- a window around now (from day_from, which the writer sets to today minus
-- --partition-window days, on into the future); an older day falls into a
-- coarse partition that fills the whole gap around it, within its calendar
-- year, between the partitions that already exist and never reaching past
-- day_from. One batch spread over 2000..now thus creates at most one coarse
-- partition per year before the window, one for the window's own year, and
-- the window's days; over time the count grows with the days herd runs,
-- whatever clients send. No DEFAULT partition: creating a partition next to
-- one scans it under an exclusive lock.

-- event_partitions lists the range partitions of herd.events with their
-- bounds (MINVALUE and MAXVALUE as -infinity and infinity); a DEFAULT
-- partition is not listed.
CREATE FUNCTION herd.event_partitions() RETURNS TABLE (name text, lo timestamptz, hi timestamptz)
LANGUAGE sql STABLE SET timezone = 'UTC' SET datestyle = 'ISO, YMD' AS $$
    SELECT c.relname::text,
           CASE WHEN m[1] = 'MINVALUE' THEN '-infinity' ELSE btrim(m[1], '''') END::timestamptz,
           CASE WHEN m[2] = 'MAXVALUE' THEN 'infinity' ELSE btrim(m[2], '''') END::timestamptz
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid), '^FOR VALUES FROM \((.*)\) TO \((.*)\)$') m
    WHERE i.inhparent = 'herd.events'::regclass AND m IS NOT NULL
$$;

-- ensure_partitions makes sure every day in days has a partition: a day
-- partition (events_YYYYMMDD) for a day on or after day_from, a coarse one
-- (events_YYYYMMDD_YYYYMMDD, from and to) for an older day. Safe when
-- several writers race: the creations happen under one advisory lock, each
-- after checking again. Returns the number of partitions created.
CREATE FUNCTION herd.ensure_partitions(days date[], day_from date) RETURNS integer
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

-- ensure_partition keeps its meaning for callers that name one day: that
-- day's own partition, unless a partition covers it already.
CREATE OR REPLACE FUNCTION herd.ensure_partition(d date) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM herd.ensure_partitions(ARRAY[d], d);
END $$;

-- drop_partitions_before drops every partition herd made that lies wholly
-- before d, deletes the rows before d of a coarse partition that straddles
-- d, and forgets the message ids of the rows gone, so that the ledger and
-- the rows agree. Returns the number of partitions dropped.
CREATE OR REPLACE FUNCTION herd.drop_partitions_before(d date) RETURNS integer
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN
        SELECT p.name, p.hi FROM herd.event_partitions() p
        WHERE p.name ~ '^events_[0-9]{8}(_[0-9]{8})?$' AND p.lo < d::timestamptz
    LOOP
        IF r.hi <= d::timestamptz THEN
            EXECUTE format('DROP TABLE herd.%I', r.name);
            n := n + 1;
        ELSE
            EXECUTE format('DELETE FROM herd.%I WHERE "timestamp" < %L', r.name, d::timestamptz);
        END IF;
    END LOOP;
    DELETE FROM herd.message_ids WHERE day < d;
    RETURN n;
END $$;
