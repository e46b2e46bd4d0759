package analysts

import (
	"context"
	"strings"
	"testing"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// herd.rejects_redacted redacts in the reader's session: before, an
// analyst who put her own schema before pg_catalog on her search_path and
// defined lower() (or replace()) there read every write key back.
func TestRejectsRedactedIgnoresCallerSearchPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := migrated(t, pgtest.New(t))
	const key = "wk_secret_searchpath"
	if _, err := db.Exec(ctx, `INSERT INTO herd.rejects (source_id, reason, raw, received_at)
		VALUES (1, 'bad', '{"writeKey": "`+key+`", "batch": [{"write_key": "`+key+`"}]}', now())`); err != nil {
		t.Fatal(err)
	}
	a := addAnalyst(t, db, "shadow")
	s := pgx.Identifier{a.Name}.Sanitize()
	ac := connectAs(t, a.URL)
	for _, q := range []string{
		"CREATE FUNCTION " + s + ".lower(text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'not it'::text $$",
		"CREATE FUNCTION " + s + ".replace(text, text, text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'not it'::text $$",
		"SET search_path = " + s + ", pg_catalog",
	} {
		if _, err := ac.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, q := range []string{
		"SELECT raw::text FROM herd.rejects_redacted",
		"SELECT herd.redact_keys(raw)::text FROM herd.rejects_redacted",
	} {
		var raw string
		if err := ac.QueryRow(ctx, q).Scan(&raw); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if strings.Contains(raw, key) {
			t.Errorf("%s with the analyst's lower() first on the search path: %s", q, raw)
		}
	}
}
