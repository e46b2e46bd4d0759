package collector

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/stream"
)

func fuzzCollector() *Collector {
	c := &Collector{log: slog.New(slog.DiscardHandler)}
	c.cfg.defaults()
	return c
}

// FuzzDecode feeds arbitrary bodies through request decoding, batch
// splitting and event building: nothing may panic, and every accepted event
// must be storable (valid type, an identity, a message id, bounded time).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"track","event":"x","userId":"u"}`,
		`{"batch":[{"type":"page","anonymousId":"a","properties":{"url":"https://a.b/c?utm_source=x"}}],"context":{"ip":"1.2.3.4"}}`,
		`{"batch":[{"type":"identify","userId":7,"traits":{"a":[1,{"b":null}]},"timestamp":"2026-01-01T00:00:00Z","sentAt":"2026-01-01T00:00:05Z"}]}`,
		`{"batch":[]}`, `[]`, `{"event":"\u0000"}`, `{"batch":[1,"x",null]}`, `{"type":"alias","userId":"u","previousId":"p","timestamp":1700000000000}`,
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	c := fuzzCollector()
	src := &herd.Source{ID: 1, Kind: herd.KindServer}
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte, batch bool) {
		r, err := decodeBody(body, batch)
		if err != nil {
			return
		}
		info := reqInfo{source: src, receivedAt: now, pathType: herd.TypeTrack}
		for _, item := range r.items {
			ev, err := c.buildEvent(item, r, &info)
			if err != nil {
				continue
			}
			if !herd.ValidType(ev.Type) || ev.MessageID == "" || (ev.UserID == "" && ev.AnonymousID == "") {
				t.Fatalf("accepted an incomplete event: %+v", ev)
			}
			if ev.Timestamp.Before(minTime) || ev.Timestamp.After(now.Add(maxFuture)) {
				t.Fatalf("accepted timestamp %s", ev.Timestamp)
			}
			// What goes on the stream must be valid JSON that decodes back.
			data := stream.EncodeEvent(nil, &ev)
			if !json.Valid(data) {
				t.Fatalf("accepted event encodes to invalid JSON: %s", data)
			}
			var back herd.Event
			if err := stream.DecodeEvent(data, &back); err != nil || back.MessageID != ev.MessageID {
				t.Fatalf("accepted event does not decode back: %v", err)
			}
		}
	})
}

// FuzzTimestamp: parsing never panics and what parses is in UTC.
func FuzzTimestamp(f *testing.F) {
	for _, s := range []string{"2026-11-26T10:00:00.123Z", "2026-11-26T10:00:00+05:30", "2026-11-26", "2026-11-26 10:00:00", "", "x", "9999-99-99T99:99:99Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := ParseTimestamp(s)
		if err == nil && ts.Location() != time.UTC {
			t.Fatalf("%q parsed to a non-UTC time %s", s, ts)
		}
		raw, _ := json.Marshal(s)
		_, _ = parseTime(raw, "timestamp")
	})
}

func TestSkewCorrection(t *testing.T) {
	c := fuzzCollector()
	src := &herd.Source{ID: 1, Kind: herd.KindBrowser}
	recv := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name, body string
		want       time.Time
		err        bool
	}{
		{"skewed device clock", `{"event":"e","userId":"u","timestamp":"2025-12-31T00:00:00Z","sentAt":"2025-12-31T00:00:30Z"}`, recv.Add(-30 * time.Second), false},
		{"no sentAt keeps the client time", `{"event":"e","userId":"u","timestamp":"2026-01-01T11:00:00Z"}`, recv.Add(-time.Hour), false},
		{"no time at all", `{"event":"e","userId":"u"}`, recv, false},
		{"epoch milliseconds", `{"event":"e","userId":"u","timestamp":1767268800000}`, time.UnixMilli(1767268800000).UTC(), false},
		{"far future", `{"event":"e","userId":"u","timestamp":"2030-01-01T00:00:00Z"}`, time.Time{}, true},
		{"far past", `{"event":"e","userId":"u","timestamp":"1990-01-01T00:00:00Z"}`, time.Time{}, true},
		{"wrong type", `{"event":"e","userId":"u","timestamp":true}`, time.Time{}, true},
		{"garbage string", `{"event":"e","userId":"u","timestamp":"yesterday"}`, time.Time{}, true},
	}
	for _, tc := range cases {
		r, err := decodeBody([]byte(tc.body), false)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := c.buildEvent(r.items[0], r, &reqInfo{source: src, receivedAt: recv, pathType: herd.TypeTrack})
		if tc.err {
			if err == nil {
				t.Errorf("%s: accepted, timestamp %s", tc.name, ev.Timestamp)
			}
			continue
		}
		if err != nil || !ev.Timestamp.Equal(tc.want) {
			t.Errorf("%s: %v %s, want %s", tc.name, err, ev.Timestamp, tc.want)
		}
	}
}
