package privacy_test

import (
	"context"
	"testing"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
)

// TestRawHasID: herd.raw_has_id, which decides which rejects a delete
// removes and an export writes, finds the person's id in every shape a
// client may send, and never in another person's id that contains it.
func TestRawHasID(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Pool(t, pgtest.New(t))
	if _, err := schemas.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		raw  string
		want bool
	}{
		{"object", `{"type":"track","userId":"erin","event":"x"}`, true},
		{"anonymous id", `{"type":"track","anonymousId":"erin"}`, true},
		{"batch array", `{"batch":[{"userId":"someone"},{"userId":"erin"}]}`, true},
		{"bare array", `[{"userId":"erin","type":"track"}]`, true},
		{"batch object", `{"batch":{"0":{"userId":"erin"}}}`, true},
		{"bare string", `"erin"`, true},
		{"id in an array", `{"userId":["erin"]}`, true},
		{"duplicate key, first", `{"userId":"erin","userId":"other"}`, true},
		{"escaped", `{"userId":"\u0065rin"}`, true},
		{"escaped, duplicate key", `{"userId":"\u0065rin","userId":"other"}`, true},
		{"not JSON, quoted", `{"userId":"erin", broken`, true},
		{"not JSON, escaped", `{"userId":"\u0065rin", broken`, true},
		{"another user containing the id", `{"userId":"katherine"}`, false},
		{"not JSON, another user containing the id", `{"userId":"katherine", broken`, false},
		{"not JSON, unquoted", `userId=erin&x=1`, false},
		{"prefix", `{"userId":"erin2"}`, false},
		{"someone else", `{"userId":"bob","anonymousId":"anon-b"}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got bool
			if err := db.QueryRow(ctx, `SELECT herd.raw_has_id($1, $2)`, c.raw, []string{"erin"}).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("raw_has_id(%s, {erin}) = %v, want %v", c.raw, got, c.want)
			}
		})
	}
	// An id that is a number matches the number the collector took as it.
	var got bool
	if err := db.QueryRow(ctx, `SELECT herd.raw_has_id('{"userId":42}', '{42}')`).Scan(&got); err != nil || !got {
		t.Errorf("a numeric userId: %v, %v", got, err)
	}
	// The function does not depend on the caller's search_path.
	var cfg []string
	if err := db.QueryRow(ctx, `SELECT proconfig FROM pg_proc WHERE oid = 'herd.raw_has_id(text, text[])'::regprocedure`).Scan(&cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg) != 1 || cfg[0] != "search_path=pg_catalog, pg_temp" {
		t.Errorf("herd.raw_has_id runs with %v, want search_path=pg_catalog, pg_temp", cfg)
	}
}
