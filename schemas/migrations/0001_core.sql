-- herd's core: sources, events partitioned by day of the corrected event time,
-- the message-id ledger that makes inserts idempotent, and rejects.

CREATE TABLE herd.sources (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    write_key       text NOT NULL UNIQUE,
    kind            text NOT NULL DEFAULT 'browser' CHECK (kind IN ('browser', 'server')),
    allowed_origins text[] NOT NULL DEFAULT '{}',
    anonymize_ip    boolean NOT NULL DEFAULT false,
    revoked_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Collectors never read Postgres: the writer mirrors sources into a NATS KV
-- bucket, woken by this notification.
CREATE FUNCTION herd.notify_sources() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herd_sources', '');
    RETURN NULL;
END $$;
CREATE TRIGGER sources_changed AFTER INSERT OR UPDATE OR DELETE ON herd.sources
    FOR EACH STATEMENT EXECUTE FUNCTION herd.notify_sources();

CREATE TABLE herd.events (
    message_id          text NOT NULL,
    source_id           bigint NOT NULL,
    type                text NOT NULL,
    event               text,
    anonymous_id        text,
    user_id             text,
    group_id            text,
    previous_id         text,
    "timestamp"         timestamptz NOT NULL,
    original_timestamp  timestamptz,
    sent_at             timestamptz,
    received_at         timestamptz NOT NULL,
    context             jsonb,
    properties          jsonb,
    traits              jsonb,
    url                 text,
    path                text,
    referrer            text,
    title               text,
    search              text,
    utm_source          text,
    utm_medium          text,
    utm_campaign        text,
    utm_term            text,
    utm_content         text,
    ip                  inet,
    country             text,
    region              text,
    city                text,
    user_agent          text,
    browser             text,
    browser_version     text,
    os                  text,
    device_type         text,
    is_bot              boolean NOT NULL DEFAULT false,
    session_id          text,
    library_name        text,
    library_version     text,
    stream_seq          bigint,
    loaded_at           timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE ("timestamp");

CREATE INDEX events_timestamp_brin ON herd.events USING brin ("timestamp");

-- One row per (source, message id) ever written. A unique key on the
-- partitioned events table would have to contain the partition key, and a
-- retried event's corrected timestamp can differ from the first delivery's
-- (network delay), even across midnight; this ledger makes the insert
-- idempotent whatever day the retry lands on. day is the partition the row
-- went to, so retention can forget ids together with their partition.
CREATE TABLE herd.message_ids (
    source_id  bigint NOT NULL,
    message_id text NOT NULL,
    day        date NOT NULL,
    PRIMARY KEY (source_id, message_id)
);

CREATE TABLE herd.rejects (
    id          bigserial PRIMARY KEY,
    source_id   bigint,
    message_id  text,
    reason      text NOT NULL,
    raw         text NOT NULL,
    received_at timestamptz NOT NULL,
    stream_seq  bigint UNIQUE,
    stored_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejects_received_at ON herd.rejects (received_at);

-- ensure_partition creates the day's partition of herd.events if missing;
-- safe when several writers race for the same day.
CREATE FUNCTION herd.ensure_partition(d date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    part text := 'events_' || to_char(d, 'YYYYMMDD');
BEGIN
    IF to_regclass(format('herd.%I', part)) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('herd.ensure_partition'));
    IF to_regclass(format('herd.%I', part)) IS NOT NULL THEN
        RETURN;
    END IF;
    BEGIN
        EXECUTE format('CREATE TABLE herd.%I PARTITION OF herd.events FOR VALUES FROM (%L) TO (%L)',
            part, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
    EXCEPTION WHEN duplicate_table OR unique_violation THEN
        -- Another session created it between our check and our CREATE.
        NULL;
    END;
END $$;

-- drop_partitions_before drops every day partition wholly before d, and
-- forgets their message ids. Returns the number of partitions dropped.
CREATE FUNCTION herd.drop_partitions_before(d date) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_namespace ns ON ns.oid = c.relnamespace
        WHERE i.inhparent = 'herd.events'::regclass AND ns.nspname = 'herd'
          AND c.relname ~ '^events_[0-9]{8}$'
          AND to_date(substr(c.relname, 8), 'YYYYMMDD') < d
    LOOP
        EXECUTE format('DROP TABLE herd.%I', r.relname);
        n := n + 1;
    END LOOP;
    DELETE FROM herd.message_ids WHERE day < d;
    RETURN n;
END $$;

CREATE VIEW herd.pages AS
SELECT message_id, source_id, anonymous_id, user_id, "timestamp", received_at,
       event AS name, url, path, referrer, title, search,
       utm_source, utm_medium, utm_campaign, utm_term, utm_content,
       ip, country, region, city, browser, browser_version, os, device_type, is_bot,
       session_id, properties, context
FROM herd.events WHERE type = 'page';

CREATE VIEW herd.screens AS
SELECT message_id, source_id, anonymous_id, user_id, "timestamp", received_at,
       event AS name, ip, country, region, city, os, device_type, session_id, properties, context
FROM herd.events WHERE type = 'screen';

CREATE VIEW herd.tracks AS
SELECT message_id, source_id, anonymous_id, user_id, "timestamp", received_at,
       event, url, path, ip, country, region, city, browser, os, device_type, is_bot,
       session_id, properties, context
FROM herd.events WHERE type = 'track';

CREATE VIEW herd.identifies AS
SELECT message_id, source_id, anonymous_id, user_id, "timestamp", received_at,
       traits, ip, country, region, city, context
FROM herd.events WHERE type = 'identify';

CREATE VIEW herd.group_calls AS
SELECT message_id, source_id, anonymous_id, user_id, group_id, "timestamp", received_at, traits, context
FROM herd.events WHERE type = 'group';

CREATE VIEW herd.aliases AS
SELECT message_id, source_id, anonymous_id, user_id, previous_id, "timestamp", received_at, context
FROM herd.events WHERE type = 'alias';
