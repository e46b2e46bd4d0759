package saas

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/time/rate"
)

// Limits bounds how hard a connector presses on an API and how it retries.
type Limits struct {
	RequestsPerSecond float64       // steady request rate; default 20
	Burst             int           // requests allowed at once above the rate; default 5
	MaxRetries        int           // retries of one request; default 8; negative: none
	MinBackoff        time.Duration // first wait; default 500ms, doubled per retry with jitter
	MaxBackoff        time.Duration // longest wait, also caps Retry-After; default 30s
	// RetryHeader names a response header by which the API says whether a
	// request may be retried ("Stripe-Should-Retry"): "true" forces a retry,
	// "false" forbids one. Empty: decide by status code alone.
	RetryHeader string
}

func (l *Limits) defaults() {
	if l.RequestsPerSecond <= 0 {
		l.RequestsPerSecond = 20
	}
	if l.Burst <= 0 {
		l.Burst = 5
	}
	if l.MaxRetries == 0 {
		l.MaxRetries = 8
	}
	if l.MinBackoff <= 0 {
		l.MinBackoff = 500 * time.Millisecond
	}
	if l.MaxBackoff <= 0 {
		l.MaxBackoff = 30 * time.Second
	}
}

// Transport is an http.RoundTripper that waits for the rate limiter before
// each attempt and retries 429s, 5xx and network errors with exponential
// backoff. Only requests that are safe to repeat are retried: GET and HEAD, or
// any request carrying an Idempotency-Key, or one the API itself says to retry.
type Transport struct {
	base    http.RoundTripper
	limits  Limits
	limiter *rate.Limiter
	// Observe, if set, is called after every attempt with its status code (0
	// for a network error) and whether it will be retried; connectors count
	// requests and retries with it.
	Observe func(status int, retry bool)
}

// NewTransport wraps base (nil: http.DefaultTransport) with limits.
func NewTransport(base http.RoundTripper, limits Limits) *Transport {
	limits.defaults()
	if base == nil {
		base = http.DefaultTransport
	}
	return &Transport{
		base:    base,
		limits:  limits,
		limiter: rate.NewLimiter(rate.Limit(limits.RequestsPerSecond), limits.Burst),
	}
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		if err := t.limiter.Wait(ctx); err != nil {
			return nil, err
		}
		r := req
		if attempt > 0 {
			r = req.Clone(ctx)
			if req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r.Body = body
			}
		}
		resp, err := t.base.RoundTrip(r)
		retry, wait := t.decide(req, resp, err, attempt)
		if t.Observe != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Observe(status, retry)
		}
		if !retry {
			return resp, err
		}
		if resp != nil {
			// Drain so that the connection is reused.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

func (t *Transport) decide(req *http.Request, resp *http.Response, err error, attempt int) (bool, time.Duration) {
	if attempt >= t.limits.MaxRetries || req.Context().Err() != nil {
		return false, 0
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false, 0 // cannot resend the body
	}
	repeatable := req.Method == http.MethodGet || req.Method == http.MethodHead || req.Header.Get("Idempotency-Key") != ""
	if err != nil {
		return repeatable, t.backoff(attempt)
	}
	if t.limits.RetryHeader != "" {
		switch resp.Header.Get(t.limits.RetryHeader) {
		case "true":
			return true, t.wait(resp, attempt)
		case "false":
			return false, 0
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return repeatable, t.wait(resp, attempt)
	}
	return false, 0
}

// wait honours Retry-After when the API sends one.
func (t *Transport) wait(resp *http.Response, attempt int) time.Duration {
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, t.limits.MaxBackoff)
	}
	return t.backoff(attempt)
}

// backoff doubles from MinBackoff, with jitter so that many clients throttled
// together do not come back together.
func (t *Transport) backoff(attempt int) time.Duration {
	d := t.limits.MinBackoff << min(attempt, 20)
	if d <= 0 || d > t.limits.MaxBackoff {
		d = t.limits.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
