// Package intercomhook verifies Intercom webhook notifications. It imports
// only the standard library so that the collector can verify them without
// knowing anything about the warehouse.
package intercomhook

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultTolerance is how old a notification may be (by its created_at) and
// still be accepted. Intercom's signature covers the body only, with no
// timestamp of its own, so the body's created_at is what bounds how long a
// captured request can be replayed.
const DefaultTolerance = 5 * time.Minute

// Verifier checks the X-Hub-Signature header of Intercom notifications:
// "sha1=" and the hex HMAC-SHA1 of the raw body keyed by the app's client
// secret.
type Verifier struct {
	// Secrets are the app's client secrets; more than one while rotating.
	Secrets []string
	// Tolerance is the largest accepted age of a notification (and how far
	// in the future its created_at may be); default DefaultTolerance.
	Tolerance time.Duration
}

// New returns a Verifier for one secret with the default tolerance.
func New(secret string) *Verifier { return &Verifier{Secrets: []string{secret}} }

// Verify checks body against its X-Hub-Signature header and returns the
// notification id, the message id the collector deduplicates on. A non-nil
// error means the request must be refused with 400.
func (v *Verifier) Verify(body []byte, header func(name string) string, now time.Time) (string, error) {
	if len(v.Secrets) == 0 {
		return "", errors.New("intercom webhook: no client secret configured (INTERCOM_CLIENT_SECRET)")
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	h := strings.TrimSpace(header("X-Hub-Signature"))
	if h == "" {
		return "", errors.New("intercom webhook: missing X-Hub-Signature header")
	}
	hexSig, ok := strings.CutPrefix(h, "sha1=")
	if !ok {
		return "", errors.New("intercom webhook: X-Hub-Signature is not of the form sha1=<hex>")
	}
	sig, err := hex.DecodeString(hexSig)
	if err != nil || len(sig) != sha1.Size {
		return "", errors.New("intercom webhook: X-Hub-Signature is not a hex SHA-1 digest")
	}
	match := false
	for _, secret := range v.Secrets {
		if secret == "" {
			continue // a signature keyed by "" proves nothing
		}
		if hmac.Equal(sig, sign(secret, body)) {
			match = true
		}
	}
	if !match {
		return "", errors.New("intercom webhook: signature does not match the body (wrong INTERCOM_CLIENT_SECRET, or the body was altered)")
	}
	var n struct {
		Type      string `json:"type"`
		ID        string `json:"id"`
		CreatedAt *int64 `json:"created_at"`
	}
	if err := json.Unmarshal(body, &n); err != nil {
		return "", fmt.Errorf("intercom webhook: body is not a JSON notification: %v", err)
	}
	if n.ID == "" || n.Type != "notification_event" {
		return "", errors.New("intercom webhook: body is not a notification (no id, or type is not \"notification_event\")")
	}
	if n.CreatedAt == nil {
		return "", errors.New("intercom webhook: notification has no created_at")
	}
	created := time.Unix(*n.CreatedAt, 0)
	if d := now.Sub(created); d > tol || d < -tol {
		return "", fmt.Errorf("intercom webhook: notification created at %s is %s from now, outside the %s tolerance",
			created.UTC().Format(time.RFC3339), d.Round(time.Second), tol)
	}
	return n.ID, nil
}

// SignatureHeader returns the X-Hub-Signature header Intercom would send for
// body signed with secret. Tests and local tooling use it.
func SignatureHeader(secret string, body []byte) string {
	return "sha1=" + hex.EncodeToString(sign(secret, body))
}

func sign(secret string, body []byte) []byte {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write(body)
	return m.Sum(nil)
}
