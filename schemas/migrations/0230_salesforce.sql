-- Salesforce in the warehouse. The object tables (salesforce.account,
-- salesforce.contact, ...) are not created here: each one follows its
-- object's describe metadata, so the connector creates it, and adds a column
-- when a field appears, at run time. Here: the schema, where each object's
-- sync stands, and which column holds which field.

CREATE SCHEMA IF NOT EXISTS salesforce;
COMMENT ON SCHEMA salesforce IS 'Salesforce objects loaded by herd sync salesforce: one table per object, typed from its describe metadata.';

CREATE TABLE salesforce.sync_state (
    object               text PRIMARY KEY,
    phase                text NOT NULL DEFAULT 'pending' CHECK (phase IN ('pending', 'backfill', 'incremental')),
    backfill_started_at  timestamptz,
    backfill_finished_at timestamptz,
    backfill_rows        bigint,
    cursor_modstamp      timestamptz,
    cursor_id            text,
    bulk_job_id          text,
    bulk_locator         text,
    synced_until         timestamptz,
    last_success_at      timestamptz,
    last_error           text,
    last_error_at        timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE salesforce.sync_state IS 'Where the Salesforce sync stands, one row per object (by API name).';
COMMENT ON COLUMN salesforce.sync_state.object IS 'Salesforce object API name, e.g. Account or Invoice__c.';
COMMENT ON COLUMN salesforce.sync_state.phase IS 'pending (nothing loaded), backfill (first load under way) or incremental.';
COMMENT ON COLUMN salesforce.sync_state.backfill_started_at IS 'When the running or last backfill of the object started.';
COMMENT ON COLUMN salesforce.sync_state.backfill_finished_at IS 'When the last backfill of the object finished; NULL while one runs.';
COMMENT ON COLUMN salesforce.sync_state.backfill_rows IS 'Records written by the running or last backfill so far.';
COMMENT ON COLUMN salesforce.sync_state.cursor_modstamp IS 'SystemModstamp of the last record written by the running read; with cursor_id, where an interrupted read resumes.';
COMMENT ON COLUMN salesforce.sync_state.cursor_id IS 'Id of the last record written by the running read (records sharing one SystemModstamp are ordered by Id).';
COMMENT ON COLUMN salesforce.sync_state.bulk_job_id IS 'Bulk API 2.0 query job of the running backfill, resumed after an interruption.';
COMMENT ON COLUMN salesforce.sync_state.bulk_locator IS 'Sforce-Locator of the next page of bulk_job_id results not yet written.';
COMMENT ON COLUMN salesforce.sync_state.synced_until IS 'Every change to the object before this instant (its SystemModstamp) is in the warehouse.';
COMMENT ON COLUMN salesforce.sync_state.last_success_at IS 'When the last pass over the object finished without error.';
COMMENT ON COLUMN salesforce.sync_state.last_error IS 'The last error or schema drift that needs attention, with what resolves it; cleared by a clean pass.';
COMMENT ON COLUMN salesforce.sync_state.last_error_at IS 'When last_error was recorded.';
COMMENT ON COLUMN salesforce.sync_state.updated_at IS 'When the row last changed.';

CREATE TABLE salesforce.fields (
    object      text NOT NULL,
    field       text NOT NULL,
    column_name text NOT NULL,
    type        text NOT NULL,
    label       text,
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (object, field),
    UNIQUE (object, column_name)
);
COMMENT ON TABLE salesforce.fields IS 'Which column of an object''s table holds which Salesforce field, as decided when the column was added (names stay stable across passes).';
COMMENT ON COLUMN salesforce.fields.object IS 'Salesforce object API name.';
COMMENT ON COLUMN salesforce.fields.field IS 'Salesforce field API name.';
COMMENT ON COLUMN salesforce.fields.column_name IS 'Column of salesforce.<object> holding the field.';
COMMENT ON COLUMN salesforce.fields.type IS 'Salesforce field type when the column was added (string, picklist, double, datetime, ...).';
COMMENT ON COLUMN salesforce.fields.label IS 'The field label from the describe metadata.';
COMMENT ON COLUMN salesforce.fields.added_at IS 'When the column was added.';
