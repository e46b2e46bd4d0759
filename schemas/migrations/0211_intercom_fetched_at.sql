-- When herd asked Intercom for the state a conversation row holds: updated_at
-- has a resolution of a second, so two fetches within one second carry the
-- same updated_at, and only the fetch time says which one is newer.
ALTER TABLE intercom.conversations ADD COLUMN fetched_at timestamptz;
COMMENT ON COLUMN intercom.conversations.fetched_at IS 'When herd sent the request whose answer this row holds; with equal updated_at, a later fetch replaces an earlier one, never the reverse';
ALTER TABLE intercom.conversation_parts ADD COLUMN fetched_at timestamptz;
COMMENT ON COLUMN intercom.conversation_parts.fetched_at IS 'When herd sent the request for the conversation whose answer this row holds';
