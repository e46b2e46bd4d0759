package replicate

import (
	"context"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
)

// Issue 15, finding 3: refresh recreates an analyst's materialized view as
// the analyst, so a function in it does not run with herd's privileges.
func TestFDWRefreshRecreatesViewsAsTheirOwner(t *testing.T) {
	t.Parallel()
	srcURL := pgtest.New(t)
	src := pgtest.Pool(t, srcURL)
	wh := pgtest.Pool(t, newDB(t, warehouseCluster(t)))
	ctx := ctxT(t, time.Minute)
	exec(t, src, "CREATE TABLE customers (id int PRIMARY KEY, name text); INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 3) g")
	group := uniqueGroup()
	if err := Add(ctx, wh, Config{SourceURL: srcURL, Tables: []string{"customers"}, Mode: ModeFDW, IntoSchema: "app_fdw", AnalystsGroup: group}); err != nil {
		t.Fatalf("add fdw: %v", err)
	}
	// An analyst's schema, a function that notes who runs it, and a
	// materialized view over the foreign table that calls it.
	exec(t, wh, `CREATE ROLE mallory IN ROLE `+quote(group)+`;
		CREATE SCHEMA mallory AUTHORIZATION mallory;
		CREATE TABLE herd_only (who text);
		SET ROLE mallory;
		CREATE FUNCTION mallory.who() RETURNS text LANGUAGE plpgsql VOLATILE AS $$ BEGIN RETURN current_user; END $$;
		CREATE MATERIALIZED VIEW mallory.mv AS SELECT id, mallory.who() AS ran_as FROM app_fdw.customers;
		CREATE VIEW mallory.v AS SELECT id, mallory.who() AS ran_as FROM app_fdw.customers;
		RESET ROLE`)
	if _, err := RefreshWith(ctx, wh, RefreshConfig{AnalystsGroup: group}); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	var ranAs, owner string
	if err := wh.QueryRow(ctx, "SELECT min(ran_as), (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'mallory.mv'::regclass) FROM mallory.mv").Scan(&ranAs, &owner); err != nil {
		t.Fatal(err)
	}
	if ranAs != "mallory" || owner != "mallory" {
		t.Errorf("after refresh the materialized view's function ran as %q (owner %q); want mallory", ranAs, owner)
	}

	// A function that writes where only herd may: the refresh fails,
	// naming the view and its owner, and nothing is written.
	exec(t, wh, `SET ROLE mallory;
		CREATE FUNCTION mallory.spill() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
		BEGIN
			INSERT INTO public.herd_only VALUES (current_user);
			RETURN 1;
		END $$;
		CREATE MATERIALIZED VIEW mallory.mv2 AS SELECT id, mallory.spill() AS s FROM app_fdw.customers WITH NO DATA;
		RESET ROLE`)
	_, err := RefreshWith(ctx, wh, RefreshConfig{AnalystsGroup: group})
	if n := queryInt(t, wh, "SELECT count(*) FROM public.herd_only"); n != 0 {
		t.Errorf("a function in an analyst's view wrote %d rows as herd during refresh", n)
	}
	if err == nil || !containsAll(err.Error(), "mallory.mv2", "as its owner mallory", "permission denied") {
		t.Errorf("refresh with a view whose function writes where its owner may not: err = %v, want a failure naming mallory.mv2 and its owner", err)
	}
}

// Issue 15, finding 8: rows written into the source's DDL log by anyone who
// may insert there reach the warehouse's trigger, which runs as a
// superuser in the apply worker. Crafted types and generated expressions
// run no SQL there; a real ADD COLUMN after them still applies, and a real
// generated column is reported for an operator rather than added (its
// expression could call any function).
func TestDriftLogRowsRunNoSQL(t *testing.T) {
	t.Parallel()
	p := newPair(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	exec(t, p.src, "CREATE TABLE t (id int PRIMARY KEY, a text); INSERT INTO t VALUES (1, 'one')")
	if err := Add(ctx, p.wh, Config{SourceURL: p.srcURL, Tables: []string{"t"}}); err != nil {
		t.Fatalf("add: %v", err)
	}
	crafted := []string{
		`{"name": "x1", "target": "text; CREATE TABLE public.pwned_type ()", "generated": "", "default": ""}`,
		`{"name": "x2", "target": "integer DEFAULT 1, ADD COLUMN x2b text", "generated": "", "default": ""}`,
		`{"name": "x3", "target": "integer", "generated": "1) STORED; CREATE TABLE public.pwned_gen (); --", "default": ""}`,
		`{"name": "x4", "target": "text", "generated": "'(' ) STORED, ADD COLUMN x4b text GENERATED ALWAYS AS (')'", "default": ""}`,
		`{"name": "x5", "target": "text", "generated": "", "default": "", "missing": "a'); CREATE TABLE public.pwned_missing (); --"}`,
		`{"name": null, "target": "text"}`,
		`"not an object"`,
	}
	base := `{"name": "id", "target": "integer", "generated": "", "default": ""}, {"name": "a", "target": "text", "generated": "", "default": ""}`
	for _, c := range crafted {
		exec(t, p.src, "INSERT INTO herd_replicate.herd_ddl_log (command_tag, schema_name, table_name, columns) VALUES ('ALTER TABLE', 'public', 't', $1::jsonb)",
			"["+base+", "+c+"]")
	}
	// A real change afterwards, used in its own transaction.
	exec(t, p.src, `BEGIN; ALTER TABLE t ADD COLUMN price numeric(8,2), ADD COLUMN total numeric GENERATED ALWAYS AS (price * 2) STORED;
		INSERT INTO t (id, a, price) VALUES (2, 'two', 1.50); COMMIT`)
	src, err := connectSource(ctx, p.srcURL)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(context.Background())
	if err := WaitApplied(ctx, p.wh, src, "herd", 45*time.Second); err != nil {
		t.Errorf("a crafted log row stopped replication: %v", err)
	}
	if n := queryInt(t, p.wh, "SELECT count(*) FROM pg_class WHERE relname LIKE 'pwned%'"); n != 0 {
		t.Errorf("%d tables created by SQL from the DDL log", n)
	}
	var cols string
	if err := p.wh.QueryRow(ctx, `SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute
		WHERE attrelid = 'public.t'::regclass AND attnum > 0 AND NOT attisdropped`).Scan(&cols); err != nil {
		t.Fatal(err)
	}
	// x5's "missing" value is a quoted literal: the column is added, its
	// fast default is refused as data, never run.
	if want := "id integer, a text, x5 text, price numeric(8,2)"; cols != want {
		t.Errorf("warehouse columns of t: %s; want %s", cols, want)
	}
	if n := queryInt(t, p.wh, "SELECT count(*) FROM public.t WHERE id = 2 AND price = 1.50"); n != 1 {
		t.Errorf("the row written with the real ADD COLUMN: %d on the warehouse, want 1", n)
	}
	if n := queryInt(t, p.wh, "SELECT count(*) FROM herd.replicate_drift WHERE kind = 'refused'"); n != 5 {
		t.Errorf("%d refused drift rows, want 5 (x1, x2, x3, x4, total)", n)
	}
	if n := queryInt(t, p.wh, "SELECT coalesce(sum(apply_error_count), 0) FROM pg_stat_subscription_stats"); n != 0 {
		t.Errorf("%d apply errors, want 0", n)
	}
}
