package replicate

import (
	"context"
	"strings"
	"testing"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
)

// TestDDLLogTablesAreCommented: the log table replicate creates on the
// source (with and without event triggers) and on the warehouse says what
// it holds, column by column.
func TestDDLLogTablesAreCommented(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		sql  string
	}{
		{"source with event triggers", sourceDDLSQL("app", true)},
		{"source without event triggers", sourceDDLSQL("app", false)},
		{"warehouse", warehouseDDLSQL("app")},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := pgtest.Pool(t, pgtest.New(t))
			// Uncommented reads herd.rollups; the warehouse's trigger
			// functions need herd.replicate_drift.
			if _, err := schemas.Migrate(ctx, db); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(ctx, c.sql); err != nil {
				t.Fatal(err)
			}
			missing, err := schemas.Uncommented(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if len(missing) > 0 {
				t.Fatalf("no COMMENT on:\n  %s", strings.Join(missing, "\n  "))
			}
			var table string
			if err := db.QueryRow(ctx, "SELECT obj_description('herd_replicate.app_ddl_log'::regclass, 'pg_class')").Scan(&table); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(table, "replication app") {
				t.Errorf("comment of herd_replicate.app_ddl_log = %q, want it to name the replication", table)
			}
		})
	}
}
