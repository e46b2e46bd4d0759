-- Daily active users per source, from herd.events.
-- refresh: 15m
CREATE MATERIALIZED VIEW rollups.daily_active_users AS
SELECT date_trunc('day', "timestamp")::date AS day,
       source_id,
       count(DISTINCT coalesce(user_id, anonymous_id)) AS users,
       count(*) AS events
FROM herd.events
WHERE NOT is_bot
GROUP BY 1, 2;
-- A unique index on plain columns lets refreshes run CONCURRENTLY.
CREATE UNIQUE INDEX ON rollups.daily_active_users (day, source_id);
