package collector

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestBatchContextMerge: an event's own context overrides the batch
// context key by key; values are copied as sent (never re-escaped); the
// size is reported before the merge is built, and an oversized merge is
// not built at all.
func TestBatchContextMerge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, base, own string
		limit           int
		want            string // "" when not built
	}{
		{"no own context", `{"a":1}`, ``, 100, `{"a":1}`},
		{"null own context", `{"a":1}`, `null`, 100, `{"a":1}`},
		{"empty own context", `{"a":1}`, `{}`, 100, `{"a":1}`},
		{"own key overrides", `{"a":1,"b":{"c":2}}`, `{"b":3}`, 100, `{"a":1,"b":3}`},
		{"keys from both", `{"z":1}`, `{"a":"<&>","\"q\\\n":2}`, 100, `{"\"q\\\n":2,"a":"<&>","z":1}`},
		{"escapes kept as sent", `{"p":"\u003c<"}`, `{"x":1}`, 100, `{"p":"\u003c<","x":1}`},
		{"over the limit", `{"pad":"xxxxxxxxxx"}`, `{"y":"yyyyyyyyyy"}`, 20, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bc, err := parseBatchContext([]byte(tc.base))
			if err != nil {
				t.Fatal(err)
			}
			got, size, err := bc.merge([]byte(tc.own), tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if got != nil || size <= tc.limit {
					t.Fatalf("merge over the limit: built %q, size %d", got, size)
				}
				return
			}
			if size != len(got) {
				t.Errorf("size %d, merged is %d bytes", size, len(got))
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("merged %q is not JSON: %v", got, err)
			}
			_ = json.Unmarshal([]byte(tc.want), &w)
			if !reflect.DeepEqual(g, w) || (tc.name == "escapes kept as sent" && string(got) != tc.want) {
				t.Errorf("merged %s, want %s", got, tc.want)
			}
		})
	}
}
