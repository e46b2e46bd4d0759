-- front: children_synced_at is Front's clock (the Date of its answer), and
-- an event a webhook applied is recorded again by the events feed.
COMMENT ON COLUMN front.conversations.children_synced_at IS 'When herd last read every message and comment of the conversation, on Front''s clock (the Date header of its answer; NULL when Front gave none): an event emitted more than 10 s before it needs no refetch';
COMMENT ON COLUMN front.events.via IS 'How herd applied it last: webhook, or api (the events feed, which checks again every event a webhook applied and then records it as api)';
