package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
)

// received is the collector's fixed clock in these tests, so that the
// skew-corrected timestamp has one exact expected value.
var received = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

func fixedClock(c *collector.Config) { c.Now = func() time.Time { return received } }

type wantRow struct {
	typ, event, userID, anonID, groupID, previousID string
	timestamp                                       time.Time
	original, sentAt                                *time.Time
	properties, traits, context                     string // JSON, "" for NULL
	sourceName                                      string
	url, path                                       string
}

func tp(t time.Time) *time.Time { return &t }

// TestWireContract posts every path, short path and write-key form, JSON,
// text/plain, no content type and gzip, plus a 100-event batch, and reads
// every row back.
func TestWireContract(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{Collector: fixedClock})
	key := p.WriteKey
	orig := time.Date(2026, 6, 15, 11, 0, 0, 0, time.UTC)
	sent := orig.Add(90 * time.Second) // the device clock says 90 s passed before sending
	skewed := received.Add(-90 * time.Second)

	want := map[string]wantRow{}
	n := 0
	send := func(path string, headers map[string]string, ev map[string]any, w wantRow) {
		t.Helper()
		n++
		id := fmt.Sprintf("wire-%03d", n)
		ev["messageId"] = id
		body := jsonBody(t, ev)
		if headers["Content-Encoding"] == "gzip" {
			body = gz(t, body)
		}
		r := post(t, p.URL+path, body, headers)
		if r.Status != 200 || r.Body["success"] != true {
			t.Fatalf("POST %s %v: %d %s", path, headers, r.Status, r.RawBody)
		}
		if w.sourceName == "" {
			w.sourceName = "web"
		}
		want[id] = w
	}

	auth := map[string]string{"Authorization": basic(key), "Content-Type": "application/json"}
	// Every path and short path, type from the path.
	paths := []struct{ path, typ string }{
		{"/v1/track", "track"}, {"/v1/t", "track"}, {"/track", "track"}, {"/t", "track"},
		{"/v1/page", "page"}, {"/v1/p", "page"}, {"/page", "page"},
		{"/v1/screen", "screen"}, {"/v1/s", "screen"},
		{"/v1/identify", "identify"}, {"/v1/i", "identify"}, {"/identify", "identify"},
		{"/v1/group", "group"}, {"/v1/g", "group"},
		{"/v1/alias", "alias"}, {"/v1/a", "alias"},
	}
	for _, pt := range paths {
		ev := map[string]any{"userId": "u-" + pt.typ, "timestamp": orig.Format(time.RFC3339Nano), "sentAt": sent.Format(time.RFC3339Nano)}
		w := wantRow{typ: pt.typ, userID: "u-" + pt.typ, timestamp: skewed, original: tp(orig), sentAt: tp(sent)}
		switch pt.typ {
		case "track":
			ev["event"], ev["properties"] = "Order Completed", map[string]any{"revenue": 9.5, "items": []any{"a"}}
			w.event, w.properties = "Order Completed", `{"revenue": 9.5, "items": ["a"]}`
		case "page", "screen":
			ev["name"] = "Home"
			ev["properties"] = map[string]any{"url": "https://shop.example/home?x=1", "title": "Home"}
			w.event, w.properties = "Home", `{"url": "https://shop.example/home?x=1", "title": "Home"}`
			if pt.typ == "page" {
				w.url, w.path = "https://shop.example/home?x=1", "/home"
			}
		case "identify":
			ev["traits"] = map[string]any{"email": "a@b.c", "plan": "pro"}
			w.traits = `{"email": "a@b.c", "plan": "pro"}`
		case "group":
			ev["groupId"], ev["traits"] = "g1", map[string]any{"name": "Acme"}
			w.groupID, w.traits = "g1", `{"name": "Acme"}`
		case "alias":
			ev["previousId"] = "anon-1"
			w.previousID = "anon-1"
		}
		send(pt.path, auth, ev, w)
	}

	// Every write-key form and body encoding.
	track := func() (map[string]any, wantRow) {
		return map[string]any{"type": "track", "event": "Clicked", "anonymousId": "a1"},
			wantRow{typ: "track", event: "Clicked", anonID: "a1", timestamp: received}
	}
	forms := []struct {
		name    string
		path    string
		headers map[string]string
		inBody  bool
	}{
		{"basic without colon", "/v1/track", map[string]string{"Authorization": "Basic " + b64(key), "Content-Type": "application/json"}, false},
		{"x-write-key", "/v1/track", map[string]string{"X-Write-Key": key, "Content-Type": "application/json"}, false},
		{"query", "/v1/track?writeKey=" + key, map[string]string{"Content-Type": "application/json"}, false},
		{"body writeKey, text/plain", "/v1/track", map[string]string{"Content-Type": "text/plain"}, true},
		{"body writeKey, no content type", "/v1/track", map[string]string{}, true},
		{"gzip", "/v1/track", map[string]string{"Authorization": basic(key), "Content-Type": "application/json", "Content-Encoding": "gzip"}, false},
	}
	for _, f := range forms {
		ev, w := track()
		if f.inBody {
			ev["writeKey"] = key
		}
		send(f.path, f.headers, ev, w)
	}

	// Server source: context.ip is honoured.
	ev, w := track()
	ev["context"] = map[string]any{"ip": "203.0.113.9"}
	w.context, w.sourceName = `{"ip": "203.0.113.9"}`, "backend"
	send("/v1/track", map[string]string{"Authorization": basic(p.Server.WriteKey)}, ev, w)

	// A 100-event batch through /v1/batch (gzip), with batch-level context
	// merged into each event (the event's own keys win) and sentAt at the top.
	batch := map[string]any{
		"sentAt":  sent.Format(time.RFC3339Nano),
		"context": map[string]any{"library": map[string]any{"name": "analytics-node", "version": "2.1.0"}, "locale": "en-US"},
	}
	var items []any
	for i := 0; i < 100; i++ {
		id := fmt.Sprintf("batch-%03d", i)
		item := map[string]any{"type": "track", "event": "Viewed", "userId": fmt.Sprint("bu", i%7), "messageId": id,
			"timestamp": orig.Format(time.RFC3339Nano), "properties": map[string]any{"i": i}}
		ctxJSON := `{"library": {"name": "analytics-node", "version": "2.1.0"}, "locale": "en-US"}`
		if i == 3 {
			item["context"] = map[string]any{"locale": "fr-FR"}
			ctxJSON = `{"library": {"name": "analytics-node", "version": "2.1.0"}, "locale": "fr-FR"}`
		}
		items = append(items, item)
		want[id] = wantRow{typ: "track", event: "Viewed", userID: fmt.Sprint("bu", i%7), timestamp: skewed, original: tp(orig), sentAt: tp(sent),
			properties: fmt.Sprintf(`{"i": %d}`, i), context: ctxJSON, sourceName: "web"}
	}
	batch["batch"] = items
	r := post(t, p.URL+"/v1/batch", gz(t, jsonBody(t, batch)), map[string]string{"Authorization": basic(key), "Content-Encoding": "gzip", "Content-Type": "application/json"})
	if r.Status != 200 {
		t.Fatalf("batch: %d %s", r.Status, r.RawBody)
	}

	if got := p.WaitRows(t, int64(len(want)), 10*time.Second, "SELECT count(*) FROM herd.events"); got != int64(len(want)) {
		t.Fatalf("rows: got %d, want %d", got, len(want))
	}
	rows, err := p.DB.Query(context.Background(), `SELECT e.message_id, e.type, coalesce(e.event,''), coalesce(e.user_id,''), coalesce(e.anonymous_id,''),
		coalesce(e.group_id,''), coalesce(e.previous_id,''), e.timestamp, e.original_timestamp, e.sent_at, e.received_at,
		coalesce(e.properties::text,''), coalesce(e.traits::text,''), coalesce(e.context::text,''), s.name, coalesce(e.url,''), coalesce(e.path,''),
		host(e.ip), coalesce(e.library_name,'')
		FROM herd.events e JOIN herd.sources s ON s.id = e.source_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var id, ip, lib string
		var g wantRow
		var recv time.Time
		if err := rows.Scan(&id, &g.typ, &g.event, &g.userID, &g.anonID, &g.groupID, &g.previousID, &g.timestamp, &g.original, &g.sentAt, &recv,
			&g.properties, &g.traits, &g.context, &g.sourceName, &g.url, &g.path, &ip, &lib); err != nil {
			t.Fatal(err)
		}
		seen++
		w, ok := want[id]
		if !ok {
			t.Errorf("unexpected row %s", id)
			continue
		}
		if !recv.Equal(received) {
			t.Errorf("%s: received_at %s, want %s", id, recv, received)
		}
		if !g.timestamp.Equal(w.timestamp) {
			t.Errorf("%s: timestamp %s, want %s", id, g.timestamp.UTC(), w.timestamp)
		}
		if !timeEq(g.original, w.original) || !timeEq(g.sentAt, w.sentAt) {
			t.Errorf("%s: original_timestamp %v sent_at %v, want %v %v", id, g.original, g.sentAt, w.original, w.sentAt)
		}
		for _, c := range []struct{ name, got, want string }{
			{"type", g.typ, w.typ}, {"event", g.event, w.event}, {"user_id", g.userID, w.userID}, {"anonymous_id", g.anonID, w.anonID},
			{"group_id", g.groupID, w.groupID}, {"previous_id", g.previousID, w.previousID}, {"source", g.sourceName, w.sourceName},
			{"url", g.url, w.url}, {"path", g.path, w.path},
		} {
			if c.got != c.want {
				t.Errorf("%s: %s = %q, want %q", id, c.name, c.got, c.want)
			}
		}
		for _, c := range []struct{ name, got, want string }{{"properties", g.properties, w.properties}, {"traits", g.traits, w.traits}, {"context", g.context, w.context}} {
			if !jsonEq(c.got, c.want) {
				t.Errorf("%s: %s = %s, want %s", id, c.name, c.got, c.want)
			}
		}
		wantIP := "127.0.0.1"
		if w.sourceName == "backend" {
			wantIP = "203.0.113.9"
		}
		if ip != wantIP {
			t.Errorf("%s: ip %s, want %s", id, ip, wantIP)
		}
		if len(id) > 6 && id[:6] == "batch-" && lib != "analytics-node" {
			t.Errorf("%s: library_name %q, want analytics-node", id, lib)
		}
	}
	if seen != len(want) {
		t.Fatalf("read %d rows, want %d", seen, len(want))
	}
}

func timeEq(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func jsonEq(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func b64(s string) string { return base64Std(s) }

// TestCORSAndSettings checks the headers browsers need, on success, on error
// and on the preflight, and the settings endpoint analytics.js reads.
func TestCORSAndSettings(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	origin := "https://shop.example"
	check := func(name string, h http.Header) {
		t.Helper()
		if h.Get("Access-Control-Allow-Origin") != origin || h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Vary") != "Origin" {
			t.Errorf("%s: CORS headers %v", name, h)
		}
	}
	r := post(t, p.URL+"/v1/track", []byte(`{"event":"x","anonymousId":"a"}`), map[string]string{"Origin": origin, "Authorization": basic(p.WriteKey)})
	if r.Status != 200 {
		t.Fatalf("track: %d %s", r.Status, r.RawBody)
	}
	check("success", r.Header)
	r = post(t, p.URL+"/v1/track", []byte(`{`), map[string]string{"Origin": origin, "Authorization": basic(p.WriteKey)})
	if r.Status != 400 {
		t.Fatalf("bad JSON: %d", r.Status)
	}
	check("error", r.Header)
	r = post(t, p.URL+"/v1/track", []byte(`{}`), map[string]string{"Origin": origin, "Authorization": basic("nope")})
	check("401", r.Header)

	req, _ := http.NewRequest(http.MethodOptions, p.URL+"/v1/batch", nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	r = do(t, req)
	if r.Status != 204 {
		t.Fatalf("preflight: %d", r.Status)
	}
	check("preflight", r.Header)
	if got := r.Header.Get("Access-Control-Allow-Headers"); got != "authorization, content-type" {
		t.Errorf("preflight allow-headers %q", got)
	}

	req, _ = http.NewRequest(http.MethodGet, p.URL+"/v1/projects/"+p.WriteKey+"/settings", nil)
	r = do(t, req)
	if r.Status != 200 {
		t.Fatalf("settings: %d %s", r.Status, r.RawBody)
	}
	seg := r.Body["integrations"].(map[string]any)["Segment.io"].(map[string]any)
	if seg["apiKey"] != p.WriteKey || seg["apiHost"] != p.URL[len("http://"):]+"/v1" || seg["protocol"] != "http" {
		t.Errorf("settings: %v", seg)
	}
	r = post(t, p.URL+"/v1/m", []byte(`{"series":[]}`), nil)
	if r.Status != 200 {
		t.Errorf("/v1/m: %d", r.Status)
	}
}
