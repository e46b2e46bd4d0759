package fronthook

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	const secret = "front-app-secret"
	now := time.Unix(1767268800, 0)
	body := []byte(`{"type":"inbound_received","authorization":{"id":"cmp_1"},"payload":{"id":"evt_55","type":"inbound","emitted_at":1767268799.5,"conversation":{"id":"cnv_1"}}}`)
	ts := Timestamp(now)
	cases := []struct {
		name    string
		body    []byte
		sig, ts string
		want    string // event id, or "" for a refusal
		errHas  string
	}{
		{"valid", body, Sign(secret, ts, body), ts, "evt_55", ""},
		{"valid, timestamp in seconds", body, Sign(secret, "1767268800.2", body), "1767268800.2", "evt_55", ""},
		{"rule-webhook style body", []byte(`{"id":"evt_9","type":"archive"}`), Sign(secret, ts, []byte(`{"id":"evt_9","type":"archive"}`)), ts, "evt_9", ""},
		{"wrong secret", body, Sign("other", ts, body), ts, "", "does not match"},
		{"altered body", []byte(strings.Replace(string(body), "cnv_1", "cnv_2", 1)), Sign(secret, ts, body), ts, "", "does not match"},
		{"signature for another timestamp", body, Sign(secret, Timestamp(now.Add(time.Second)), body), ts, "", "does not match"},
		{"stale", body, Sign(secret, Timestamp(now.Add(-6*time.Minute)), body), Timestamp(now.Add(-6 * time.Minute)), "", "tolerance"},
		{"from the future", body, Sign(secret, Timestamp(now.Add(6*time.Minute)), body), Timestamp(now.Add(6 * time.Minute)), "", "tolerance"},
		{"missing signature", body, "", ts, "", "missing X-Front-Signature"},
		{"missing timestamp", body, Sign(secret, "", body), "", "", "missing X-Front-Request-Timestamp"},
		{"timestamp not a number", body, Sign(secret, "soon", body), "soon", "", "not a timestamp"},
		{"signature not base64", body, "%%%", ts, "", "not base64"},
		{"subscription check", []byte(`{"type":"sync","authorization":{"id":"cmp_1"}}`), Sign(secret, ts, []byte(`{"type":"sync","authorization":{"id":"cmp_1"}}`)), ts, "", "subscription check"},
		{"not an event", []byte(`{"hello":1}`), Sign(secret, ts, []byte(`{"hello":1}`)), ts, "", "not an event"},
	}
	v := &Verifier{Secrets: []string{"old-secret", secret}}
	for _, c := range cases {
		h := http.Header{}
		if c.sig != "" {
			h.Set(SignatureHeader, c.sig)
		}
		if c.ts != "" {
			h.Set(TimestampHeader, c.ts)
		}
		id, err := v.Verify(c.body, h.Get, now)
		if c.want != "" {
			if err != nil || id != c.want {
				t.Errorf("%s: id %q err %v, want %q", c.name, id, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.errHas) {
			t.Errorf("%s: err %v, want one saying %q", c.name, err, c.errHas)
		}
	}
	if _, err := (&Verifier{}).Verify(body, http.Header{}.Get, now); err == nil {
		t.Error("a verifier without a secret accepted a delivery")
	}
}

func TestHandshake(t *testing.T) {
	const secret = "front-app-secret"
	now := time.Unix(1767268800, 0)
	ts := Timestamp(now)
	sync := []byte(`{"type":"sync","authorization":{"id":"cmp_1"}}`)
	event := []byte(`{"type":"inbound_received","payload":{"id":"evt_1"}}`)
	v := New(secret)
	cases := []struct {
		name           string
		body           []byte
		sig, ts, chall string
		want           string // reply, "" for not a handshake
	}{
		{"signed check", sync, Sign(secret, ts, sync), ts, "abc", `{"challenge":"abc"}`},
		{"challenge is escaped", sync, Sign(secret, ts, sync), ts, `a"b`, `{"challenge":"a\"b"}`},
		{"unsigned check", sync, "", ts, "abc", ""},
		{"wrongly signed check", sync, Sign("other", ts, sync), ts, "abc", ""},
		{"stale check", sync, Sign(secret, Timestamp(now.Add(-time.Hour)), sync), Timestamp(now.Add(-time.Hour)), "abc", ""},
		{"check without a challenge", sync, Sign(secret, ts, sync), ts, "", ""},
		{"an event with a challenge header", event, Sign(secret, ts, event), ts, "abc", ""},
	}
	for _, c := range cases {
		h := http.Header{}
		for k, val := range map[string]string{SignatureHeader: c.sig, TimestampHeader: c.ts, ChallengeHeader: c.chall} {
			if val != "" {
				h.Set(k, val)
			}
		}
		reply, ok := v.Handshake(c.body, h.Get, now)
		if ok != (c.want != "") || string(reply) != c.want {
			t.Errorf("%s: %q %v, want %q", c.name, reply, ok, c.want)
		}
	}
}

// An empty secret among the configured ones (FRONT_APP_SECRET="s3cret,")
// must not accept a body signed with "".
func TestEmptySecretNeverMatches(t *testing.T) {
	now := time.Unix(1767268800, 0)
	body := []byte(`{"type":"inbound_received","payload":{"id":"evt_forged","type":"inbound","conversation":{"id":"cnv_1"}}}`)
	ts := Timestamp(now)
	h := http.Header{}
	h.Set("X-Front-Signature", Sign("", ts, body))
	h.Set("X-Front-Request-Timestamp", ts)
	v := &Verifier{Secrets: []string{"s3cret", ""}}
	if id, err := v.Verify(body, h.Get, now); err == nil {
		t.Fatalf("a body signed with the empty secret was accepted as %q", id)
	}
}
