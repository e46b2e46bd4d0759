-- Rows herd sync intercom check found differing from Intercom. Incremental
-- passes fetch only what Intercom reports changed, so a row lost or altered
-- in the warehouse would stay so: the next pass fetches these again.
CREATE TABLE intercom.refetch (
    object    text        NOT NULL,
    id        text        NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (object, id)
);
COMMENT ON TABLE intercom.refetch IS 'Contacts, conversations and tickets that herd sync intercom check found differing from Intercom, fetched again (and their rows replaced) by the next sync pass';
COMMENT ON COLUMN intercom.refetch.object IS 'Table the id belongs to: contacts, conversations or tickets';
COMMENT ON COLUMN intercom.refetch.id IS 'Intercom id of the object to fetch again';
COMMENT ON COLUMN intercom.refetch.queued_at IS 'When check queued it';
