package collector

import (
	"bytes"
	stdjson "encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// The checks scanJSON replaced, kept as the reference it is held to.

// refNULEscape reports whether a JSON text holds the escape \u0000 (not a
// literal backslash followed by "u0000").
func refNULEscape(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(`u0000`))
		if j < 0 {
			return false
		}
		j += i
		n := 0
		for k := j - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 1 {
			return true
		}
		i = j + 5
	}
}

// refDepth returns the deepest nesting of objects and arrays in valid JSON.
func refDepth(b []byte) int {
	d, most := 0, 0
	in := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if in {
			if c == '\\' {
				i++
			} else if c == '"' {
				in = false
			}
			continue
		}
		switch c {
		case '"':
			in = true
		case '{', '[':
			d++
			most = max(most, d)
		case '}', ']':
			d--
		}
	}
	return most
}

func checkScan(t *testing.T, b []byte) {
	t.Helper()
	info, ok := scanJSON(b)
	if want := stdjson.Valid(b); ok != want {
		t.Fatalf("scanJSON(%q) valid %v, encoding/json says %v", b, ok, want)
	}
	if !ok {
		return
	}
	if info.depth != refDepth(b) || info.nul != refNULEscape(b) || info.badUTF8 == utf8.Valid(b) {
		t.Fatalf("scanJSON(%q) = %+v, want depth %d, nul %v, bad UTF-8 %v", b, info, refDepth(b), refNULEscape(b), !utf8.Valid(b))
	}
}

func TestScanJSON(t *testing.T) {
	for _, s := range []string{
		``, ` `, `{}`, ` {"a":1} `, `{"a":1}x`, `[1,2,]`, `{"a":}`, `{"a" 1}`, `{,}`, `[`, `]`, `"`, `"\`,
		`0`, `-0`, `01`, `-`, `1.`, `1.5`, `1e`, `1e+`, `1E-7`, `.5`, `+1`, `1.5e400`, `-12.30e+05`,
		`true`, `tru`, `nul`, `null `, `falsey`, `[true,false,null]`,
		`"a\u00e9"`, `"\u00G0"`, `"\u0000"`, `"\\u0000"`, `"\\\u0000"`, `"a\/b\b\f\n\r\t"`, `"\x"`, "\"tab\there\"",
		"\"bad \xff utf8\"", "\"\xc3\"", "{\"a\":\"\xe2\x80\xa8\"}", "\xef\xbb\xbf{}",
		`{"a":[{"b":[[]]}],"c":{"d":"}]"}}`, `[[[[[[[[[[]]]]]]]]]]`,
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70),
	} {
		checkScan(t, []byte(s))
	}
}

// FuzzScanJSON holds scanJSON to encoding/json.Valid and the older checks on
// any input.
func FuzzScanJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,{"b":"\u0000"}],"c":-1.5e3}`, `[01]`, "\"\xff\"", `{"x":"\\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkScan(t, b) })
}

func BenchmarkScanJSON(b *testing.B) {
	body := []byte(benchEvent)
	b.Run("scanJSON", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, ok := scanJSON(body); !ok {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("before", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			_ = stdjson.Valid(body) && utf8.Valid(body) && !refNULEscape(body) && refDepth(body) <= MaxDepth
		}
	})
}

// A batch's items are checked as they were each scanned alone, whether the
// body's own scan stands for them or not.
func TestBatchItemsChecked(t *testing.T) {
	nest := func(depth int) string { // an object `depth` levels deep
		return strings.Repeat(`{"a":`, depth-1) + `{}` + strings.Repeat(`}`, depth-1)
	}
	item := func(propsDepth int) string {
		return `{"type":"track","event":"E","userId":"u","properties":` + nest(propsDepth) + `}`
	}
	atLimit, past := item(MaxDepth-1), item(MaxDepth)
	for _, c := range []struct {
		name     string
		body     string
		shortcut bool
		refused  []bool
	}{
		{"items at the limit", `{"batch":[` + atLimit + `,` + atLimit + `]}`, true, []bool{false, false}},
		{"one item past it", `{"batch":[` + atLimit + `,` + past + `]}`, false, []bool{false, true}},
		{"NUL outside the items (integrations are not stored)", `{"integrations":{"x":"\u0000"},"batch":[` + atLimit + `]}`, false, []bool{false}},
		{"NUL in an item", `{"batch":[{"event":"\u0000"},` + atLimit + `]}`, false, []bool{true, false}},
	} {
		r, err := decodeBody([]byte(c.body), true)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (r.scanned != nil) != c.shortcut {
			t.Errorf("%s: body scan stands for the items: %v, want %v", c.name, r.scanned != nil, c.shortcut)
		}
		for i, it := range r.items {
			alone := checkRaw(it, nil)
			got := checkRaw(it, r.scanned)
			if (got != nil) != c.refused[i] || (got == nil) != (alone == nil) {
				t.Errorf("%s: item %d: %v (alone: %v), want refused %v", c.name, i, got, alone, c.refused[i])
			}
		}
	}
}
