package collector

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

var wireSeeds = []string{
	`{"type":"track","event":"x","userId":"u"}`,
	`{"Type":"page","EVENT":"x","UserID":7,"properties":{"url":"u"},"context":null}`,
	`{"\u0074ype":"track","ev\u0065nt":"y","messageId":"a\"b"}`,
	`{"type":null,"event":null,"userId":null,"sentAt":null}`,
	`{"type":"a","type":"b","event":"1","event":"2"}`,
	`{"type":5}`, `{"writeKey":[1]}`, `{"writeKey":"k\\\\"}`,
	`{"type":"\ud800x","context":{"page":{"url":"https://a.b/?q=\"}"}}}`,
	` { "type" : "track" , "traits" : [ 1 , { "a" : "}" } ] } `,
	`{"batch":[{"type":"page"},1,"x",null,[]],"context":{"ip":"1.2.3.4"},"sentAt":"2026-01-01T00:00:00Z","writeKey":"k"}`,
	`{"batch":null}`, `{"batch":{}}`, `{"batch":"x"}`, `{"BATCH":[1],"batch":[2,3]}`,
	`{"\u0074Y":"00"}`,
}

// FuzzWireDecode holds decodeEvent and decodeBatch to what encoding/json
// makes of the same valid JSON object: the same fields, the same raw
// values, and an error exactly when it fails. (encoding/json also folds
// the keys ſ and K, the Kelvin sign, to s and k; those inputs are left out.
// goccy/go-json, the decoder these replace, is not the reference: it takes
// an escaped "tY" for "type".)
func FuzzWireDecode(f *testing.F) {
	for _, s := range wireSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		body = bytes.TrimSpace(body)
		if _, ok := scanJSON(body); !ok || !utf8.Valid(body) || len(body) == 0 || body[0] != '{' {
			return
		}
		if l := strings.ToLower(string(body)); strings.Contains(l, `\u017f`) || strings.Contains(l, `\u212a`) || strings.ContainsAny(l, "ſK") {
			return
		}
		var want, got wireEvent
		wantErr := json.Unmarshal(body, &want)
		gotErr := decodeEvent(body, &got)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("%s: reflective decoder says %v, decodeEvent %v", body, wantErr, gotErr)
		}
		if wantErr == nil && !sameWireEvent(&want, &got) {
			t.Fatalf("%s:\nreflective %+v\ndecodeEvent %+v", body, want, got)
		}
		var wb, gb wireBatch
		wantErr = json.Unmarshal(body, &wb)
		gotErr = decodeBatch(body, &gb, 1<<30)
		if wantErr != nil {
			// The reflective decoder stops at the first error; both refuse.
			if gotErr == nil {
				t.Fatalf("%s: reflective decoder says %v, decodeBatch accepts", body, wantErr)
			}
			return
		}
		if gotErr != nil {
			t.Fatalf("%s: decodeBatch: %v", body, gotErr)
		}
		if len(wb.Batch) != len(gb.Batch) || gb.count != len(gb.Batch) || !bytes.Equal(wb.Context, gb.Context) || !bytes.Equal(wb.SentAt, gb.SentAt) || wb.WriteKey != gb.WriteKey {
			t.Fatalf("%s:\nreflective %+v\ndecodeBatch %+v", body, wb, gb)
		}
		for i := range wb.Batch {
			if !bytes.Equal(wb.Batch[i], gb.Batch[i]) {
				t.Fatalf("%s: item %d: reflective %s, decodeBatch %s", body, i, wb.Batch[i], gb.Batch[i])
			}
		}
	})
}

func sameWireEvent(a, b *wireEvent) bool {
	raw := func(x, y json.RawMessage) bool { return bytes.Equal(x, y) }
	return a.Type == b.Type && a.WriteKey == b.WriteKey &&
		raw(a.Event, b.Event) && raw(a.Name, b.Name) && raw(a.MessageID, b.MessageID) &&
		raw(a.AnonymousID, b.AnonymousID) && raw(a.UserID, b.UserID) && raw(a.GroupID, b.GroupID) &&
		raw(a.PreviousID, b.PreviousID) && raw(a.Timestamp, b.Timestamp) &&
		raw(a.OriginalTimestamp, b.OriginalTimestamp) && raw(a.SentAt, b.SentAt) &&
		raw(a.Context, b.Context) && raw(a.Properties, b.Properties) && raw(a.Traits, b.Traits)
}

// TestReadContext: the fields enrichment reads from context, escapes and
// key case as the reflective decoder reads them; members of the wrong type
// are skipped without losing the others.
func TestReadContext(t *testing.T) {
	var ctx eventContext
	readContext([]byte(`{"Page":{"url":"https://a.example/x?y=1","path":"/x","title":"T \"q\""},`+
		`"campaign":{"source":"news","medium":5,"name":"spring"},"library":{"name":"analytics.js","version":"5"},`+
		`"userAgent":"UA","ip":["x"],"sessionId":42,"session_id":"s"}`), &ctx)
	want := eventContext{UserAgent: "UA", SessionID: json.RawMessage("42"), SessionID2: json.RawMessage(`"s"`)}
	want.Page = pageProps{URL: "https://a.example/x?y=1", Path: "/x", Title: `T "q"`}
	want.Campaign.Source, want.Campaign.Name = "news", "spring"
	want.Library.Name, want.Library.Version = "analytics.js", "5"
	if ctx.Page != want.Page || ctx.Campaign != want.Campaign || ctx.Library != want.Library || ctx.UserAgent != want.UserAgent ||
		ctx.IP != "" || string(ctx.SessionID) != "42" || string(ctx.SessionID2) != `"s"` {
		t.Fatalf("readContext:\n got %+v\nwant %+v", ctx, want)
	}
}
