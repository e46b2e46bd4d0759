// Package fronthook verifies Front application webhook signatures. It
// imports only the standard library so that the collector can verify
// webhooks without knowing anything about the warehouse.
//
// Front signs each delivery with the application's signing secret: the
// X-Front-Signature header is the base64 HMAC-SHA256 of
// "<X-Front-Request-Timestamp>:<raw body>". The timestamp bounds how long a
// captured request can be replayed.
package fronthook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a delivery's timestamp may be from now; Front
// recommends five minutes.
const DefaultTolerance = 5 * time.Minute

// Header names Front sends with every application webhook.
const (
	SignatureHeader = "X-Front-Signature"
	TimestampHeader = "X-Front-Request-Timestamp"
)

// Verifier checks the signature and timestamp of Front webhook deliveries.
type Verifier struct {
	// Secrets are the application's signing secrets. More than one while
	// rolling a secret: a signature by any of them is accepted.
	Secrets []string
	// Tolerance is the largest accepted distance between the delivery's
	// timestamp and now; default DefaultTolerance.
	Tolerance time.Duration
}

// New returns a Verifier for one secret with the default tolerance.
func New(secret string) *Verifier { return &Verifier{Secrets: []string{secret}} }

// signed checks the signature and the timestamp of a delivery.
func (v *Verifier) signed(body []byte, header func(name string) string, now time.Time) (string, error) {
	if len(v.Secrets) == 0 {
		return "", errors.New("front webhook: no signing secret configured (FRONT_APP_SECRET)")
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	sig := strings.TrimSpace(header(SignatureHeader))
	if sig == "" {
		return "", errors.New("front webhook: missing " + SignatureHeader + " header")
	}
	ts := strings.TrimSpace(header(TimestampHeader))
	if ts == "" {
		return "", errors.New("front webhook: missing " + TimestampHeader + " header")
	}
	signedAt, err := parseTimestamp(ts)
	if err != nil {
		return "", err
	}
	if d := now.Sub(signedAt); d > tol || d < -tol {
		return "", fmt.Errorf("front webhook: request timestamp %s is %s from now, outside the %s tolerance",
			signedAt.UTC().Format(time.RFC3339), d.Round(time.Second), tol)
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return "", errors.New("front webhook: " + SignatureHeader + " is not base64")
	}
	ok := false
	for _, secret := range v.Secrets {
		if secret == "" {
			continue // a signature keyed by "" proves nothing
		}
		if hmac.Equal(got, sign(secret, ts, body)) {
			ok = true
		}
	}
	if !ok {
		return "", errors.New("front webhook: signature does not match the body (wrong FRONT_APP_SECRET, or the body was altered)")
	}
	return ts, nil
}

// Verify checks body against its headers and returns the Front event id,
// which is the message id the collector deduplicates on. A non-nil error
// means the request must be refused with 400.
func (v *Verifier) Verify(body []byte, header func(name string) string, now time.Time) (string, error) {
	if _, err := v.signed(body, header, now); err != nil {
		return "", err
	}
	id, err := EventID(body)
	if err != nil {
		return "", fmt.Errorf("front webhook: %w", err)
	}
	return id, nil
}

// ChallengeHeader carries the random string of Front's subscription check.
const ChallengeHeader = "X-Front-Challenge"

// Handshake answers Front's subscription check, sent when an application
// webhook is saved: a signed body of type "sync" with an X-Front-Challenge
// header, to be answered 200 with {"challenge": value}. ok is false for
// anything else (an event, or a check that is not signed), which Verify
// then judges.
func (v *Verifier) Handshake(body []byte, header func(name string) string, now time.Time) ([]byte, bool) {
	challenge := header(ChallengeHeader)
	if challenge == "" || len(challenge) > 1024 {
		return nil, false
	}
	var b struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &b) != nil || b.Type != "sync" {
		return nil, false
	}
	if _, err := v.signed(body, header, now); err != nil {
		return nil, false
	}
	reply, _ := json.Marshal(map[string]string{"challenge": challenge})
	return reply, true
}

// parseTimestamp reads Front's request timestamp: milliseconds since the
// epoch for application webhooks; seconds (possibly with decimals) are
// accepted too.
func parseTimestamp(ts string) (time.Time, error) {
	f, err := strconv.ParseFloat(ts, 64)
	if err != nil || f <= 0 {
		return time.Time{}, fmt.Errorf("front webhook: %s %q is not a timestamp", TimestampHeader, ts)
	}
	if f > 1e11 { // milliseconds: seconds reach 1e11 in the year 5138
		return time.UnixMilli(int64(f)), nil
	}
	return time.UnixMilli(int64(f * 1000)), nil
}

// EventID returns the id of the event a webhook body carries: application
// webhooks wrap it as {"type": ..., "payload": {event}}, rule webhooks send
// the event itself.
func EventID(body []byte) (string, error) {
	var b struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Payload *struct {
			ID string `json:"id"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return "", fmt.Errorf("body is not a JSON event: %v", err)
	}
	if b.Payload != nil && b.Payload.ID != "" {
		return b.Payload.ID, nil
	}
	if b.ID != "" {
		return b.ID, nil
	}
	if b.Type == "sync" {
		return "", errors.New("body is Front's subscription check (type sync), not an event: nothing to store")
	}
	return "", errors.New("body is not an event (no event id at payload.id or id)")
}

// Sign returns the X-Front-Signature Front would send for body with the
// timestamp header ts. Tests and local tooling use it.
func Sign(secret, ts string, body []byte) string {
	return base64.StdEncoding.EncodeToString(sign(secret, ts, body))
}

// Timestamp formats t as Front's X-Front-Request-Timestamp (milliseconds).
func Timestamp(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func sign(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{':'})
	m.Write(body)
	return m.Sum(nil)
}
