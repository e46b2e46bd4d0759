package analysts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Issue 15, finding 2: logged in as an analyst made by Add, no credential
// herd keeps is readable, nor anything computed with herd's privileges,
// while the rest of herd stays readable.
func TestAnalystCannotReadSecrets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := migrated(t, pgtest.New(t))
	const key, password = "wk_secret_0123456789", "app-db-password"
	if _, err := db.Exec(ctx, `
		INSERT INTO herd.sources (name, write_key, kind) VALUES ('web', '`+key+`', 'server');
		INSERT INTO herd.replicate_subscriptions (name, mode, source_url) VALUES ('app', 'logical', 'postgres://app:`+password+`@db/app');
		INSERT INTO herd.rejects (source_id, reason, raw, received_at)
			VALUES (1, 'bad', '{"writeKey": "`+key+`", "event": "Signed Up", "context": {"write_key": "`+key+`"}}', now()),
			       (1, 'not json', 'writeKey=`+key+`', now());
		INSERT INTO herd.saved_queries (name, sql) VALUES ('keys', 'SELECT write_key FROM herd.sources');
		INSERT INTO herd.query_runs (query_name, started_at, duration_ms, sql, columns, rows, row_count, run_as)
			VALUES ('keys', now(), 1, 'SELECT write_key FROM herd.sources', '["write_key"]', '[["`+key+`"]]', 1, current_user)`); err != nil {
		t.Fatal(err)
	}
	a := addAnalyst(t, db, "eve")
	// A table herd adds to its schema after the analyst exists stays
	// private: no default privileges leak it.
	if _, err := db.Exec(ctx, "CREATE TABLE herd.later_tokens (token text); INSERT INTO herd.later_tokens VALUES ('"+key+"')"); err != nil {
		t.Fatal(err)
	}
	ac := connectAs(t, a.URL)
	denied := []string{
		"SELECT write_key FROM herd.sources",
		"SELECT * FROM herd.sources",
		"SELECT source_url FROM herd.replicate_subscriptions",
		"SELECT * FROM herd.replicate_subscriptions",
		"SELECT raw FROM herd.rejects",
		"SELECT * FROM herd.later_tokens",
		"SELECT * FROM herd.message_ids",
	}
	for _, q := range denied {
		_, err := ac.Exec(ctx, q)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s as an analyst: err = %v, want SQLSTATE 42501", q, err)
		}
	}
	// What herd computed with its own privileges is not shown either, and
	// no readable column, view or table holds the key.
	for _, q := range []string{
		"SELECT count(*) FROM herd.query_runs",
		"SELECT count(*) FROM herd.saved_queries",
		"SELECT count(*) FROM herd.rejects_redacted WHERE raw::text LIKE '%" + key + "%'",
		"SELECT count(*) FROM herd.sources WHERE name = '" + key + "'",
	} {
		var n int
		if err := ac.QueryRow(ctx, q).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s as an analyst: %d, %v; want 0", q, n, err)
		}
	}
	readable := []struct{ sql, want string }{
		{"SELECT name FROM herd.sources", "web"},
		{"SELECT name || ' ' || mode FROM herd.replicate_subscriptions", "app logical"},
		{"SELECT string_agg(reason, ',' ORDER BY id) FROM herd.rejects", "bad,not json"},
		{"SELECT string_agg(coalesce(raw::text, 'NULL'), ',' ORDER BY id) FROM herd.rejects_redacted", `{"event": "Signed Up", "context": {}},NULL`},
	}
	for _, c := range readable {
		var got string
		if err := ac.QueryRow(ctx, c.sql).Scan(&got); err != nil || got != c.want {
			t.Errorf("%s as an analyst: %q, %v; want %q", c.sql, got, err, c.want)
		}
	}
	// Every column of every relation in herd the analyst may read, read in
	// full: none holds the key or the password.
	rows, _ := db.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname), quote_ident(a.attname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid
		WHERE n.nspname = 'herd' AND c.relkind IN ('r', 'v', 'm', 'p') AND a.attnum > 0 AND NOT a.attisdropped
		  AND has_column_privilege($1, c.oid, a.attnum, 'SELECT')`, a.Name)
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var c [2]string
		err := r.Scan(&c[0], &c[1])
		return c, err
	})
	if err != nil || len(cols) < 50 {
		t.Fatalf("readable columns: %d, %v", len(cols), err)
	}
	for _, c := range cols {
		var leaks bool
		q := "SELECT EXISTS (SELECT FROM " + c[0] + " WHERE " + c[1] + "::text LIKE '%" + key + "%' OR " + c[1] + "::text LIKE '%" + password + "%')"
		if err := ac.QueryRow(ctx, q).Scan(&leaks); err != nil || leaks {
			t.Errorf("%s.%s as an analyst: leaks=%v, %v", c[0], c[1], leaks, err)
		}
	}
}

// Issue 15, finding 11f: each database has its own analysts group, so an
// analyst of one warehouse reads nothing another warehouse on the same
// server grants its analysts.
func TestAnalystsGroupPerDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db1, db2 := migrated(t, pgtest.New(t)), migrated(t, pgtest.New(t))
	add := func(db *pgxpool.Pool, prefix string) (Analyst, string) {
		t.Helper()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		name := prefix + "_" + hex.EncodeToString(b)
		var dbname, sqlGroup string
		if err := db.QueryRow(ctx, "SELECT current_database(), herd.analysts_group()").Scan(&dbname, &sqlGroup); err != nil {
			t.Fatal(err)
		}
		group := GroupName(dbname)
		if sqlGroup != group {
			t.Errorf("herd.analysts_group() = %q, analysts.GroupName = %q", sqlGroup, group)
		}
		t.Cleanup(func() { dropRole(t, db, group) })
		a, err := Add(ctx, db, quietLog(), Config{}, name) // the default group
		if err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		t.Cleanup(func() { dropRole(t, db, name) })
		return a, group
	}
	a1, g1 := add(db1, "one")
	a2, g2 := add(db2, "two")
	if g1 == g2 {
		t.Fatalf("both databases use the analysts group %s", g1)
	}
	for _, c := range []struct {
		db          *pgxpool.Pool
		role, group string
		wantMember  bool
	}{{db1, a1.Name, g1, true}, {db1, a1.Name, g2, false}, {db1, a2.Name, g2, true}, {db1, a2.Name, g1, false}} {
		var member bool
		if err := c.db.QueryRow(ctx, "SELECT pg_has_role($1, $2, 'MEMBER')", c.role, c.group).Scan(&member); err != nil || member != c.wantMember {
			t.Errorf("%s member of %s: %v, %v; want %v", c.role, c.group, member, err, c.wantMember)
		}
	}
	// What the second warehouse grants its analysts, the first one's
	// analyst cannot read, though PUBLIC may connect to every database.
	if _, err := db2.Exec(ctx, "CREATE TABLE public.shared AS SELECT 1 AS one; GRANT SELECT ON public.shared TO "+pgx.Identifier{g2}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	u2 := strings.Replace(a1.URL, "/"+db1.Config().ConnConfig.Database+"?", "/"+db2.Config().ConnConfig.Database+"?", 1)
	var n int
	if err := connectAs(t, a2.URL).QueryRow(ctx, "SELECT one FROM public.shared").Scan(&n); err != nil {
		t.Fatalf("the second warehouse's analyst reads its group's table: %v", err)
	}
	_, err := connectAs(t, u2).Exec(ctx, "SELECT one FROM public.shared")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("the first warehouse's analyst reads the second's table: err = %v, want SQLSTATE 42501", err)
	}

	// A warehouse that used the server-wide group moves to its own: its
	// grants and its analysts, and nothing of another database's.
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	legacy := "legacy_" + hex.EncodeToString(b)
	t.Cleanup(func() { dropRole(t, db1, legacy) })
	l := pgx.Identifier{legacy}.Sanitize()
	if _, err := db1.Exec(ctx, "CREATE ROLE "+l+" NOLOGIN; CREATE TABLE public.old AS SELECT 1 AS one; GRANT SELECT ON public.old TO "+l+
		"; GRANT "+l+" TO "+pgx.Identifier{a1.Name}.Sanitize()+"; GRANT "+l+" TO "+pgx.Identifier{a2.Name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if _, err := db1.Exec(ctx, "SELECT herd.adopt_legacy_analysts_group($1)", legacy); err != nil {
		t.Fatalf("adopt legacy group: %v", err)
	}
	var groupReads, legacyReads, a1Legacy, a2Legacy bool
	if err := db1.QueryRow(ctx, `SELECT has_table_privilege($1, 'public.old', 'SELECT'), has_table_privilege($2, 'public.old', 'SELECT'),
			pg_has_role($3, $2, 'MEMBER'), pg_has_role($4, $2, 'MEMBER')`, g1, legacy, a1.Name, a2.Name).Scan(&groupReads, &legacyReads, &a1Legacy, &a2Legacy); err != nil {
		t.Fatal(err)
	}
	if !groupReads || legacyReads || a1Legacy || !a2Legacy {
		t.Errorf("after adopting %s: group reads %v (want true), legacy reads %v (want false), this database's analyst still in legacy %v (want false), the other database's analyst in legacy %v (want true)",
			legacy, groupReads, legacyReads, a1Legacy, a2Legacy)
	}
}

// GroupName stays within Postgres's 63 bytes and agrees with
// herd.analysts_group() for a name that does not fit.
func TestGroupNameLongDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "herd_test_" + hex.EncodeToString(b) + "_" + strings.Repeat("é", 20)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), pgtest.AdminURL())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	cfg, err := pgxpool.ParseConfig(pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Database = name
	db, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	var sqlName string
	if err := db.QueryRow(ctx, "SELECT CASE WHEN octet_length('herd_analysts_' || current_database()) <= 63 THEN 'herd_analysts_' || current_database() ELSE 'herd_analysts_' || left(encode(sha256(convert_to(current_database(), 'UTF8')), 'hex'), 32) END").Scan(&sqlName); err != nil {
		t.Fatal(err)
	}
	if got := GroupName(name); got != sqlName || len(got) > 63 {
		t.Fatalf("GroupName(%q) = %q (%d bytes), SQL says %q", name, got, len(got), sqlName)
	}
}
