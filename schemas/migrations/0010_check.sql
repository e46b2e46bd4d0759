-- herd check compares herd's own accounting (the message-id ledger), the
-- rows of herd.events and the lake per source and hour. The ledger knew only
-- the day of each event; it now also keeps the event's hour (UTC) and the
-- stream sequence it came from, written in the statement that claims the id,
-- so that a check counts only what both the writer and the archiver have
-- acknowledged (stream_seq at or below their ack floor). Entries claimed
-- before this migration have NULL here: herd check reports their hours as
-- "accounting unknown" and compares herd.events with the lake alone
-- (herd.schema_migrations.applied_at says from when the ledger is complete).
ALTER TABLE herd.message_ids ADD COLUMN hour timestamptz, ADD COLUMN stream_seq bigint;

-- Ids are claimed roughly in time order, so a BRIN index finds an hour's
-- entries at almost no cost to the writer (a btree would add a second
-- index insert per event to the hot path).
CREATE INDEX message_ids_hour_brin ON herd.message_ids USING brin (hour);

-- One row per herd check run, the newest shown by herd status. Bounded:
-- each run deletes all but the newest 1,000.
CREATE TABLE herd.check_runs (
    id           bigserial PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    since        timestamptz NOT NULL,
    until        timestamptz NOT NULL,
    stream_floor bigint NOT NULL,         -- events up to this stream sequence were compared
    hours        integer NOT NULL,        -- (source, hour) pairs compared
    differences  integer NOT NULL,        -- of those, how many differ
    accepted     bigint NOT NULL,
    events       bigint NOT NULL,
    lake         bigint,                  -- NULL: the lake was not compared
    rejects      bigint NOT NULL,
    report       jsonb NOT NULL,          -- the differing hours (at most 100) and notes
    error        text
);

-- How many ids each source and day had in the ledger before the ledger kept
-- hours: herd check cannot count those per hour, and for these days compares
-- herd.events with the lake alone. One scan of the ledger, now; later runs
-- never look for NULL hours.
CREATE TABLE herd.message_ids_unhoured (
    source_id bigint NOT NULL,
    day       date NOT NULL,
    ids       bigint NOT NULL,
    PRIMARY KEY (source_id, day)
);
INSERT INTO herd.message_ids_unhoured SELECT source_id, day, count(*) FROM herd.message_ids GROUP BY 1, 2;
