-- Functions of herd's that analysts can call run in the caller's session,
-- with the caller's search_path: herd.rejects_redacted reads herd.rejects
-- with its owner's privileges but redacts in the analyst's session, so an
-- analyst who put a schema of hers before pg_catalog and defined lower()
-- there read the write keys back. Each function now fixes its search_path
-- (pg_catalog, then pg_temp, so neither a schema of the caller's nor a
-- temporary object can stand in for a built-in), and names herd's own
-- objects with their schema.

CREATE OR REPLACE FUNCTION herd.redact_keys(j jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE pg_catalog.jsonb_typeof(j)
        WHEN 'object' THEN coalesce((SELECT pg_catalog.jsonb_object_agg(k, herd.redact_keys(v)) FROM pg_catalog.jsonb_each(j) AS e(k, v)
                                     WHERE pg_catalog.lower(pg_catalog.replace(k, '_', '')) OPERATOR(pg_catalog.<>) 'writekey'), '{}'::jsonb)
        WHEN 'array' THEN coalesce((SELECT pg_catalog.jsonb_agg(herd.redact_keys(v) ORDER BY o)
                                    FROM pg_catalog.jsonb_array_elements(j) WITH ORDINALITY AS a(v, o)), '[]'::jsonb)
        ELSE j END
$$;

CREATE OR REPLACE FUNCTION herd.redacted_raw(raw text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN herd.redact_keys(raw::jsonb);
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- The others analysts may call, or that herd runs on their behalf; their
-- bodies name herd's objects with the schema already.
ALTER FUNCTION herd.analysts_group() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION herd.user_query_time_rows() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION herd.grant_analyst_read(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION herd.adopt_legacy_analysts_group(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION herd.grant_event_views(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION herd.grant_event_view(text) SET search_path = pg_catalog, pg_temp;
