-- Enrichment and identity: the columns the collector's enrichment adds to
-- every event, the identity tables the writer keeps current from identify,
-- alias and group calls, sessions derived at query time, and the registry of
-- the per-event views that `herd views refresh` maintains.

ALTER TABLE herd.events
    ADD COLUMN referrer_host  text,
    ADD COLUMN referrer_class text,
    ADD COLUMN gclid          text,
    ADD COLUMN fbclid         text,
    ADD COLUMN os_version     text,
    ADD COLUMN bot_reason     text,
    ADD COLUMN asn            bigint,
    ADD COLUMN as_org         text;

-- New columns go at the end: CREATE OR REPLACE VIEW may only append.
CREATE OR REPLACE VIEW herd.pages AS
SELECT message_id, source_id, anonymous_id, user_id, "timestamp", received_at,
       event AS name, url, path, referrer, title, search,
       utm_source, utm_medium, utm_campaign, utm_term, utm_content,
       ip, country, region, city, browser, browser_version, os, device_type, is_bot,
       session_id, properties, context,
       referrer_host, referrer_class, gclid, fbclid, os_version, bot_reason, asn, as_org
FROM herd.events WHERE type = 'page';

CREATE OR REPLACE VIEW herd.tracks AS
SELECT message_id, source_id, anonymous_id, user_id, "timestamp", received_at,
       event, url, path, ip, country, region, city, browser, os, device_type, is_bot,
       session_id, properties, context,
       referrer_host, referrer_class, utm_source, utm_medium, utm_campaign, bot_reason
FROM herd.events WHERE type = 'track';

-- jsonb_merge folds objects left to right, later keys winning: with ORDER BY
-- "timestamp" it gives the latest value of every trait in a batch.
CREATE AGGREGATE herd.jsonb_merge(jsonb) (SFUNC = jsonb_concat, STYPE = jsonb, INITCOND = '{}');

-- One row per identified user, kept current by the writer from identify
-- calls. traits_at is the time of the newest identify merged: an older
-- identify arriving late fills only traits the user does not have yet.
CREATE TABLE herd.users (
    source_id  bigint NOT NULL,
    user_id    text NOT NULL,
    traits     jsonb NOT NULL DEFAULT '{}',
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    traits_at  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, user_id)
);

-- anonymous id -> user id links, from identify (anonymousId + userId) and
-- alias (previousId -> userId). One anonymous id may belong to several users
-- (a shared computer), so the link itself is the key.
CREATE TABLE herd.identities (
    source_id    bigint NOT NULL,
    anonymous_id text NOT NULL,
    user_id      text NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    PRIMARY KEY (source_id, anonymous_id, user_id)
);
CREATE INDEX identities_user ON herd.identities (source_id, user_id);

CREATE TABLE herd.groups (
    source_id  bigint NOT NULL,
    group_id   text NOT NULL,
    traits     jsonb NOT NULL DEFAULT '{}',
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    traits_at  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, group_id)
);

-- Who was put in which group: member_id is the user id, or the anonymous id
-- of a group call made before identification.
CREATE TABLE herd.group_members (
    source_id  bigint NOT NULL,
    group_id   text NOT NULL,
    member_id  text NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (source_id, group_id, member_id)
);

-- Every event with its session. A session is the client's own session id
-- when it sent one; otherwise a run of events of one visitor with no gap of
-- 30 minutes or more. Derived here, at query time, rather than stamped by the
-- collector or the writer: events arrive out of order (offline devices,
-- retries, replays), and a late event can join two sessions or start an
-- earlier one. Computing over the stored events is always right and costs
-- the hot insert path nothing. The derived id is the visitor and the
-- session's first event time, so it is stable as long as no earlier event
-- of the same session turns up. Filter on source_id or anonymous_id to let
-- Postgres narrow the scan; a filter on "timestamp" alone is applied after
-- the window functions, as it must be for the gaps to be right.
CREATE VIEW herd.event_sessions AS
WITH keyed AS (
    SELECT e.*, coalesce(e.anonymous_id, e.user_id) AS visitor_id
    FROM herd.events e
    WHERE e.type IN ('page', 'screen', 'track')
), gaps AS (
    SELECT k.*,
           CASE WHEN lag(k."timestamp") OVER w IS NULL
                  OR k."timestamp" - lag(k."timestamp") OVER w >= interval '30 minutes'
                THEN 1 ELSE 0 END AS starts_session
    FROM keyed k
    WINDOW w AS (PARTITION BY k.source_id, k.visitor_id ORDER BY k."timestamp", k.message_id)
), numbered AS (
    SELECT g.*,
           sum(g.starts_session) OVER (PARTITION BY g.source_id, g.visitor_id ORDER BY g."timestamp", g.message_id
                                       ROWS UNBOUNDED PRECEDING) AS session_number
    FROM gaps g
)
SELECT n.message_id, n.source_id, n.type, n.event, n.anonymous_id, n.user_id, n.visitor_id, n."timestamp",
       n.url, n.path, n.referrer, n.referrer_host, n.referrer_class,
       n.utm_source, n.utm_medium, n.utm_campaign, n.utm_term, n.utm_content, n.gclid, n.fbclid,
       n.country, n.region, n.city, n.browser, n.os, n.device_type, n.is_bot,
       coalesce(n.session_id,
                n.visitor_id || ':' || to_char(min(n."timestamp") OVER s AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS.US')) AS session_id,
       n.session_id IS NOT NULL AS client_session
FROM numbered n
WINDOW s AS (PARTITION BY n.source_id, n.visitor_id, n.session_number);

-- One row per session: when, how long, how the visitor arrived (landing
-- page, referrer, campaign of the first event) and whether it was a bot.
CREATE VIEW herd.sessions AS
SELECT source_id, session_id,
       min(visitor_id) AS visitor_id,
       max(user_id) AS user_id,
       min("timestamp") AS started_at,
       max("timestamp") AS ended_at,
       max("timestamp") - min("timestamp") AS duration,
       count(*) AS events,
       count(*) FILTER (WHERE type = 'page') AS pages,
       (array_agg(path ORDER BY "timestamp") FILTER (WHERE type = 'page'))[1] AS landing_path,
       (array_agg(url ORDER BY "timestamp") FILTER (WHERE type = 'page'))[1] AS landing_url,
       (array_agg(referrer_host ORDER BY "timestamp"))[1] AS referrer_host,
       (array_agg(referrer_class ORDER BY "timestamp"))[1] AS referrer_class,
       (array_agg(utm_source ORDER BY "timestamp"))[1] AS utm_source,
       (array_agg(utm_medium ORDER BY "timestamp"))[1] AS utm_medium,
       (array_agg(utm_campaign ORDER BY "timestamp"))[1] AS utm_campaign,
       (array_agg(country ORDER BY "timestamp"))[1] AS country,
       (array_agg(device_type ORDER BY "timestamp"))[1] AS device_type,
       bool_or(is_bot) AS is_bot
FROM herd.event_sessions
GROUP BY source_id, session_id;

-- The per-event views `herd views refresh` created. A relation in schema herd
-- that is not listed here is never replaced or dropped by it.
CREATE TABLE herd.event_views (
    view_name    text PRIMARY KEY,
    event        text NOT NULL,
    columns      jsonb NOT NULL DEFAULT '[]',
    refreshed_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event)
);
