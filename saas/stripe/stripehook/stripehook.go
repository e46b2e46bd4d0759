// Package stripehook verifies Stripe webhook signatures. It imports only the
// standard library so that the collector can verify webhooks without knowing
// anything about the warehouse.
package stripehook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a signature's timestamp may be from now; it is
// Stripe's own default and bounds how long a captured request can be replayed.
const DefaultTolerance = 5 * time.Minute

// Verifier checks the Stripe-Signature header of webhook deliveries.
type Verifier struct {
	// Secrets are the endpoint's signing secrets (whsec_...). More than one
	// while rolling a secret: a signature by any of them is accepted.
	Secrets []string
	// Tolerance is the largest accepted distance between the signature's
	// timestamp and now; default DefaultTolerance.
	Tolerance time.Duration
}

// New returns a Verifier for one secret with the default tolerance.
func New(secret string) *Verifier { return &Verifier{Secrets: []string{secret}} }

// Verify checks body against its Stripe-Signature header and returns the
// event id, which is the message id the collector deduplicates on. Its
// signature matches the collector's webhook hook; a non-nil error means the
// request must be refused with 400.
func (v *Verifier) Verify(body []byte, header func(name string) string, now time.Time) (string, error) {
	if len(v.Secrets) == 0 {
		return "", errors.New("stripe webhook: no signing secret configured (STRIPE_WEBHOOK_SECRET)")
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	h := header("Stripe-Signature")
	if h == "" {
		return "", errors.New("stripe webhook: missing Stripe-Signature header")
	}
	var ts int64 = -1
	var sigs [][]byte
	for part := range strings.SplitSeq(h, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return "", fmt.Errorf("stripe webhook: Stripe-Signature timestamp %q is not a number", val)
			}
			ts = n
		case "v1":
			// Other schemes (v0 is test-only) are ignored, as Stripe advises.
			if b, err := hex.DecodeString(val); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	if ts < 0 {
		return "", errors.New("stripe webhook: Stripe-Signature has no timestamp (t=)")
	}
	if len(sigs) == 0 {
		return "", errors.New("stripe webhook: Stripe-Signature has no v1 signature")
	}
	signedAt := time.Unix(ts, 0)
	if d := now.Sub(signedAt); d > tol || d < -tol {
		return "", fmt.Errorf("stripe webhook: signature timestamp %s is %s from now, outside the %s tolerance",
			signedAt.UTC().Format(time.RFC3339), d.Round(time.Second), tol)
	}
	ok := false
	for _, secret := range v.Secrets {
		if secret == "" {
			continue // a signature keyed by "" proves nothing
		}
		want := sign(secret, ts, body)
		for _, s := range sigs {
			if hmac.Equal(s, want) {
				ok = true
			}
		}
	}
	if !ok {
		return "", errors.New("stripe webhook: signature does not match the body (wrong STRIPE_WEBHOOK_SECRET, or the body was altered)")
	}
	var ev struct {
		ID     string `json:"id"`
		Object string `json:"object"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return "", fmt.Errorf("stripe webhook: body is not a JSON event: %v", err)
	}
	if ev.ID == "" || ev.Object != "event" {
		return "", errors.New("stripe webhook: body is not an event (no id, or object is not \"event\")")
	}
	return ev.ID, nil
}

// SignatureHeader returns the Stripe-Signature header Stripe would send for
// body signed with secret at t. Tests and local tooling use it.
func SignatureHeader(secret string, body []byte, t time.Time) string {
	ts := t.Unix()
	return "t=" + strconv.FormatInt(ts, 10) + ",v1=" + hex.EncodeToString(sign(secret, ts, body))
}

func sign(secret string, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}
