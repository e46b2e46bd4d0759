package intercom

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A 429 from Intercom carries X-RateLimit-Reset (Unix seconds), not
// Retry-After: the transport is told to wait until the reset.
func TestRateLimitResetBecomesRetryAfter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-RateLimit-Limit", "167")
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(now.Unix()+7, 10))
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	rt := rateLimitHint{base: http.DefaultTransport, now: func() time.Time { return now }}
	req, _ := http.NewRequest("GET", srv.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Retry-After"); got != "7" {
		t.Errorf("Retry-After %q, want 7", got)
	}
}

// The API's own errors are named in herd's: status, Intercom's code and
// message, the request id, and what to do.
func TestAPIErrorsNamed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		errorList(w, 401, "unauthorized", "Access Token Invalid")
	}))
	defer srv.Close()
	c := &client{base: srv.URL, token: "x", version: DefaultVersion, http: srv.Client()}
	_, err := c.do(context.Background(), "GET", "/contacts", nil, nil)
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("err %v, want an *apiError with status 401", err)
	}
	for _, want := range []string{"GET /contacts", "401", "unauthorized: Access Token Invalid", "req_fake", "INTERCOM_ACCESS_TOKEN"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
