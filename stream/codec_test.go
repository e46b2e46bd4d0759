package stream_test

import (
	stdjson "encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/stream"
)

// fill sets every field of ev, recursively, to a distinct non-zero value, so
// that a field the encoder forgets shows up as a difference.
func fill(v reflect.Value, n *int) {
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		*n++
		switch {
		case f.Type() == reflect.TypeOf(time.Time{}):
			f.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, *n*1000, time.UTC)))
		case f.Type() == reflect.TypeOf(&time.Time{}):
			t := time.Date(2025, 12, 31, 23, 59, 59, *n, time.FixedZone("x", 3600))
			f.Set(reflect.ValueOf(&t))
		case f.Type() == reflect.TypeOf(stdjson.RawMessage{}):
			f.Set(reflect.ValueOf(stdjson.RawMessage(`{"k":[1,2.5e400,"\u0001 \"q\""],"n":null}`)))
		case f.Kind() == reflect.String:
			f.SetString("v" + strings.Repeat("é\"\\\n\t\x01<>&\u2028", *n%3) + string(rune('a'+*n%26)))
		case f.Kind() == reflect.Int64:
			f.SetInt(int64(*n * 1000))
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.Kind() == reflect.Struct:
			fill(f, n)
		default:
			panic("codec test: fill does not know " + f.Type().String())
		}
	}
}

func TestEncodeEventMatchesEncodingJSON(t *testing.T) {
	var full herd.Event
	n := 0
	fill(reflect.ValueOf(&full).Elem(), &n)
	minimal := herd.Event{MessageID: "m", SourceID: 1, Type: "track", Timestamp: time.Unix(0, 1).UTC(), ReceivedAt: time.Unix(5, 0).UTC()}
	invalid := minimal
	invalid.UserID = "bad \xff utf8"
	for name, ev := range map[string]herd.Event{"every field": full, "minimal": minimal, "invalid utf8": invalid} {
		got := stream.EncodeEvent(nil, &ev)
		if !stdjson.Valid(got) {
			t.Fatalf("%s: not valid JSON: %s", name, got)
		}
		want, _ := stdjson.Marshal(&ev)
		a, b := decodeNumbers(t, got), decodeNumbers(t, want)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s:\n hand: %s\n json: %s", name, got, want)
		}
		var back herd.Event
		if err := stream.DecodeEvent(got, &back); err != nil {
			t.Fatal(err)
		}
		var viaStd herd.Event
		_ = stdjson.Unmarshal(want, &viaStd)
		if !reflect.DeepEqual(normalize(back), normalize(viaStd)) {
			t.Errorf("%s: decoded\n %+v\nwant\n %+v", name, back, viaStd)
		}
	}
}

func decodeNumbers(t *testing.T, data []byte) any {
	t.Helper()
	d := stdjson.NewDecoder(strings.NewReader(string(data)))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	return v
}

// normalize compares raw JSON by value, not by bytes (encoding/json compacts).
func normalize(ev herd.Event) herd.Event {
	for _, p := range []*stdjson.RawMessage{&ev.Context, &ev.Properties, &ev.Traits} {
		if len(*p) > 0 {
			d := stdjson.NewDecoder(strings.NewReader(string(*p)))
			d.UseNumber()
			var v any
			_ = d.Decode(&v)
			*p, _ = stdjson.Marshal(v)
		}
	}
	return ev
}

// benchEvent is a page view as the collector makes it, for the codec
// benchmarks.
func benchEvent() herd.Event {
	return herd.Event{MessageID: "m-123456", SourceID: 1, Type: "track", Event: "Product Viewed", UserID: "user-42",
		Timestamp: time.Now(), ReceivedAt: time.Now(),
		Properties: []byte(`{"product_id":"sku-1234","price":19.99,"currency":"EUR","category":"books"}`),
		Context:    []byte(`{"library":{"name":"analytics.js","version":"5.2.0"},"page":{"url":"https://shop.example.com/p/sku-1234","path":"/p/sku-1234","title":"A book"},"locale":"en-GB"}`),
		Enrichment: herd.Enrichment{URL: "https://shop.example.com/p/sku-1234", Path: "/p/sku-1234", IP: "203.0.113.7",
			Browser: "Chrome", OS: "Linux", DeviceType: "desktop", LibraryName: "analytics.js", LibraryVersion: "5.2.0"}}
}

func BenchmarkEncodeEvent(b *testing.B) {
	ev := benchEvent()
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = stream.EncodeEvent(buf[:0], &ev)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = stdjson.Marshal(&ev)
		}
	})
}

// The binary entry decodes to the same event as the JSON form, for every
// field, absent optional ones, invalid UTF-8 and zoned times.
func TestEntryMatchesJSON(t *testing.T) {
	var full herd.Event
	n := 0
	fill(reflect.ValueOf(&full).Elem(), &n)
	minimal := herd.Event{MessageID: "m", SourceID: 1, Type: "track", Timestamp: time.Unix(0, 1).UTC(), ReceivedAt: time.Unix(5, 0).UTC()}
	invalid := minimal
	invalid.UserID, invalid.Properties = "bad \xff utf8", stdjson.RawMessage("null")
	negative := minimal
	negative.SourceID, negative.ASN = -7, -1
	for name, ev := range map[string]herd.Event{"every field": full, "minimal": minimal, "invalid utf8": invalid, "negative": negative} {
		var viaJSON, viaEntry herd.Event
		if err := stream.DecodeEvent(stream.EncodeEvent(nil, &ev), &viaJSON); err != nil {
			t.Fatal(err)
		}
		entry := stream.EncodeEntry(nil, &ev)
		if err := stream.DecodeEvent(entry, &viaEntry); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(normalize(viaEntry), normalize(viaJSON)) {
			t.Errorf("%s: binary entry decoded\n %+v\nJSON decoded\n %+v", name, viaEntry, viaJSON)
		}
		src, ts, hasID, err := stream.PeekEntry(entry)
		if err != nil || src != ev.SourceID || !ts.Equal(ev.Timestamp) || hasID != (ev.MessageID != "") {
			t.Errorf("%s: PeekEntry %d %s %v %v, want %d %s", name, src, ts, hasID, err, ev.SourceID, ev.Timestamp)
		}
		if _, _, _, err := stream.PeekEntry(stream.EncodeEvent(nil, &ev)); err != stream.ErrNotEntry {
			t.Errorf("%s: PeekEntry of JSON: %v, want ErrNotEntry", name, err)
		}
		// Cut short inside a field: an error, never a panic.
		for cut := 1; cut < len(entry); cut++ {
			var back herd.Event
			_ = stream.DecodeEvent(entry[:cut], &back)
			_, _, _, _ = stream.PeekEntry(entry[:cut])
		}
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	ev := benchEvent()
	for name, data := range map[string][]byte{"json": stream.EncodeEvent(nil, &ev), "entry": stream.EncodeEntry(nil, &ev)} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var back herd.Event
				if err := stream.DecodeEvent(data, &back); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
