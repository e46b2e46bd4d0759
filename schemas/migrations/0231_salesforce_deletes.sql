-- Where the Salesforce delete log was last read up to, apart from the
-- SystemModstamp cursor, and when an Id sweep last stood in for it.
ALTER TABLE salesforce.sync_state
    ADD COLUMN deleted_until timestamptz,
    ADD COLUMN id_sweep_at   timestamptz,
    ADD COLUMN id_sweep_rows bigint;
COMMENT ON COLUMN salesforce.sync_state.deleted_until IS 'Every deletion of the object before this instant is marked in the warehouse: the latestDateCovered of the last getDeleted answer, or the start of the last Id sweep; the next getDeleted call starts here.';
COMMENT ON COLUMN salesforce.sync_state.id_sweep_at IS 'When herd last compared every Id in Salesforce with the table, because the delete log no longer reached back to deleted_until (herd stopped for weeks, or the log was trimmed).';
COMMENT ON COLUMN salesforce.sync_state.id_sweep_rows IS 'Rows the last Id sweep marked deleted.';
