-- The per-event views (herd.track_<name>, made by herd views refresh) hold
-- nothing but events, like herd.tracks: every analyst who reads herd reads
-- them. They are made after the analyst, so the grant is given when a view
-- is made (herd.grant_event_view) and when an analyst is added
-- (herd.grant_event_views); herd.grant_analyst_read names fixed tables only.

-- grant_event_views lets grantee read every per-event view there is.
CREATE FUNCTION herd.grant_event_views(grantee text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v text;
BEGIN
    FOR v IN SELECT view_name FROM herd.event_views LOOP
        IF to_regclass(format('herd.%I', v)) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON herd.%I TO %I', v, grantee);
        END IF;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION herd.grant_event_views(text) FROM PUBLIC;

-- grant_event_view lets every analyst who may use schema herd read one view.
CREATE FUNCTION herd.grant_event_view(view_name text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a text;
BEGIN
    IF to_regclass(format('herd.%I', view_name)) IS NULL THEN
        RETURN;
    END IF;
    FOR a IN SELECT h.name FROM herd.analysts h JOIN pg_roles r ON r.rolname = h.name
             WHERE has_schema_privilege(r.oid, 'herd', 'USAGE') LOOP
        EXECUTE format('GRANT SELECT ON herd.%I TO %I', view_name, a);
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION herd.grant_event_view(text) FROM PUBLIC;

SELECT herd.grant_event_view(view_name) FROM herd.event_views;
