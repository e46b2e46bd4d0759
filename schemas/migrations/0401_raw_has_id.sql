-- raw_has_id, rewritten: the first version looked only at userId,
-- anonymousId and previousId of an object or of the items of its "batch"
-- array, so a reject shaped otherwise (a bare array of events, a batch
-- object, a bare string, an id inside an array, a duplicate userId key,
-- which jsonb resolves to the last) survived a deletion; and for a raw text
-- that is not JSON it matched any substring, so deleting "erin" removed
-- katherine's rejects too.
--
-- Now a reject carries an id when:
--   - its JSON, anywhere in the document, has the id as a string value (or,
--     for an id that is a number, as a number value);
--   - or its text holds the id as a JSON string: "id", quoted exactly as
--     JSON writes it (this finds a value jsonb dropped for a duplicate key,
--     keys, and ids in text that is not JSON);
--   - or one of its string literals that uses escapes ("\u0065rin")
--     decodes to the id.
-- A value of another field equal to the id counts too: the reject names the
-- person, and deleting it is the safe side. A substring of a longer string
-- never counts. search_path is fixed, as for herd's other functions (0303).
CREATE OR REPLACE FUNCTION herd.raw_has_id(raw text, ids text[]) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j jsonb;
    id text;
    lit text;
    decoded text;
BEGIN
    IF raw IS NULL OR ids IS NULL THEN
        RETURN false;
    END IF;
    BEGIN
        j := raw::jsonb;
    EXCEPTION WHEN others THEN
        j := NULL;
    END;
    FOREACH id IN ARRAY ids LOOP
        CONTINUE WHEN id IS NULL OR id = '';
        IF pg_catalog.strpos(raw, pg_catalog.to_jsonb(id)::text) > 0 THEN
            RETURN true;
        END IF;
        IF j IS NOT NULL THEN
            IF pg_catalog.jsonb_path_exists(j, '$.** ? (@ == $id)', pg_catalog.jsonb_build_object('id', id)) THEN
                RETURN true;
            END IF;
            -- The collector takes a number as an id ("userId": 42 is "42").
            IF id ~ '^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$'
               AND pg_catalog.jsonb_path_exists(j, '$.** ? (@ == $id)', pg_catalog.jsonb_build_object('id', id::numeric)) THEN
                RETURN true;
            END IF;
        END IF;
    END LOOP;
    -- String literals written with escapes: decode each and compare.
    IF pg_catalog.strpos(raw, '\') > 0 THEN
        FOR lit IN SELECT m[1] FROM pg_catalog.regexp_matches(raw, '"((?:[^"\\]|\\.)*)"', 'g') AS m LOOP
            CONTINUE WHEN pg_catalog.strpos(lit, '\') = 0;
            BEGIN
                decoded := ('"' || lit || '"')::jsonb #>> '{}';
            EXCEPTION WHEN others THEN
                CONTINUE;
            END;
            IF decoded = ANY(ids) THEN
                RETURN true;
            END IF;
        END LOOP;
    END IF;
    RETURN false;
END $$;
