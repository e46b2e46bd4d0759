package e2e

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/writer"
)

// TestIdentity: identify -> track -> alias -> identify keeps herd.users,
// herd.identities and herd.groups current, and pages seen before signing up
// are attributed to the user by a join.
func TestIdentity(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Millisecond)
	send := func(path string, at time.Duration, ev map[string]any) {
		t.Helper()
		ev["timestamp"] = t0.Add(at).Format(time.RFC3339Nano)
		if r := post(t, p.URL+path, jsonBody(t, ev), map[string]string{"Authorization": basic(p.WriteKey), "Content-Type": "application/json"}); r.Status != 200 {
			t.Fatalf("%s: %d %s", path, r.Status, r.RawBody)
		}
	}
	page := func(id, anon, path string, at time.Duration) {
		send("/v1/page", at, map[string]any{"messageId": id, "anonymousId": anon, "properties": map[string]any{"path": path, "url": "https://shop.example.com" + path}})
	}
	// Two devices browse before signing up.
	page("id-01", "anon-laptop", "/home", 0)
	page("id-02", "anon-laptop", "/pricing", time.Minute)
	page("id-03", "anon-phone", "/blog", -time.Hour)
	page("id-04", "anon-stranger", "/home", 0)
	send("/v1/identify", 2*time.Minute, map[string]any{"messageId": "id-05", "userId": "user-42", "anonymousId": "anon-laptop",
		"traits": map[string]any{"email": "ada@example.com", "plan": "free"}})
	send("/v1/track", 3*time.Minute, map[string]any{"messageId": "id-06", "userId": "user-42", "anonymousId": "anon-laptop", "event": "Signed Up"})
	send("/v1/alias", 4*time.Minute, map[string]any{"messageId": "id-07", "userId": "user-42", "previousId": "anon-phone"})
	send("/v1/identify", 5*time.Minute, map[string]any{"messageId": "id-08", "userId": "user-42",
		"traits": map[string]any{"plan": "pro", "company": "Acme"}})
	send("/v1/group", 6*time.Minute, map[string]any{"messageId": "id-09", "userId": "user-42", "groupId": "acme", "traits": map[string]any{"name": "Acme", "seats": 5}})
	waitEvents(t, p, "id-", 9)
	// A late identify, older than the stored traits: fills, never overrides.
	send("/v1/identify", 90*time.Second, map[string]any{"messageId": "id-10", "userId": "user-42", "anonymousId": "anon-laptop",
		"traits": map[string]any{"plan": "trial", "age": 36}})
	waitEvents(t, p, "id-", 10)

	type user struct {
		Traits              map[string]any
		FirstSeen, LastSeen time.Time
	}
	readUser := func() user {
		t.Helper()
		var u user
		var traits []byte
		if err := p.DB.QueryRow(ctx, `SELECT traits, first_seen, last_seen FROM herd.users WHERE user_id = 'user-42'`).Scan(&traits, &u.FirstSeen, &u.LastSeen); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(traits, &u.Traits); err != nil {
			t.Fatal(err)
		}
		return u
	}
	u := readUser()
	wantTraits := map[string]any{"email": "ada@example.com", "plan": "pro", "company": "Acme", "age": 36.0}
	if !reflect.DeepEqual(u.Traits, wantTraits) {
		t.Errorf("traits %v, want %v", u.Traits, wantTraits)
	}
	if !u.FirstSeen.Equal(t0.Add(90*time.Second)) || !u.LastSeen.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("first/last seen %s %s, want %s %s", u.FirstSeen, u.LastSeen, t0.Add(90*time.Second), t0.Add(5*time.Minute))
	}

	// The join an analyst writes: every page of every device of the user,
	// including those from before the sign-up.
	var paths string
	err := p.DB.QueryRow(ctx, `SELECT string_agg(pg.path, ' ' ORDER BY pg."timestamp")
		FROM herd.pages pg JOIN herd.identities i ON i.source_id = pg.source_id AND i.anonymous_id = pg.anonymous_id
		WHERE i.user_id = 'user-42'`).Scan(&paths)
	if err != nil {
		t.Fatal(err)
	}
	if paths != "/blog /home /pricing" {
		t.Errorf("pages attributed to user-42: %q, want %q", paths, "/blog /home /pricing")
	}
	var group string
	if err := p.DB.QueryRow(ctx, `SELECT g.traits::text || ' ' || string_agg(m.member_id, ',')
		FROM herd.groups g JOIN herd.group_members m USING (source_id, group_id) WHERE g.group_id = 'acme' GROUP BY g.traits`).Scan(&group); err != nil {
		t.Fatal(err)
	}
	if group != `{"name": "Acme", "seats": 5} user-42` {
		t.Errorf("group: %s", group)
	}

	// Redelivery of an identify already stored changes nothing, even one
	// that would move first_seen and the traits.
	before := readUser()
	st := writer.NewStore(p.DB)
	redo := herd.Event{MessageID: "id-05", SourceID: p.Source.ID, Type: herd.TypeIdentify, UserID: "user-42", AnonymousID: "anon-other",
		Timestamp: t0.Add(-time.Hour), ReceivedAt: time.Now(), Traits: json.RawMessage(`{"plan":"hacked"}`)}
	res, err := st.Write(ctx, []writer.Row{{Event: redo}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Inserted != 0 || res.Duplicates != 1 {
		t.Errorf("redelivery: %+v", res)
	}
	if after := readUser(); !reflect.DeepEqual(after, before) {
		t.Errorf("redelivered identify changed the user: %+v -> %+v", before, after)
	}
	var links string
	if err := p.DB.QueryRow(ctx, `SELECT string_agg(anonymous_id, ',' ORDER BY anonymous_id) FROM herd.identities WHERE user_id = 'user-42'`).Scan(&links); err != nil {
		t.Fatal(err)
	}
	if links != "anon-laptop,anon-phone" || strings.Contains(links, "anon-other") {
		t.Errorf("identities of user-42: %s", links)
	}
}
