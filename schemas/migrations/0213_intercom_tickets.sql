-- Intercom tickets, where the workspace has them. Tickets have no list
-- endpoint: they are read through POST /tickets/search by updated_at.
CREATE TABLE intercom.tickets (
    id                text PRIMARY KEY,
    data              jsonb NOT NULL,
    deleted           boolean NOT NULL DEFAULT false,
    updated_at        timestamptz,
    synced_at         timestamptz NOT NULL DEFAULT now(),
    ticket_id         text GENERATED ALWAYS AS (data ->> 'ticket_id') STORED,
    category          text GENERATED ALWAYS AS (data ->> 'category') STORED,
    ticket_state      text GENERATED ALWAYS AS (coalesce(data #>> '{ticket_state,category}', data ->> 'ticket_state')) STORED,
    ticket_type_id    text GENERATED ALWAYS AS (data #>> '{ticket_type,id}') STORED,
    open              boolean GENERATED ALWAYS AS ((data ->> 'open')::boolean) STORED,
    admin_assignee_id text GENERATED ALWAYS AS (data ->> 'admin_assignee_id') STORED,
    team_assignee_id  text GENERATED ALWAYS AS (data ->> 'team_assignee_id') STORED,
    created_at        timestamptz GENERATED ALWAYS AS (intercom.ts(data -> 'created_at')) STORED
);
CREATE INDEX ON intercom.tickets (updated_at);
COMMENT ON TABLE intercom.tickets IS 'Intercom tickets, one row each (empty when the workspace has no tickets: intercom.sync_state says unavailable)';
COMMENT ON COLUMN intercom.tickets.id IS 'Intercom ticket id (the one the API takes)';
COMMENT ON COLUMN intercom.tickets.data IS 'The ticket as the Intercom API returned it (JSON)';
COMMENT ON COLUMN intercom.tickets.deleted IS 'true once Intercom no longer has the ticket (found by a webhook''s refetch or a sweep); the row keeps its last state';
COMMENT ON COLUMN intercom.tickets.updated_at IS 'Intercom''s updated_at of the stored state; an older state never replaces a newer one';
COMMENT ON COLUMN intercom.tickets.synced_at IS 'When herd last wrote the row, or found it current in a full listing';
COMMENT ON COLUMN intercom.tickets.ticket_id IS 'The ticket''s number shown in the Intercom inbox and Messenger';
COMMENT ON COLUMN intercom.tickets.category IS 'Customer, Back-office or Tracker';
COMMENT ON COLUMN intercom.tickets.ticket_state IS 'State category: submitted, in_progress, waiting_on_customer or resolved';
COMMENT ON COLUMN intercom.tickets.ticket_type_id IS 'Id of the ticket type';
COMMENT ON COLUMN intercom.tickets.open IS 'Whether the ticket is open';
COMMENT ON COLUMN intercom.tickets.admin_assignee_id IS 'Admin the ticket is assigned to (intercom.admins.id)';
COMMENT ON COLUMN intercom.tickets.team_assignee_id IS 'Team the ticket is assigned to (intercom.teams.id)';
COMMENT ON COLUMN intercom.tickets.created_at IS 'When the ticket was created in Intercom';

ALTER TABLE intercom.sync_state DROP CONSTRAINT sync_state_phase_check;
ALTER TABLE intercom.sync_state ADD CONSTRAINT sync_state_phase_check
    CHECK (phase IN ('pending', 'backfill', 'incremental', 'unavailable'));
COMMENT ON COLUMN intercom.sync_state.phase IS 'pending, backfill (a full listing under way), incremental, or unavailable (the workspace does not offer the object, e.g. tickets; retried every pass)';
