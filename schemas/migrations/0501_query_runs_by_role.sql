-- After each run the stored snapshots of the saver's queries are added up
-- (a role keeps a bounded number of bytes); this finds them without
-- reading every role's runs.
CREATE INDEX query_runs_run_as ON herd.query_runs (run_as, id DESC);
