-- Per-source rate limit in events per second; NULL means the collector's
-- default (--rate-limit), 0 means unlimited.
ALTER TABLE herd.sources ADD COLUMN rate_limit double precision CHECK (rate_limit IS NULL OR rate_limit >= 0);
