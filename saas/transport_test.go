package saas

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestTransportRetries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		method    string
		answers   []int             // status per attempt; the last repeats
		header    map[string]string // on every failing answer
		maxRetry  int
		wantCalls int
		wantCode  int
	}{
		{name: "429 then ok", method: "GET", answers: []int{429, 429, 200}, wantCalls: 3, wantCode: 200},
		{name: "5xx then ok", method: "GET", answers: []int{503, 200}, wantCalls: 2, wantCode: 200},
		{name: "should-retry false stops", method: "GET", answers: []int{500, 200}, header: map[string]string{"Stripe-Should-Retry": "false"}, wantCalls: 1, wantCode: 500},
		{name: "should-retry true on 409", method: "GET", answers: []int{409, 200}, header: map[string]string{"Stripe-Should-Retry": "true"}, wantCalls: 2, wantCode: 200},
		{name: "4xx not retried", method: "GET", answers: []int{404, 200}, wantCalls: 1, wantCode: 404},
		{name: "POST without idempotency key not retried", method: "POST", answers: []int{503, 200}, wantCalls: 1, wantCode: 503},
		{name: "gives up after MaxRetries", method: "GET", answers: []int{429}, maxRetry: 3, wantCalls: 4, wantCode: 429},
		{name: "Retry-After honoured", method: "GET", answers: []int{429, 200}, header: map[string]string{"Retry-After": "0"}, wantCalls: 2, wantCode: 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1)) - 1
				code := c.answers[min(n, len(c.answers)-1)]
				if code >= 300 {
					for k, v := range c.header {
						w.Header().Set(k, v)
					}
				}
				w.WriteHeader(code)
			}))
			defer srv.Close()
			tr := NewTransport(nil, Limits{RequestsPerSecond: 1000, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
				MaxRetries: c.maxRetry, RetryHeader: "Stripe-Should-Retry"})
			var retries int
			tr.Observe = func(_ int, retry bool) {
				if retry {
					retries++
				}
			}
			req, _ := http.NewRequest(c.method, srv.URL, nil)
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.wantCode || int(calls.Load()) != c.wantCalls || retries != c.wantCalls-1 {
				t.Errorf("status %d after %d calls (%d retries observed); want %d after %d", resp.StatusCode, calls.Load(), retries, c.wantCode, c.wantCalls)
			}
		})
	}
}

func TestTransportRateLimit(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	c := &http.Client{Transport: NewTransport(nil, Limits{RequestsPerSecond: 50, Burst: 1})}
	start := time.Now()
	for range 11 {
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// 10 intervals of 20ms after the first request.
	if d := time.Since(start); d < 180*time.Millisecond {
		t.Errorf("11 requests at 50/s took %s, want at least 200ms", d)
	}
}

func TestTransportStopsWithContext(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(429) }))
	defer srv.Close()
	tr := NewTransport(nil, Limits{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	start := time.Now()
	if _, err := (&http.Client{Transport: tr}).Do(req); err == nil {
		t.Fatal("want the context's error while backing off")
	}
	if time.Since(start) > 5*time.Second {
		t.Error("backoff ignored the context")
	}
}
