-- Intercom in the warehouse: one table per object with the object as the API
-- returned it (data), typed columns generated from it, and the bookkeeping that
-- makes syncing safe to repeat: deleted, the source's updated_at (an older state
-- never overwrites a newer one) and synced_at. Conversation parts have their own
-- table, one row per part. intercom.sync_state tells how far the sync has got.

CREATE SCHEMA IF NOT EXISTS intercom;
COMMENT ON SCHEMA intercom IS 'Intercom objects loaded by herd sync intercom: one table per object type, conversation parts one row each, and the sync state';

-- Intercom times are Unix seconds.
CREATE FUNCTION intercom.ts(v jsonb) RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v) WHEN 'number' THEN to_timestamp((v #>> '{}')::double precision) END
$$;
COMMENT ON FUNCTION intercom.ts(jsonb) IS 'An Intercom time (Unix seconds, JSON number) as timestamptz; NULL for anything else';

CREATE TABLE intercom.contacts (
    id           text PRIMARY KEY,
    data         jsonb NOT NULL,
    deleted      boolean NOT NULL DEFAULT false,
    updated_at   timestamptz,
    synced_at    timestamptz NOT NULL DEFAULT now(),
    role         text GENERATED ALWAYS AS (data ->> 'role') STORED,
    external_id  text GENERATED ALWAYS AS (data ->> 'external_id') STORED,
    email        text GENERATED ALWAYS AS (data ->> 'email') STORED,
    name         text GENERATED ALWAYS AS (data ->> 'name') STORED,
    created_at   timestamptz GENERATED ALWAYS AS (intercom.ts(data -> 'created_at')) STORED,
    last_seen_at timestamptz GENERATED ALWAYS AS (intercom.ts(data -> 'last_seen_at')) STORED
);
CREATE INDEX ON intercom.contacts (email);
CREATE INDEX ON intercom.contacts (external_id);
COMMENT ON TABLE intercom.contacts IS 'Intercom contacts (users and leads), one row each';
COMMENT ON COLUMN intercom.contacts.id IS 'Intercom contact id';
COMMENT ON COLUMN intercom.contacts.data IS 'The contact as the Intercom API returned it (JSON)';
COMMENT ON COLUMN intercom.contacts.deleted IS 'true once Intercom no longer has the contact (deleted, or a lead merged into a user); the row keeps its last state';
COMMENT ON COLUMN intercom.contacts.updated_at IS 'Intercom''s updated_at of the stored state; an older state never replaces a newer one';
COMMENT ON COLUMN intercom.contacts.synced_at IS 'When herd last wrote the row, or found it current in a full listing';
COMMENT ON COLUMN intercom.contacts.role IS 'user or lead';
COMMENT ON COLUMN intercom.contacts.external_id IS 'The contact''s id in your own product (Intercom''s external_id)';
COMMENT ON COLUMN intercom.contacts.email IS 'Email address';
COMMENT ON COLUMN intercom.contacts.name IS 'Name';
COMMENT ON COLUMN intercom.contacts.created_at IS 'When the contact was created in Intercom';
COMMENT ON COLUMN intercom.contacts.last_seen_at IS 'When Intercom last saw the contact';

CREATE TABLE intercom.companies (
    id          text PRIMARY KEY,
    data        jsonb NOT NULL,
    deleted     boolean NOT NULL DEFAULT false,
    updated_at  timestamptz,
    synced_at   timestamptz NOT NULL DEFAULT now(),
    company_id  text GENERATED ALWAYS AS (data ->> 'company_id') STORED,
    name        text GENERATED ALWAYS AS (data ->> 'name') STORED,
    created_at  timestamptz GENERATED ALWAYS AS (intercom.ts(data -> 'created_at')) STORED
);
CREATE INDEX ON intercom.companies (company_id);
COMMENT ON TABLE intercom.companies IS 'Intercom companies, one row each';
COMMENT ON COLUMN intercom.companies.id IS 'Intercom company id';
COMMENT ON COLUMN intercom.companies.data IS 'The company as the Intercom API returned it (JSON)';
COMMENT ON COLUMN intercom.companies.deleted IS 'true once Intercom no longer lists the company';
COMMENT ON COLUMN intercom.companies.updated_at IS 'Intercom''s updated_at of the stored state; an older state never replaces a newer one';
COMMENT ON COLUMN intercom.companies.synced_at IS 'When herd last wrote the row, or found it current in a full listing';
COMMENT ON COLUMN intercom.companies.company_id IS 'The company''s id in your own product';
COMMENT ON COLUMN intercom.companies.name IS 'Name';
COMMENT ON COLUMN intercom.companies.created_at IS 'When the company was created in Intercom';

CREATE TABLE intercom.conversations (
    id                text PRIMARY KEY,
    data              jsonb NOT NULL,
    deleted           boolean NOT NULL DEFAULT false,
    updated_at        timestamptz,
    synced_at         timestamptz NOT NULL DEFAULT now(),
    parts_total       integer,
    state             text GENERATED ALWAYS AS (data ->> 'state') STORED,
    open              boolean GENERATED ALWAYS AS (CASE jsonb_typeof(data -> 'open') WHEN 'boolean' THEN (data ->> 'open')::boolean END) STORED,
    title             text GENERATED ALWAYS AS (data ->> 'title') STORED,
    contact_id        text GENERATED ALWAYS AS (data -> 'contacts' -> 'contacts' -> 0 ->> 'id') STORED,
    admin_assignee_id text GENERATED ALWAYS AS (data ->> 'admin_assignee_id') STORED,
    team_assignee_id  text GENERATED ALWAYS AS (data ->> 'team_assignee_id') STORED,
    created_at        timestamptz GENERATED ALWAYS AS (intercom.ts(data -> 'created_at')) STORED
);
CREATE INDEX ON intercom.conversations (contact_id);
CREATE INDEX ON intercom.conversations (updated_at);
COMMENT ON TABLE intercom.conversations IS 'Intercom conversations, one row each; their parts are in intercom.conversation_parts';
COMMENT ON COLUMN intercom.conversations.id IS 'Intercom conversation id';
COMMENT ON COLUMN intercom.conversations.data IS 'The conversation as the Intercom API returned it (JSON), without conversation_parts (one row each in intercom.conversation_parts)';
COMMENT ON COLUMN intercom.conversations.deleted IS 'true once Intercom no longer has the conversation';
COMMENT ON COLUMN intercom.conversations.updated_at IS 'Intercom''s updated_at of the stored state; an older state never replaces a newer one';
COMMENT ON COLUMN intercom.conversations.synced_at IS 'When herd last wrote the row, or found it current in a full listing';
COMMENT ON COLUMN intercom.conversations.parts_total IS 'How many parts Intercom says the conversation has (conversation_parts.total_count); the API returns at most 500 of them';
COMMENT ON COLUMN intercom.conversations.state IS 'open, closed or snoozed';
COMMENT ON COLUMN intercom.conversations.open IS 'Whether the conversation is open';
COMMENT ON COLUMN intercom.conversations.title IS 'Title, when the conversation has one';
COMMENT ON COLUMN intercom.conversations.contact_id IS 'Id of the first contact in the conversation (intercom.contacts.id)';
COMMENT ON COLUMN intercom.conversations.admin_assignee_id IS 'Id of the admin assigned (intercom.admins.id)';
COMMENT ON COLUMN intercom.conversations.team_assignee_id IS 'Id of the team assigned (intercom.teams.id)';
COMMENT ON COLUMN intercom.conversations.created_at IS 'When the conversation started';

CREATE TABLE intercom.conversation_parts (
    id              text PRIMARY KEY,
    conversation_id text NOT NULL,
    data            jsonb NOT NULL,
    deleted         boolean NOT NULL DEFAULT false,
    updated_at      timestamptz,
    synced_at       timestamptz NOT NULL DEFAULT now(),
    part_type       text GENERATED ALWAYS AS (data ->> 'part_type') STORED,
    author_type     text GENERATED ALWAYS AS (data -> 'author' ->> 'type') STORED,
    author_id       text GENERATED ALWAYS AS (data -> 'author' ->> 'id') STORED,
    body            text GENERATED ALWAYS AS (data ->> 'body') STORED,
    created_at      timestamptz GENERATED ALWAYS AS (intercom.ts(data -> 'created_at')) STORED
);
CREATE INDEX ON intercom.conversation_parts (conversation_id, created_at);
COMMENT ON TABLE intercom.conversation_parts IS 'Parts of Intercom conversations (replies, notes, assignments, state changes), one row each';
COMMENT ON COLUMN intercom.conversation_parts.id IS 'Intercom conversation part id';
COMMENT ON COLUMN intercom.conversation_parts.conversation_id IS 'The conversation it belongs to (intercom.conversations.id)';
COMMENT ON COLUMN intercom.conversation_parts.data IS 'The part as the Intercom API returned it (JSON)';
COMMENT ON COLUMN intercom.conversation_parts.deleted IS 'true once the conversation no longer has the part (or the conversation is gone)';
COMMENT ON COLUMN intercom.conversation_parts.updated_at IS 'Intercom''s updated_at of the stored state; an older state never replaces a newer one';
COMMENT ON COLUMN intercom.conversation_parts.synced_at IS 'When herd last wrote the row, or found it current in a full listing';
COMMENT ON COLUMN intercom.conversation_parts.part_type IS 'comment, note, assignment, open, close, snoozed, ...';
COMMENT ON COLUMN intercom.conversation_parts.author_type IS 'admin, user, lead, bot or team';
COMMENT ON COLUMN intercom.conversation_parts.author_id IS 'Id of the author (an admin or a contact)';
COMMENT ON COLUMN intercom.conversation_parts.body IS 'Body (HTML), when the part has one';
COMMENT ON COLUMN intercom.conversation_parts.created_at IS 'When the part was created';

-- Small objects listed whole on every pass.
CREATE TABLE intercom.admins (
    id         text PRIMARY KEY,
    data       jsonb NOT NULL,
    deleted    boolean NOT NULL DEFAULT false,
    updated_at timestamptz,
    synced_at  timestamptz NOT NULL DEFAULT now(),
    name       text GENERATED ALWAYS AS (data ->> 'name') STORED,
    email      text GENERATED ALWAYS AS (data ->> 'email') STORED
);
COMMENT ON TABLE intercom.admins IS 'Intercom admins (teammates), one row each';
COMMENT ON COLUMN intercom.admins.id IS 'Intercom admin id';
COMMENT ON COLUMN intercom.admins.data IS 'The admin as the Intercom API returned it (JSON)';
COMMENT ON COLUMN intercom.admins.deleted IS 'true once Intercom no longer lists the admin';
COMMENT ON COLUMN intercom.admins.updated_at IS 'Intercom''s updated_at when the object has one, else NULL';
COMMENT ON COLUMN intercom.admins.synced_at IS 'When herd last wrote the row, or found it current in a full listing';
COMMENT ON COLUMN intercom.admins.name IS 'Name';
COMMENT ON COLUMN intercom.admins.email IS 'Email address';

CREATE TABLE intercom.teams (
    id         text PRIMARY KEY,
    data       jsonb NOT NULL,
    deleted    boolean NOT NULL DEFAULT false,
    updated_at timestamptz,
    synced_at  timestamptz NOT NULL DEFAULT now(),
    name       text GENERATED ALWAYS AS (data ->> 'name') STORED
);
COMMENT ON TABLE intercom.teams IS 'Intercom teams, one row each';
COMMENT ON COLUMN intercom.teams.id IS 'Intercom team id';
COMMENT ON COLUMN intercom.teams.data IS 'The team as the Intercom API returned it (JSON)';
COMMENT ON COLUMN intercom.teams.deleted IS 'true once Intercom no longer lists the team';
COMMENT ON COLUMN intercom.teams.updated_at IS 'Intercom''s updated_at when the object has one, else NULL';
COMMENT ON COLUMN intercom.teams.synced_at IS 'When herd last wrote the row, or found it current in a full listing';
COMMENT ON COLUMN intercom.teams.name IS 'Name';

CREATE TABLE intercom.tags (
    id         text PRIMARY KEY,
    data       jsonb NOT NULL,
    deleted    boolean NOT NULL DEFAULT false,
    updated_at timestamptz,
    synced_at  timestamptz NOT NULL DEFAULT now(),
    name       text GENERATED ALWAYS AS (data ->> 'name') STORED
);
COMMENT ON TABLE intercom.tags IS 'Intercom tags, one row each';
COMMENT ON COLUMN intercom.tags.id IS 'Intercom tag id';
COMMENT ON COLUMN intercom.tags.data IS 'The tag as the Intercom API returned it (JSON)';
COMMENT ON COLUMN intercom.tags.deleted IS 'true once Intercom no longer lists the tag';
COMMENT ON COLUMN intercom.tags.updated_at IS 'Intercom''s updated_at when the object has one, else NULL';
COMMENT ON COLUMN intercom.tags.synced_at IS 'When herd last wrote the row, or found it current in a full listing';
COMMENT ON COLUMN intercom.tags.name IS 'Name';

CREATE TABLE intercom.segments (
    id         text PRIMARY KEY,
    data       jsonb NOT NULL,
    deleted    boolean NOT NULL DEFAULT false,
    updated_at timestamptz,
    synced_at  timestamptz NOT NULL DEFAULT now(),
    name       text GENERATED ALWAYS AS (data ->> 'name') STORED
);
COMMENT ON TABLE intercom.segments IS 'Intercom segments, one row each';
COMMENT ON COLUMN intercom.segments.id IS 'Intercom segment id';
COMMENT ON COLUMN intercom.segments.data IS 'The segment as the Intercom API returned it (JSON)';
COMMENT ON COLUMN intercom.segments.deleted IS 'true once Intercom no longer lists the segment';
COMMENT ON COLUMN intercom.segments.updated_at IS 'Intercom''s updated_at when the object has one, else NULL';
COMMENT ON COLUMN intercom.segments.synced_at IS 'When herd last wrote the row, or found it current in a full listing';
COMMENT ON COLUMN intercom.segments.name IS 'Name';

CREATE TABLE intercom.sync_state (
    object               text PRIMARY KEY,
    phase                text NOT NULL DEFAULT 'pending' CHECK (phase IN ('pending', 'backfill', 'incremental')),
    backfill_started_at  timestamptz,
    backfill_finished_at timestamptz,
    backfill_rows        bigint,
    backfill_mark        timestamptz,
    cursor               text,
    synced_until         timestamptz,
    swept_at             timestamptz,
    last_success_at      timestamptz,
    last_error           text,
    last_error_at        timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE intercom.sync_state IS 'How far herd sync intercom has got: one row per table';
COMMENT ON COLUMN intercom.sync_state.object IS 'Table name in schema intercom';
COMMENT ON COLUMN intercom.sync_state.phase IS 'pending (not started), backfill (listing every object) or incremental (following updated_at)';
COMMENT ON COLUMN intercom.sync_state.backfill_started_at IS 'When the last full backfill of the table started';
COMMENT ON COLUMN intercom.sync_state.backfill_finished_at IS 'When the last full backfill of the table finished';
COMMENT ON COLUMN intercom.sync_state.backfill_rows IS 'Rows the last backfill listed';
COMMENT ON COLUMN intercom.sync_state.backfill_mark IS 'The time when the running or last backfill started; once it finishes, every change before it is in the warehouse';
COMMENT ON COLUMN intercom.sync_state.cursor IS 'During a backfill: the starting_after of the next page to list, so that an interrupted backfill resumes there';
COMMENT ON COLUMN intercom.sync_state.synced_until IS 'Every change Intercom made to the table''s objects before this instant is in the warehouse';
COMMENT ON COLUMN intercom.sync_state.swept_at IS 'When the last full id sweep (which finds objects deleted without an event) started';
COMMENT ON COLUMN intercom.sync_state.last_success_at IS 'When the last pass over the table succeeded';
COMMENT ON COLUMN intercom.sync_state.last_error IS 'The last pass''s error, if it failed';
COMMENT ON COLUMN intercom.sync_state.last_error_at IS 'When the last pass failed';
COMMENT ON COLUMN intercom.sync_state.updated_at IS 'When the row last changed';
