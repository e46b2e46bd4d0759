package replicate

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/analysts"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
)

// Rows in the source's DDL log are written by whoever may insert there, and
// the warehouse trigger applies them in the apply worker as a superuser. A
// hostile log neither runs code on the warehouse nor stops replication:
//   - a generated column whose expression calls an analyst's function is
//     refused and reported with the SQL, not added (before, the function ran
//     as superuser: the analyst made herself one);
//   - a row naming a warehouse table outside the subscription (herd.sources)
//     changes nothing (before, a generated column copied the write keys);
//   - a column name over 63 bytes, twice, and a row naming a view, are
//     recorded and skipped (before, the second ADD of the truncated name and
//     the ALTER of the view raised, and apply retried them forever).
func TestHostileDDLLog(t *testing.T) {
	t.Parallel()
	p := newPair(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	if _, err := schemas.Migrate(ctx, p.wh); err != nil {
		t.Fatal(err)
	}
	exec(t, p.wh, "INSERT INTO herd.sources (name, write_key) VALUES ('web', 'wk_secret_drift')")
	exec(t, p.src, "CREATE TABLE t (id int PRIMARY KEY, a text); INSERT INTO t VALUES (1, 'one')")
	if err := Add(ctx, p.wh, Config{SourceURL: p.srcURL, Tables: []string{"t"}}); err != nil {
		t.Fatalf("add: %v", err)
	}
	m, err := analysts.Add(ctx, p.wh, slog.New(slog.DiscardHandler), analysts.Config{}, "mallory")
	if err != nil {
		t.Fatal(err)
	}
	// f looks immutable, so Postgres accepts it in a generated column; it
	// calls g, which records who ran it and tries to make mallory a superuser.
	exec(t, pgtest.Pool(t, m.URL), `CREATE TABLE mallory.loot (who text, what text);
		GRANT INSERT ON mallory.loot TO PUBLIC;
		GRANT USAGE ON SCHEMA mallory TO PUBLIC;
		CREATE FUNCTION mallory.g(x text) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
		BEGIN
			INSERT INTO mallory.loot VALUES (current_user, x);
			BEGIN EXECUTE 'ALTER ROLE mallory SUPERUSER'; EXCEPTION WHEN others THEN NULL; END;
			RETURN 1;
		END $$;
		CREATE FUNCTION mallory.f(x anyelement) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
		BEGIN RETURN mallory.g(x::text); END $$`)
	exec(t, p.wh, "CREATE VIEW public.v AS SELECT 1 AS x")
	long := strings.Repeat("x", 70)
	base := `{"name": "id", "target": "integer"}, {"name": "a", "target": "text"}`
	logRows := []struct{ schema, table, cols string }{
		{"public", "t", "[" + base + `, {"name": "x6", "target": "integer", "generated": "mallory.f(id)"}]`},
		{"herd", "sources", `[{"name": "leak", "target": "integer", "generated": "mallory.f(write_key)"}]`},
		{"herd", "sources", `[{"name": "leak2", "target": "text"}]`},
		{"public", "t", "[" + base + `, {"name": "` + long + `", "target": "text"}]`},
		{"public", "t", "[" + base + `, {"name": "` + long + `", "target": "text"}]`},
		{"public", "v", `[{"name": "newcol", "target": "text"}]`},
		{"public", "v", `[{"name": "newcol", "target": "text"}]`},
	}
	for _, r := range logRows {
		exec(t, p.src, "INSERT INTO herd_replicate.herd_ddl_log (command_tag, schema_name, table_name, columns) VALUES ('ALTER TABLE', $1, $2, $3::jsonb)", r.schema, r.table, r.cols)
	}
	exec(t, p.src, "INSERT INTO t VALUES (2, 'two')")
	src, err := connectSource(ctx, p.srcURL)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(context.Background())
	if err := WaitApplied(ctx, p.wh, src, "herd", 45*time.Second); err != nil {
		t.Errorf("replication stalled on the hostile log rows: %v", err)
	}
	if n := queryInt(t, p.wh, "SELECT count(*) FROM public.t"); n != 2 {
		t.Errorf("warehouse has %d rows of t, want 2", n)
	}
	if n := queryInt(t, p.wh, "SELECT count(*) FROM pg_roles WHERE rolname = 'mallory' AND rolsuper"); n != 0 {
		t.Error("mallory became a superuser: the trigger ran her function")
	}
	if n := queryInt(t, p.wh, "SELECT count(*) FROM mallory.loot"); n != 0 {
		t.Errorf("mallory's function ran %d times in the apply worker", n)
	}
	if n := queryInt(t, p.wh, `SELECT count(*) FROM pg_attribute WHERE attrelid IN ('public.t'::regclass, 'herd.sources'::regclass, 'public.v'::regclass)
		AND (attname IN ('x6', 'leak', 'leak2', 'newcol') OR attname LIKE 'xxxxxxxxxx%') AND NOT attisdropped`); n != 0 {
		t.Errorf("%d columns from the hostile rows were added", n)
	}
	var fix string
	if err := p.wh.QueryRow(ctx, "SELECT fix FROM herd.replicate_drift WHERE kind = 'refused' AND detail LIKE 'generated column x6:%'").Scan(&fix); err != nil {
		t.Fatalf("the refused generated column is not in herd.replicate_drift: %v", err)
	}
	if want := "ALTER TABLE public.t ADD COLUMN x6 integer GENERATED ALWAYS AS (mallory.f(id)) STORED;"; fix != want {
		t.Errorf("fix for the generated column = %q, want %q", fix, want)
	}
	if n := queryInt(t, p.wh, "SELECT count(*) FROM herd.replicate_drift WHERE kind = 'refused' AND detail LIKE 'a column name of 70 bytes%'"); n != 2 {
		t.Errorf("%d refusals of the 70-byte column name recorded, want 2", n)
	}
	if n := queryInt(t, p.wh, "SELECT count(*) FROM herd.replicate_drift WHERE table_name IN ('herd.sources', 'public.v')"); n != 0 {
		t.Errorf("%d drift rows about tables outside the subscription, want 0", n)
	}
}
