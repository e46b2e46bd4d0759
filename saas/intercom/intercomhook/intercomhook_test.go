package intercomhook

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := func(created int64) []byte {
		return fmt.Appendf(nil, `{"type":"notification_event","id":"notif_1","topic":"conversation.admin.closed","created_at":%d,"data":{"item":{"type":"conversation","id":"7"}}}`, created)
	}
	fresh := body(now.Unix() - 10)
	v := &Verifier{Secrets: []string{"old", "secret"}}
	cases := []struct {
		name    string
		body    []byte
		sig     string
		wantErr string
	}{
		{"valid", fresh, SignatureHeader("secret", fresh), ""},
		{"rotated secret", fresh, SignatureHeader("old", fresh), ""},
		{"missing", fresh, "", "missing X-Hub-Signature"},
		{"wrong secret", fresh, SignatureHeader("other", fresh), "does not match"},
		{"altered body", []byte(strings.Replace(string(fresh), "closed", "opened", 1)), SignatureHeader("secret", fresh), "does not match"},
		{"no prefix", fresh, strings.TrimPrefix(SignatureHeader("secret", fresh), "sha1="), "not of the form"},
		{"sha256 length", fresh, "sha1=" + strings.Repeat("ab", 32), "not a hex SHA-1"},
		{"stale", body(now.Unix() - 400), SignatureHeader("secret", body(now.Unix()-400)), "outside the 5m0s tolerance"},
		{"future", body(now.Unix() + 400), SignatureHeader("secret", body(now.Unix()+400)), "outside the 5m0s tolerance"},
		{"no created_at", []byte(`{"type":"notification_event","id":"n"}`), SignatureHeader("secret", []byte(`{"type":"notification_event","id":"n"}`)), "no created_at"},
		{"not a notification", []byte(`{"id":"n","created_at":1}`), SignatureHeader("secret", []byte(`{"id":"n","created_at":1}`)), "not a notification"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := http.Header{}
			if c.sig != "" {
				hdr.Set("X-Hub-Signature", c.sig)
			}
			id, err := v.Verify(c.body, hdr.Get, now)
			if c.wantErr == "" {
				if err != nil || id != "notif_1" {
					t.Fatalf("got id %q, err %v; want notif_1", id, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err %v, want one containing %q", err, c.wantErr)
			}
		})
	}
	if _, err := (&Verifier{}).Verify(fresh, func(string) string { return SignatureHeader("secret", fresh) }, now); err == nil {
		t.Error("a verifier without secrets accepted a notification")
	}
}

// An empty secret among the configured ones (INTERCOM_CLIENT_SECRET="s3cret,")
// must not accept a body signed with "".
func TestEmptySecretNeverMatches(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := fmt.Appendf(nil, `{"type":"notification_event","id":"notif_forged","topic":"contact.user.created","created_at":%d,"data":{"item":{"type":"contact","id":"1"}}}`, now.Unix())
	h := http.Header{}
	h.Set("X-Hub-Signature", SignatureHeader("", body))
	v := &Verifier{Secrets: []string{"s3cret", ""}}
	if id, err := v.Verify(body, h.Get, now); err == nil {
		t.Fatalf("a body signed with the empty secret was accepted as %q", id)
	}
}
