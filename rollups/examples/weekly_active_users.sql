-- Weekly totals, read from the daily rollup (applied after it).
-- refresh: 1h
CREATE MATERIALIZED VIEW rollups.weekly_active_users AS
SELECT date_trunc('week', day)::date AS week, source_id, sum(events) AS events
FROM rollups.daily_active_users
GROUP BY 1, 2;
CREATE UNIQUE INDEX ON rollups.weekly_active_users (week, source_id);
