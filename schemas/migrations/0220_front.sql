-- Front in the warehouse: one table per object with the object as Front sent
-- it (data), typed columns generated from it, and the bookkeeping that makes
-- syncing safe to repeat: deleted, version (the guard: an older state never
-- overwrites a newer one), synced_at. front.events logs every event seen,
-- front.sync_state is what an operator queries to see how far the sync got.

CREATE SCHEMA IF NOT EXISTS front;
COMMENT ON SCHEMA front IS 'Front (support inbox) objects loaded by herd sync front: conversations with their messages and comments, contacts, accounts, teammates, teams, inboxes, tags, the events seen and the sync state';

-- Front times are Unix seconds with up to three decimals.
CREATE FUNCTION front.ts(v jsonb) RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v) WHEN 'number' THEN to_timestamp((v #>> '{}')::double precision) END
$$;
COMMENT ON FUNCTION front.ts(jsonb) IS 'A Front timestamp (Unix seconds with decimals, as JSON) as timestamptz; NULL when absent';

CREATE FUNCTION front.bool(v jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v) WHEN 'boolean' THEN (v #>> '{}')::boolean END
$$;
COMMENT ON FUNCTION front.bool(jsonb) IS 'A JSON boolean as boolean; NULL when absent or of another type';

CREATE TABLE front.conversations (
    id                 text PRIMARY KEY,
    data               jsonb NOT NULL,
    deleted            boolean NOT NULL DEFAULT false,
    version            timestamptz NOT NULL,
    children_synced_at timestamptz,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    subject            text GENERATED ALWAYS AS (data ->> 'subject') STORED,
    status             text GENERATED ALWAYS AS (data ->> 'status') STORED,
    assignee_id        text GENERATED ALWAYS AS (data -> 'assignee' ->> 'id') STORED,
    recipient_handle   text GENERATED ALWAYS AS (data -> 'recipient' ->> 'handle') STORED,
    is_private         boolean GENERATED ALWAYS AS (front.bool(data -> 'is_private')) STORED,
    created_at         timestamptz GENERATED ALWAYS AS (front.ts(data -> 'created_at')) STORED,
    updated_at         timestamptz GENERATED ALWAYS AS (front.ts(data -> 'updated_at')) STORED,
    waiting_since      timestamptz GENERATED ALWAYS AS (front.ts(data -> 'waiting_since')) STORED
);
CREATE INDEX ON front.conversations (status);
CREATE INDEX ON front.conversations (created_at);

CREATE TABLE front.messages (
    id              text PRIMARY KEY,
    conversation_id text NOT NULL,
    data            jsonb NOT NULL,
    deleted         boolean NOT NULL DEFAULT false,
    version         timestamptz NOT NULL,
    synced_at       timestamptz NOT NULL DEFAULT now(),
    type            text GENERATED ALWAYS AS (data ->> 'type') STORED,
    is_inbound      boolean GENERATED ALWAYS AS (front.bool(data -> 'is_inbound')) STORED,
    is_draft        boolean GENERATED ALWAYS AS (front.bool(data -> 'is_draft')) STORED,
    author_id       text GENERATED ALWAYS AS (data -> 'author' ->> 'id') STORED,
    subject         text GENERATED ALWAYS AS (data ->> 'subject') STORED,
    blurb           text GENERATED ALWAYS AS (data ->> 'blurb') STORED,
    created_at      timestamptz GENERATED ALWAYS AS (front.ts(data -> 'created_at')) STORED
);
CREATE INDEX ON front.messages (conversation_id);

CREATE TABLE front.comments (
    id              text PRIMARY KEY,
    conversation_id text NOT NULL,
    data            jsonb NOT NULL,
    deleted         boolean NOT NULL DEFAULT false,
    version         timestamptz NOT NULL,
    synced_at       timestamptz NOT NULL DEFAULT now(),
    author_id       text GENERATED ALWAYS AS (data -> 'author' ->> 'id') STORED,
    body            text GENERATED ALWAYS AS (data ->> 'body') STORED,
    posted_at       timestamptz GENERATED ALWAYS AS (front.ts(data -> 'posted_at')) STORED
);
CREATE INDEX ON front.comments (conversation_id);

CREATE TABLE front.contacts (
    id          text PRIMARY KEY,
    data        jsonb NOT NULL,
    deleted     boolean NOT NULL DEFAULT false,
    version     timestamptz NOT NULL,
    synced_at   timestamptz NOT NULL DEFAULT now(),
    name        text GENERATED ALWAYS AS (data ->> 'name') STORED,
    description text GENERATED ALWAYS AS (data ->> 'description') STORED,
    is_spammer  boolean GENERATED ALWAYS AS (front.bool(data -> 'is_spammer')) STORED,
    is_private  boolean GENERATED ALWAYS AS (front.bool(data -> 'is_private')) STORED,
    created_at  timestamptz GENERATED ALWAYS AS (front.ts(data -> 'created_at')) STORED,
    updated_at  timestamptz GENERATED ALWAYS AS (front.ts(data -> 'updated_at')) STORED
);
CREATE INDEX ON front.contacts (updated_at);

CREATE TABLE front.accounts (
    id          text PRIMARY KEY,
    data        jsonb NOT NULL,
    deleted     boolean NOT NULL DEFAULT false,
    version     timestamptz NOT NULL,
    synced_at   timestamptz NOT NULL DEFAULT now(),
    name        text GENERATED ALWAYS AS (data ->> 'name') STORED,
    external_id text GENERATED ALWAYS AS (data ->> 'external_id') STORED,
    created_at  timestamptz GENERATED ALWAYS AS (front.ts(data -> 'created_at')) STORED,
    updated_at  timestamptz GENERATED ALWAYS AS (front.ts(data -> 'updated_at')) STORED
);

CREATE TABLE front.teammates (
    id           text PRIMARY KEY,
    data         jsonb NOT NULL,
    deleted      boolean NOT NULL DEFAULT false,
    version      timestamptz NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now(),
    email        text GENERATED ALWAYS AS (data ->> 'email') STORED,
    username     text GENERATED ALWAYS AS (data ->> 'username') STORED,
    first_name   text GENERATED ALWAYS AS (data ->> 'first_name') STORED,
    last_name    text GENERATED ALWAYS AS (data ->> 'last_name') STORED,
    is_admin     boolean GENERATED ALWAYS AS (front.bool(data -> 'is_admin')) STORED,
    is_available boolean GENERATED ALWAYS AS (front.bool(data -> 'is_available')) STORED,
    is_blocked   boolean GENERATED ALWAYS AS (front.bool(data -> 'is_blocked')) STORED
);

CREATE TABLE front.teams (
    id        text PRIMARY KEY,
    data      jsonb NOT NULL,
    deleted   boolean NOT NULL DEFAULT false,
    version   timestamptz NOT NULL,
    synced_at timestamptz NOT NULL DEFAULT now(),
    name      text GENERATED ALWAYS AS (data ->> 'name') STORED
);

CREATE TABLE front.inboxes (
    id         text PRIMARY KEY,
    data       jsonb NOT NULL,
    deleted    boolean NOT NULL DEFAULT false,
    version    timestamptz NOT NULL,
    synced_at  timestamptz NOT NULL DEFAULT now(),
    name       text GENERATED ALWAYS AS (data ->> 'name') STORED,
    is_private boolean GENERATED ALWAYS AS (front.bool(data -> 'is_private')) STORED
);

CREATE TABLE front.tags (
    id         text PRIMARY KEY,
    data       jsonb NOT NULL,
    deleted    boolean NOT NULL DEFAULT false,
    version    timestamptz NOT NULL,
    synced_at  timestamptz NOT NULL DEFAULT now(),
    name       text GENERATED ALWAYS AS (data ->> 'name') STORED,
    highlight  text GENERATED ALWAYS AS (data ->> 'highlight') STORED,
    is_private boolean GENERATED ALWAYS AS (front.bool(data -> 'is_private')) STORED,
    created_at timestamptz GENERATED ALWAYS AS (front.ts(data -> 'created_at')) STORED,
    updated_at timestamptz GENERATED ALWAYS AS (front.ts(data -> 'updated_at')) STORED
);

CREATE TABLE front.events (
    id              text PRIMARY KEY,
    type            text NOT NULL,
    emitted_at      timestamptz NOT NULL,
    conversation_id text,
    via             text NOT NULL CHECK (via IN ('api', 'webhook')),
    outcome         text NOT NULL CHECK (outcome IN ('applied', 'stale', 'ignored')),
    data            jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON front.events (emitted_at);
CREATE INDEX ON front.events (conversation_id);

CREATE TABLE front.sync_state (
    object               text PRIMARY KEY,
    phase                text NOT NULL DEFAULT 'pending' CHECK (phase IN ('pending', 'backfill', 'incremental')),
    backfill_started_at  timestamptz,
    backfill_finished_at timestamptz,
    backfill_rows        bigint,
    next_url             text,
    cursor               timestamptz,
    synced_until         timestamptz,
    reconciled_at        timestamptz,
    last_success_at      timestamptz,
    last_error           text,
    last_error_at        timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE front.conversations IS 'Front conversations, one row each, as GET /conversations/{id} returns them';
COMMENT ON TABLE front.messages IS 'Messages of Front conversations (emails, chats, SMS...), one row per message';
COMMENT ON TABLE front.comments IS 'Internal comments teammates left on Front conversations, one row per comment';
COMMENT ON TABLE front.contacts IS 'Front contacts (the people conversations are with)';
COMMENT ON TABLE front.accounts IS 'Front accounts (the companies contacts belong to)';
COMMENT ON TABLE front.teammates IS 'Front teammates (the users of the Front company)';
COMMENT ON TABLE front.teams IS 'Front teams (workspaces)';
COMMENT ON TABLE front.inboxes IS 'Front inboxes';
COMMENT ON TABLE front.tags IS 'Front tags';

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['conversations', 'messages', 'comments', 'contacts', 'accounts', 'teammates', 'teams', 'inboxes', 'tags'] LOOP
        EXECUTE format('COMMENT ON COLUMN front.%I.id IS %L', t, 'Front id of the object (e.g. cnv_..., msg_..., com_..., crd_..., tea_..., inb_..., tag_...)');
        EXECUTE format('COMMENT ON COLUMN front.%I.data IS %L', t, 'The object exactly as the Front API returned it');
        EXECUTE format('COMMENT ON COLUMN front.%I.deleted IS %L', t, 'True once Front no longer has the object (404, no longer listed, or status deleted for a conversation); data keeps its last known state');
        EXECUTE format('COMMENT ON COLUMN front.%I.version IS %L', t, 'Guard: the object''s updated_at when Front gives one, else when herd asked Front for this state; a write with an older version is refused');
        EXECUTE format('COMMENT ON COLUMN front.%I.synced_at IS %L', t, 'When herd last wrote this row');
    END LOOP;
END $$;

COMMENT ON COLUMN front.conversations.children_synced_at IS 'When herd last read every message and comment of the conversation (an event older than this read needs no refetch)';
COMMENT ON COLUMN front.conversations.subject IS 'Subject of the conversation';
COMMENT ON COLUMN front.conversations.status IS 'Front status: archived, unassigned, assigned, deleted (in the trash), ...';
COMMENT ON COLUMN front.conversations.assignee_id IS 'Id of the teammate the conversation is assigned to (tea_...)';
COMMENT ON COLUMN front.conversations.recipient_handle IS 'Handle (email address, phone...) of the main recipient';
COMMENT ON COLUMN front.conversations.is_private IS 'Whether the conversation is in a private inbox';
COMMENT ON COLUMN front.conversations.created_at IS 'When the conversation was created (Front created_at, Unix seconds)';
COMMENT ON COLUMN front.conversations.updated_at IS 'When Front last changed the conversation, where the API gives it (updated_at, Unix seconds)';
COMMENT ON COLUMN front.conversations.waiting_since IS 'Since when the conversation has waited for a reply (Front waiting_since)';

COMMENT ON COLUMN front.messages.conversation_id IS 'The conversation the message belongs to (cnv_...)';
COMMENT ON COLUMN front.messages.type IS 'Message type: email, sms, intercom, custom, ...';
COMMENT ON COLUMN front.messages.is_inbound IS 'True for a message received, false for one sent';
COMMENT ON COLUMN front.messages.is_draft IS 'Whether the message is a draft';
COMMENT ON COLUMN front.messages.author_id IS 'Teammate who wrote an outbound message (tea_...)';
COMMENT ON COLUMN front.messages.subject IS 'Subject of the message';
COMMENT ON COLUMN front.messages.blurb IS 'Preview of the message body';
COMMENT ON COLUMN front.messages.created_at IS 'When the message was sent or received (Front created_at)';

COMMENT ON COLUMN front.comments.conversation_id IS 'The conversation the comment is on (cnv_...)';
COMMENT ON COLUMN front.comments.author_id IS 'Teammate who wrote the comment (tea_...)';
COMMENT ON COLUMN front.comments.body IS 'Text of the comment';
COMMENT ON COLUMN front.comments.posted_at IS 'When the comment was posted (Front posted_at)';

COMMENT ON COLUMN front.contacts.name IS 'Contact name';
COMMENT ON COLUMN front.contacts.description IS 'Contact description';
COMMENT ON COLUMN front.contacts.is_spammer IS 'Whether the contact is marked as a spammer';
COMMENT ON COLUMN front.contacts.is_private IS 'Whether the contact is private to a teammate';
COMMENT ON COLUMN front.contacts.created_at IS 'When the contact was created (Front created_at)';
COMMENT ON COLUMN front.contacts.updated_at IS 'When the contact last changed (Front updated_at)';

COMMENT ON COLUMN front.accounts.name IS 'Account (company) name';
COMMENT ON COLUMN front.accounts.external_id IS 'The account''s id in another system, when set';
COMMENT ON COLUMN front.accounts.created_at IS 'When the account was created (Front created_at)';
COMMENT ON COLUMN front.accounts.updated_at IS 'When the account last changed (Front updated_at)';

COMMENT ON COLUMN front.teammates.email IS 'Teammate email address';
COMMENT ON COLUMN front.teammates.username IS 'Teammate username';
COMMENT ON COLUMN front.teammates.first_name IS 'Teammate first name';
COMMENT ON COLUMN front.teammates.last_name IS 'Teammate last name';
COMMENT ON COLUMN front.teammates.is_admin IS 'Whether the teammate is an admin';
COMMENT ON COLUMN front.teammates.is_available IS 'Whether the teammate is available (not away)';
COMMENT ON COLUMN front.teammates.is_blocked IS 'Whether the teammate is blocked from signing in';

COMMENT ON COLUMN front.teams.name IS 'Team name';
COMMENT ON COLUMN front.inboxes.name IS 'Inbox name';
COMMENT ON COLUMN front.inboxes.is_private IS 'Whether the inbox is private';
COMMENT ON COLUMN front.tags.name IS 'Tag name';
COMMENT ON COLUMN front.tags.highlight IS 'Tag colour';
COMMENT ON COLUMN front.tags.is_private IS 'Whether the tag is private to a teammate';
COMMENT ON COLUMN front.tags.created_at IS 'When the tag was created (Front created_at)';
COMMENT ON COLUMN front.tags.updated_at IS 'When the tag last changed (Front updated_at)';

COMMENT ON TABLE front.events IS 'Every Front event herd saw (events feed or webhook) and what it did with it';
COMMENT ON COLUMN front.events.id IS 'Front event id (evt_...)';
COMMENT ON COLUMN front.events.type IS 'Front event type: inbound, outbound, comment, archive, reopen, trash, assign, tag, ...';
COMMENT ON COLUMN front.events.emitted_at IS 'When Front emitted the event (emitted_at, Unix seconds with decimals)';
COMMENT ON COLUMN front.events.conversation_id IS 'The conversation the event is about, refetched whole to apply it';
COMMENT ON COLUMN front.events.via IS 'How herd got it: api (events feed) or webhook';
COMMENT ON COLUMN front.events.outcome IS 'applied (conversation refetched and written), stale (the table held a newer state) or ignored (no conversation herd keeps)';
COMMENT ON COLUMN front.events.data IS 'The event as Front sent it';
COMMENT ON COLUMN front.events.received_at IS 'When herd recorded the event';

COMMENT ON TABLE front.sync_state IS 'Progress of herd sync front: one row per table, and one named events for the events feed cursor';
COMMENT ON COLUMN front.sync_state.object IS 'Table name, or events';
COMMENT ON COLUMN front.sync_state.phase IS 'pending, backfill (first full load under way) or incremental';
COMMENT ON COLUMN front.sync_state.backfill_started_at IS 'When the last backfill of the object started';
COMMENT ON COLUMN front.sync_state.backfill_finished_at IS 'When the last backfill of the object finished (NULL while one runs)';
COMMENT ON COLUMN front.sync_state.backfill_rows IS 'Rows the last backfill of the object loaded';
COMMENT ON COLUMN front.sync_state.next_url IS 'While a backfill runs: the next page to read, so that a restart resumes there';
COMMENT ON COLUMN front.sync_state.cursor IS 'events: emitted_at of the newest event applied; contacts, accounts: updated_at of the newest one read';
COMMENT ON COLUMN front.sync_state.synced_until IS 'Every change Front made before this instant is in the warehouse';
COMMENT ON COLUMN front.sync_state.reconciled_at IS 'When the object was last listed whole to find the ones Front deleted without an event';
COMMENT ON COLUMN front.sync_state.last_success_at IS 'When the last pass over the object succeeded';
COMMENT ON COLUMN front.sync_state.last_error IS 'Error of the last failed pass, NULL after a success';
COMMENT ON COLUMN front.sync_state.last_error_at IS 'When the last pass failed';
COMMENT ON COLUMN front.sync_state.updated_at IS 'When this row last changed';
