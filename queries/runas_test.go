package queries

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"github.com/herdhq/herd/analysts"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// analyst adds an analyst as herd analysts add does, in a group of its own
// (roles are server-wide), dropped with the test.
func analyst(t *testing.T, db *pgxpool.Pool, prefix string) analysts.Analyst {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name, group := prefix+"_"+hex.EncodeToString(b), "grp_"+prefix+"_"+hex.EncodeToString(b)
	drop := func(role string) {
		var exists bool
		if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil || !exists {
			return
		}
		if _, err := db.Exec(ctx, "DROP OWNED BY "+pgx.Identifier{role}.Sanitize()+" CASCADE; DROP ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Logf("drop role %s: %v", role, err)
		}
	}
	t.Cleanup(func() { drop(group) })
	a, err := analysts.Add(ctx, db, quietLog(), analysts.Config{Group: group}, name)
	if err != nil {
		t.Fatalf("add analyst: %v", err)
	}
	t.Cleanup(func() { drop(name) })
	return a
}

// Issue 15, finding 2: a saved query's result never shows more than the
// role that saved it could read itself, even when the SQL (or a function
// of the saver's it calls) tries to become herd again; and the snapshots
// are readable only by roles with the saver's privileges.
func TestSavedQueryRunsAsItsSaver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store, srv := setup(t, Config{})
	const key = "wk_secret_runas"
	exec(t, db, "INSERT INTO herd.sources (name, write_key) VALUES ('web', '"+key+"')")
	alice, bob := analyst(t, db, "alice"), analyst(t, db, "bob")
	ac := pgxConnect(t, alice.URL)
	schema := pgx.Identifier{alice.Name}.Sanitize()
	// A function of alice's that tries to go back to herd's role, then
	// reads the key.
	if _, err := ac.Exec(ctx, `CREATE FUNCTION `+schema+`.escalate() RETURNS text LANGUAGE plpgsql AS $$
		BEGIN
			PERFORM set_config('role', 'none', true);
			RETURN (SELECT string_agg(write_key, ',') FROM herd.sources);
		END $$`); err != nil {
		t.Fatal(err)
	}
	exec(t, db, "SELECT herd.ensure_partition((now() AT TIME ZONE 'UTC')::date); INSERT INTO herd.events (message_id, source_id, type, \"timestamp\", received_at) SELECT 'm' || g, 1, 'track', now(), now() FROM generate_series(1, 3) g")
	cases := []struct {
		name, sql string
		wantErr   string     // part of the stored error; "" for success
		wantRows  [][]string // "NULL" for NULL
	}{
		{"keys", "SELECT write_key FROM herd.sources", "permission denied", nil},
		{"escape", "SELECT " + schema + ".escalate()", "cannot set parameter", nil},
		{"escape-inline", "SELECT set_config('role', 'none', true), query_to_xml('SELECT write_key FROM herd.sources', false, false, '')", "cannot set parameter", nil},
		{"who", `SELECT current_user::text AS who, 'a,b' AS comma, NULL::text AS nothing, '' AS empty, '"q" \ (x)' AS odd, (SELECT count(*) FROM herd.events) AS n`, "",
			[][]string{{alice.Name, "a,b", "NULL", "", `"q" \ (x)`, "3"}}},
	}
	for _, c := range cases {
		if err := store.SaveAs(ctx, c.name, c.sql, 0, alice.Name); err != nil {
			t.Fatalf("save %s as %s: %v", c.name, alice.Name, err)
		}
		r, err := store.Run(ctx, c.name)
		if err != nil {
			t.Fatalf("run %s: %v", c.name, err)
		}
		if r.RunAs != alice.Name {
			t.Errorf("%s ran as %q, want %q", c.name, r.RunAs, alice.Name)
		}
		for _, row := range r.Rows {
			for _, v := range row {
				if v != nil && strings.Contains(*v, key) {
					t.Errorf("%s: the result shows the write key: %q", c.name, *v)
				}
			}
		}
		if c.wantErr != "" {
			if !strings.Contains(r.Error, c.wantErr) || len(r.Rows) != 0 {
				t.Errorf("%s: error %q with %d rows, want an error containing %q and no rows", c.name, r.Error, len(r.Rows), c.wantErr)
			}
			continue
		}
		var got [][]string
		for _, row := range r.Rows {
			var g []string
			for _, v := range row {
				if v == nil {
					g = append(g, "NULL")
				} else {
					g = append(g, *v)
				}
			}
			got = append(got, g)
		}
		if r.Error != "" || !reflect.DeepEqual(got, c.wantRows) || r.RowCount != 1 {
			t.Errorf("%s: rows %q (%d), error %q; want %q", c.name, got, r.RowCount, r.Error, c.wantRows)
		}
		if want := []string{"who", "comma", "nothing", "empty", "odd", "n"}; !reflect.DeepEqual(r.Columns, want) {
			t.Errorf("%s: columns %q, want %q", c.name, r.Columns, want)
		}
	}
	// The page on the admin listener shows what alice computed.
	if body := get(t, srv, "/q/who.csv", 200); !strings.Contains(body, alice.Name) {
		t.Errorf("/q/who.csv: %q", body)
	}
	// More rows than kept: counted, truncated.
	small := New(db, quietLog(), Config{MaxRows: 2})
	if err := small.SaveAs(ctx, "many", "SELECT g FROM generate_series(1, 5) g", 0, alice.Name); err != nil {
		t.Fatal(err)
	}
	if r, err := small.Run(ctx, "many"); err != nil || r.RowCount != 5 || len(r.Rows) != 2 || !r.Truncated {
		t.Errorf("many: %d rows kept of %d, truncated %v, %v", len(r.Rows), r.RowCount, r.Truncated, err)
	}
	// A query herd saved for itself runs with herd's privileges...
	if err := store.Save(ctx, "herds", "SELECT write_key FROM herd.sources", 0); err != nil {
		t.Fatal(err)
	}
	if r, err := store.Run(ctx, "herds"); err != nil || r.Error != "" || len(r.Rows) != 1 {
		t.Fatalf("herd's own query: %+v %v", r, err)
	}
	// ...and no analyst sees it; alice sees her own snapshots, bob none.
	for _, c := range []struct {
		url      string
		runs, qs int
	}{{alice.URL, 5, 5}, {bob.URL, 0, 0}} {
		conn := pgxConnect(t, c.url)
		var runs, qs int
		if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM herd.query_runs), (SELECT count(*) FROM herd.saved_queries)").Scan(&runs, &qs); err != nil {
			t.Fatal(err)
		}
		var leaked bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM herd.query_runs WHERE rows::text LIKE '%"+key+"%')").Scan(&leaked); err != nil || leaked {
			t.Errorf("an analyst reads the write key in a snapshot: %v %v", leaked, err)
		}
		if runs != c.runs || qs != c.qs {
			t.Errorf("%s sees %d runs and %d saved queries, want %d and %d", c.url, runs, qs, c.runs, c.qs)
		}
	}
	// A role that is gone cannot run queries; its queries go with it.
	if err := analysts.Remove(ctx, db, quietLog(), alice.Name, true); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Run(ctx, "who"); err == nil {
		t.Error("a query of a removed analyst still runs")
	}
}

func pgxConnect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestParseRecord(t *testing.T) {
	t.Parallel()
	s := func(v string) *string { return &v }
	cases := []struct {
		in   string
		n    int
		want []*string
	}{
		{"()", 0, []*string{}},
		{"()", 1, []*string{nil}},
		{"(1,,\"\")", 3, []*string{s("1"), nil, s("")}},
		{`("a ""b"" \\c",x)`, 2, []*string{s(`a "b" \c`), s("x")}},
		{`("(1,2)",3)`, 2, []*string{s("(1,2)"), s("3")}},
	}
	for _, c := range cases {
		got, err := parseRecord(c.in, c.n)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseRecord(%q, %d) = %v, %v", c.in, c.n, got, err)
		}
	}
	if _, err := parseRecord("(1,2)", 3); err == nil {
		t.Error("parseRecord accepted 2 values for 3 columns")
	}
}
