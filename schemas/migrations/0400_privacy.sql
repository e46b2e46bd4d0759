-- Privacy requests: deleting, exporting and suppressing a person's data
-- (herd privacy). None of these tables is listed in herd.grant_analyst_read,
-- so analysts cannot read them: privacy_requests holds the ids themselves.

-- One row per herd privacy command. user_ids and anonymous_ids are what was
-- asked; linked_ids the anonymous ids found linked to the users
-- (herd.identities: identify and alias calls). removed (delete) or exported
-- (export) counts rows per store: {"events": n, "rejects": n, "users": n,
-- "identities": n, "group_members": n, "lake_rows": n, "lake_files": n}.
CREATE TABLE herd.privacy_requests (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('delete', 'export', 'suppress', 'unsuppress')),
    user_ids      text[] NOT NULL DEFAULT '{}',
    anonymous_ids text[] NOT NULL DEFAULT '{}',
    linked_ids    text[] NOT NULL DEFAULT '{}',
    source_ids    bigint[],               -- NULL: every source
    requested_at  timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
    counts        jsonb NOT NULL DEFAULT '{}',
    error         text
);

-- What each delete removed, per source and hour of the event time (UTC), so
-- that herd check can tell deliberate removals from losses: events from
-- herd.events, lake_rows from the lake's files, rejects from herd.rejects
-- (by the hour the reject was received).
CREATE TABLE herd.privacy_removed (
    request_id bigint NOT NULL REFERENCES herd.privacy_requests (id),
    source_id  bigint NOT NULL,
    hour       timestamptz NOT NULL,
    events     bigint NOT NULL DEFAULT 0,
    lake_rows  bigint NOT NULL DEFAULT 0,
    rejects    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (request_id, source_id, hour)
);
CREATE INDEX privacy_removed_hour ON herd.privacy_removed (source_id, hour);

-- The message ids of deleted events. Their ledger entries (herd.message_ids)
-- must stay, so that a redelivery of a deleted event is still a duplicate:
-- the trigger below keeps them when anything else (herd replay's
-- --forget-missing, which forgets the ids of rows that are gone) deletes them.
-- Retention (herd.drop_partitions_before) removes whole days of the ledger
-- with a statement the trigger also sees; those ids stay too, a few bytes
-- each, as long as the entry here does.
CREATE TABLE herd.privacy_erased (
    source_id  bigint NOT NULL,
    message_id text NOT NULL,
    request_id bigint NOT NULL REFERENCES herd.privacy_requests (id),
    PRIMARY KEY (source_id, message_id)
);

CREATE FUNCTION herd.keep_erased_ids() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM herd.privacy_erased p
               WHERE p.source_id = OLD.source_id AND p.message_id = OLD.message_id) THEN
        RETURN NULL; -- keep the ledger entry
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER keep_erased_ids BEFORE DELETE ON herd.message_ids
    FOR EACH ROW EXECUTE FUNCTION herd.keep_erased_ids();

-- People whose future events collectors drop. Only a hash of the id is kept
-- (stream.SuppressKey: the key of the NATS bucket collectors watch), so
-- neither this table nor the bucket shows the id; the request that added an
-- entry has it.
CREATE TABLE herd.suppressions (
    key        text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('user_id', 'anonymous_id')),
    request_id bigint REFERENCES herd.privacy_requests (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION herd.notify_suppressions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herd_suppressions', '');
    RETURN NULL;
END $$;
CREATE TRIGGER suppressions_changed AFTER INSERT OR UPDATE OR DELETE ON herd.suppressions
    FOR EACH STATEMENT EXECUTE FUNCTION herd.notify_suppressions();

-- raw_has_id reports whether a reject's raw text carries one of ids as its
-- userId or anonymousId (or previousId), at the top level or in an item of a
-- batch. A raw text that is not JSON (a reject may be anything a client
-- sent) counts when it contains one of the ids at all: deleting too much of
-- a malformed reject is the safe side.
CREATE FUNCTION herd.raw_has_id(raw text, ids text[]) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    j jsonb;
    item jsonb;
BEGIN
    BEGIN
        j := raw::jsonb;
    EXCEPTION WHEN others THEN
        RETURN EXISTS (SELECT 1 FROM unnest(ids) id WHERE strpos(raw, id) > 0);
    END;
    IF jsonb_typeof(j) <> 'object' THEN
        RETURN false;
    END IF;
    FOR item IN SELECT j UNION ALL
                SELECT e FROM jsonb_array_elements(CASE WHEN jsonb_typeof(j -> 'batch') = 'array' THEN j -> 'batch' ELSE '[]' END) e
    LOOP
        IF jsonb_typeof(item) = 'object' AND (
               item ->> 'userId' = ANY(ids) OR item ->> 'anonymousId' = ANY(ids) OR item ->> 'previousId' = ANY(ids)
            OR item ->> 'user_id' = ANY(ids) OR item ->> 'anonymous_id' = ANY(ids)) THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END $$;
