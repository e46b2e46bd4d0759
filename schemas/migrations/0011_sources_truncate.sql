-- TRUNCATE fires no row or INSERT/UPDATE/DELETE statement trigger: without
-- this one, keys of a truncated herd.sources stayed valid in every collector
-- until the mirror's next periodic sync. Now a TRUNCATE wakes the mirror as
-- any other change does, and it deletes every entry of the bucket.
CREATE TRIGGER sources_truncated AFTER TRUNCATE ON herd.sources
    FOR EACH STATEMENT EXECUTE FUNCTION herd.notify_sources();
