package collector

import (
	"fmt"
	"strings"
	"testing"

	"github.com/herdhq/herd"
)

// TestRawIDs: the ids a refused item or body names are found wherever and
// however broken its JSON is, so that a suppressed person's reject is not
// recorded; and what one reject costs to check is bounded.
func TestRawIDs(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want string
	}{
		{`{"userId":"carol","timestamp":"bad"}`, "[carol]"},
		{`{"batch":[{"userId" : "carol"},{"anonymousId":"anon-c1"}]`, "[carol anon-c1]"},
		{`{"userId":"\u0063arol","userId":"x"}`, "[carol x]"},
		{`{"userId":42,"previousId":"p"}`, "[42 p]"},
		{`{"user_id":"u","anonymous_id":"a"}`, "[u a]"},
		{`{"userId":"carol`, "[]"},
		{`{"userId":["carol"]}`, "[]"},
		{`not json userId carol`, "[]"},
	} {
		var got []string
		rawIDs([]byte(c.raw), func(id string) bool { got = append(got, id); return true })
		if fmt.Sprint(got) != c.want && !(len(got) == 0 && c.want == "[]") {
			t.Errorf("rawIDs(%s) = %v, want %s", c.raw, got, c.want)
		}
	}
	n := 0
	rawIDs([]byte(strings.Repeat(`{"userId":"x"},`, herd.MaxRawReject)), func(string) bool { n++; return true })
	if n != maxRawIDs {
		t.Errorf("rawIDs returned %d ids of a huge body, want at most %d", n, maxRawIDs)
	}
}
