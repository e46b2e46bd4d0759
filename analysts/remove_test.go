package analysts

import (
	"context"
	"strings"
	"testing"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// herd analysts remove without --drop-objects keeps the analyst's objects
// but gives them to a role that can read nothing: before, they became
// herd's, so a view of the analyst's over herd.sources.write_key showed
// the keys to whoever she had granted it to, and her SECURITY DEFINER
// function ran as herd for anyone.
func TestRemoveKeepsObjectsPowerless(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := migrated(t, pgtest.New(t))
	var dbname string
	if err := db.QueryRow(ctx, "SELECT current_database()").Scan(&dbname); err != nil {
		t.Fatal(err)
	}
	retired := RetiredName(dbname)
	t.Cleanup(func() { dropRole(t, db, retired) })
	const key = "wk_secret_retired"
	if _, err := db.Exec(ctx, "INSERT INTO herd.sources (name, write_key) VALUES ('web', '"+key+"')"); err != nil {
		t.Fatal(err)
	}
	alice, bob := addAnalyst(t, db, "alice"), addAnalyst(t, db, "bob")
	a := pgx.Identifier{alice.Name}.Sanitize()
	b := pgx.Identifier{bob.Name}.Sanitize()
	for _, q := range []string{
		// Creating a view checks no privilege on what it reads.
		"CREATE VIEW " + a + ".keys AS SELECT write_key FROM herd.sources",
		"CREATE FUNCTION " + a + ".who() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text'",
		"CREATE TABLE " + a + ".work AS SELECT 42 AS answer",
		"GRANT USAGE ON SCHEMA " + a + " TO " + b,
		"GRANT SELECT ON " + a + ".keys TO " + b,
	} {
		if _, err := connectAs(t, alice.URL).Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := Remove(ctx, db, quietLog(), alice.Name, false); err != nil {
		t.Fatalf("remove keeping objects: %v", err)
	}
	var owner string
	var login, super bool
	if err := db.QueryRow(ctx, `SELECT r.rolname, r.rolcanlogin, r.rolsuper FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
		WHERE c.oid = $1::regclass`, alice.Name+".work").Scan(&owner, &login, &super); err != nil {
		t.Fatalf("the kept table is gone: %v", err)
	}
	if owner != retired || login || super {
		t.Errorf("kept objects belong to %s (login %v, superuser %v), want %s, which cannot log in", owner, login, super, retired)
	}
	bc := connectAs(t, bob.URL)
	var got string
	if err := bc.QueryRow(ctx, "SELECT string_agg(write_key, ',') FROM "+a+".keys").Scan(&got); err == nil || strings.Contains(got, key) {
		t.Errorf("another analyst reads the write keys through the removed analyst's view: %q, %v", got, err)
	}
	if err := bc.QueryRow(ctx, "SELECT "+a+".who()").Scan(&got); err == nil {
		t.Errorf("another analyst runs the removed analyst's SECURITY DEFINER function, as %s", got)
	}
	// Even the owner reads nothing through the view.
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{retired}.Sanitize()); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT string_agg(write_key, ',') FROM "+a+".keys").Scan(&got)
	})
	if err == nil {
		t.Errorf("the retired analysts' role reads the write keys: %q", got)
	}
}

// An analysts group that exists must be a group: Add (and herd replicate)
// refuse a role that can log in or is an analyst, which another database's
// analyst may have taken the name of.
func TestAddRefusesLoginRoleAsGroup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := migrated(t, pgtest.New(t))
	mallory := addAnalyst(t, db, "mallory")
	_, err := Add(ctx, db, quietLog(), Config{Group: mallory.Name}, "victim_"+mallory.Name[len("mallory_"):])
	t.Cleanup(func() { dropRole(t, db, "victim_"+mallory.Name[len("mallory_"):]) })
	if err == nil || !strings.Contains(err.Error(), "not an analysts group") {
		t.Fatalf("add with a login role as the group: %v, want refused", err)
	}
	var member bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname = $1)", mallory.Name).Scan(&member); err != nil {
		t.Fatal(err)
	}
	if member {
		t.Errorf("a role was made a member of analyst %s", mallory.Name)
	}
}
