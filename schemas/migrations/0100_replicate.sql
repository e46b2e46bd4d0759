-- replicate: herd's own bookkeeping for app databases loaded into the
-- warehouse. Written so that it can be applied twice (replicate.Add applies
-- it too, so that a warehouse where 'herd migrate' has not run still works).
CREATE SCHEMA IF NOT EXISTS herd;

-- One row per 'herd replicate add'. The source URL is kept because status,
-- check, resync and the drift watcher must talk to the source as well.
CREATE TABLE IF NOT EXISTS herd.replicate_subscriptions (
    name        text PRIMARY KEY,
    mode        text NOT NULL CHECK (mode IN ('logical', 'fdw')),
    source_url  text NOT NULL,
    into_schema text NOT NULL DEFAULT '',
    tables      text[] NOT NULL DEFAULT '{}',
    all_tables  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Schema drift seen on the source. Additive changes are applied by the
-- trigger on the replicated DDL log and recorded here as 'applied'; changes
-- herd will not make on its own are recorded with the command that resolves
-- them. New tables (with --all) wait here for the watcher.
CREATE TABLE IF NOT EXISTS herd.replicate_drift (
    id           bigserial PRIMARY KEY,
    subscription text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    table_name   text NOT NULL,
    kind         text NOT NULL,  -- add_column, drop_column, type_change, new_table, drop_table
    detail       text NOT NULL,
    fix          text NOT NULL DEFAULT '',
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('applied', 'pending', 'reported', 'failed'))
);
CREATE INDEX IF NOT EXISTS replicate_drift_pending ON herd.replicate_drift (subscription) WHERE state = 'pending';
