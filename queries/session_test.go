package queries

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A saved query run as an analyst leaves nothing in a session herd uses
// again. Before, the run shared herd's pool: the analyst's SQL replaced the
// statement pgx had prepared (and cached) for herd's INSERT INTO
// herd.query_runs with one calling the analyst's function, which Run then
// executed as herd (here: making the analyst a superuser). Session advisory
// locks taken by the query outlived the run as well.
func TestRunAsLeavesNoSessionState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _, _ := setup(t, Config{})
	// One connection, so Run's own statements go where the query ran.
	cfg := db.Config().Copy()
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := New(pool, quietLog(), Config{})
	alice := analyst(t, db, "alice")
	ac := pgxConnect(t, alice.URL)
	s := pgx.Identifier{alice.Name}.Sanitize()
	for _, q := range []string{
		`CREATE FUNCTION ` + s + `.pwn() RETURNS bigint LANGUAGE plpgsql AS $$
		BEGIN
			EXECUTE format('ALTER ROLE %I SUPERUSER', '` + alice.Name + `');
			RETURN 1;
		END $$`,
		// Replaces every prepared statement of herd's that writes a
		// snapshot, and holds a session lock.
		`CREATE FUNCTION ` + s + `.hijack() RETURNS int LANGUAGE plpgsql AS $$
		DECLARE p record; n int := 0;
		BEGIN
			FOR p IN SELECT name, parameter_types FROM pg_prepared_statements
				WHERE statement LIKE '%herd.query_runs%' AND cardinality(parameter_types) > 0 LOOP
				EXECUTE format('DEALLOCATE %I', p.name);
				EXECUTE format('PREPARE %I(%s) AS SELECT ` + s + `.pwn() AS id', p.name, array_to_string(p.parameter_types::text[], ','));
				n := n + 1;
			END LOOP;
			PERFORM pg_advisory_lock(424242);
			RETURN n;
		END $$`,
	} {
		if _, err := ac.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// The first run makes pgx prepare (and cache) the snapshot INSERT.
	for _, q := range []struct{ name, sql string }{{"prime", "SELECT 1"}, {"hijack", "SELECT " + s + ".hijack()"}, {"after", "SELECT 2"}} {
		if err := store.SaveAs(ctx, q.name, q.sql, 0, alice.Name); err != nil {
			t.Fatal(err)
		}
		if r, err := store.Run(ctx, q.name); err != nil || r.Error != "" {
			t.Fatalf("run %s: %v %s", q.name, err, r.Error)
		}
	}
	var super bool
	if err := db.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = $1", alice.Name).Scan(&super); err != nil {
		t.Fatal(err)
	}
	if super {
		t.Errorf("analyst %s became a superuser: herd executed a statement her saved query prepared", alice.Name)
	}
	// The lock goes with the connection; the backend may need a moment to exit.
	var locked bool
	for range 50 {
		if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242 AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))").Scan(&locked); err != nil {
			t.Fatal(err)
		}
		if !locked {
			break
		}
		_, _ = db.Exec(ctx, "SELECT pg_sleep(0.02)")
	}
	if locked {
		t.Error("the session advisory lock the query took outlived its run")
	}
}
