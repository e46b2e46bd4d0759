package front

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxBody bounds what herd reads of one API answer: a page of 100 objects
// is far below it; a larger answer is an error, not a reason to grow.
const maxBody = 32 << 20

// errNotFound is what get returns when Front answers 404: the object was
// deleted (or never existed in this company).
var errNotFound = errors.New("not found in Front")

// apiError is an error answer of the Front API, which names itself in an
// _error object.
type apiError struct {
	Status  int
	Title   string
	Message string
	URL     string
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("Front API answered %d", e.Status)
	if e.Title != "" {
		msg += " " + e.Title
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	switch e.Status {
	case http.StatusUnauthorized:
		msg += " (check FRONT_API_TOKEN: an API token from Settings > Developers with read access)"
	case http.StatusForbidden:
		msg += " (the API token lacks a scope this object needs)"
	}
	return msg + " for GET " + e.URL
}

// client reads the Front Core API.
type client struct {
	http  *http.Client
	base  *url.URL // scheme, host and path prefix every request must stay under
	token string
}

// page is one answer of a list endpoint.
type page struct {
	Results []json.RawMessage `json:"_results"`
	Next    string            // the next page's URL, "" on the last page
	At      time.Time         // Front's clock when it answered (zero when unknown)
}

// get reads one URL (absolute, under the API base) and returns the body.
func (c *client) get(ctx context.Context, u string) ([]byte, error) {
	body, _, err := c.getAt(ctx, u)
	return body, err
}

// getAt is get that also returns Front's clock when it answered (the Date
// header of the answer, zero when absent or unreadable): herd compares
// Front's times only with Front's times, never with its own clock.
func (c *client) getAt(ctx context.Context, u string) ([]byte, time.Time, error) {
	var at time.Time
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, at, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, at, fmt.Errorf("GET %s: %w", redactQuery(u), err)
	}
	defer resp.Body.Close()
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		at = d
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, at, fmt.Errorf("GET %s: read the answer: %w", redactQuery(u), err)
	}
	if len(body) > maxBody {
		return nil, at, fmt.Errorf("GET %s: answer larger than %d bytes", redactQuery(u), maxBody)
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, at, errNotFound
	}
	if resp.StatusCode != http.StatusOK {
		e := &apiError{Status: resp.StatusCode, URL: redactQuery(u)}
		var b struct {
			Error struct {
				Title   string `json:"title"`
				Message string `json:"message"`
			} `json:"_error"`
		}
		if json.Unmarshal(body, &b) == nil {
			e.Title, e.Message = b.Error.Title, b.Error.Message
		}
		return nil, at, e
	}
	return body, at, nil
}

// url builds an absolute URL for path under the API base.
func (c *client) url(path string, q url.Values) string {
	u := *c.base
	u.Path = strings.TrimRight(c.base.Path, "/") + path
	u.RawQuery = q.Encode()
	return u.String()
}

// under reports whether u points at the configured API: the same scheme,
// host and path prefix. A page URL elsewhere (a bookmark saved under
// another base) is refused, so that herd never sends its token away.
func (c *client) under(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("next page link %q is not a URL: %w", u, err)
	}
	prefix := strings.TrimRight(c.base.Path, "/") + "/"
	if p.Scheme != c.base.Scheme || p.Host != c.base.Host || p.User != nil || !strings.HasPrefix(p.Path, prefix) {
		return fmt.Errorf("refusing the page URL %s: it is not under the Front API base %s (the token is sent only there)",
			redactQuery(u), c.base.String())
	}
	return nil
}

// rebase turns a next-page link into the same path and query under the
// configured base. Front answers with links on the company's own host
// (https://yourDomain.api.frontapp.com/...) whatever host was asked, and a
// proxy may not rewrite them; herd follows only the link's path and query,
// always on the configured base, so that a link naming another host (or a
// hostile answer) never receives the token.
func (c *client) rebase(next string) (string, error) {
	p, err := url.Parse(next)
	if err != nil {
		return "", fmt.Errorf("next page link %q is not a URL: %w", redactQuery(next), err)
	}
	if !strings.HasPrefix(p.Path, "/") {
		return "", fmt.Errorf("next page link %s has no absolute path", redactQuery(next))
	}
	u := *c.base
	prefix := strings.TrimRight(c.base.Path, "/")
	u.Path, u.RawPath = p.Path, p.RawPath
	if !strings.HasPrefix(p.Path, prefix+"/") {
		u.Path = prefix + p.Path
		u.RawPath = ""
	}
	u.RawQuery, u.Fragment, u.User = p.RawQuery, "", nil
	return u.String(), nil
}

// list reads one page of a list endpoint. When the page was read but its
// next-page link is unusable, the page comes back with the error.
func (c *client) list(ctx context.Context, u string) (page, error) {
	if err := c.under(u); err != nil {
		return page{}, err
	}
	body, at, err := c.getAt(ctx, u)
	if err != nil {
		return page{}, err
	}
	var p struct {
		Results    []json.RawMessage `json:"_results"`
		Pagination struct {
			Next *string `json:"next"`
		} `json:"_pagination"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return page{}, fmt.Errorf("GET %s: answer is not a Front list: %w", redactQuery(u), err)
	}
	out := page{Results: p.Results, At: at}
	if p.Pagination.Next != nil && *p.Pagination.Next != "" {
		if out.Next, err = c.rebase(*p.Pagination.Next); err != nil {
			return out, err
		}
	}
	return out, nil
}

// all reads every page from u, calling each with every page's results.
func (c *client) all(ctx context.Context, u string, each func([]json.RawMessage) error) error {
	for u != "" {
		p, err := c.list(ctx, u)
		if err != nil {
			return err
		}
		if err := each(p.Results); err != nil {
			return err
		}
		u = p.Next
	}
	return nil
}

// redactQuery drops the query of a URL for messages: page tokens are long
// and say nothing to an operator.
func redactQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}

// frontTime formats t as Front's query timestamps: seconds with three
// decimals.
func frontTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// parseFrontTime reads a Front timestamp (JSON number of seconds).
func parseFrontTime(v json.RawMessage) (time.Time, bool) {
	if len(v) == 0 || string(v) == "null" {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f <= 0 {
		return time.Time{}, false
	}
	return time.UnixMicro(int64(f * 1e6)), true
}

// rateLimitPause is an http.RoundTripper under the retrying transport that
// honours Front's x-ratelimit-remaining and x-ratelimit-reset headers: when
// the company's budget is spent, the next request waits for the reset
// (at most maxWait) rather than spending a 429.
type rateLimitPause struct {
	base    http.RoundTripper
	maxWait time.Duration
	mu      sync.Mutex
	until   time.Time // nothing is sent before it
}

func newRateLimitPause(base http.RoundTripper, maxWait time.Duration) *rateLimitPause {
	if base == nil {
		base = http.DefaultTransport
	}
	return &rateLimitPause{base: base, maxWait: maxWait}
}

func (r *rateLimitPause) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	d := time.Until(r.until)
	r.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(min(d, r.maxWait))
		select {
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		case <-t.C:
		}
	}
	resp, err := r.base.RoundTrip(req)
	if err != nil || resp.Header.Get("X-Ratelimit-Remaining") != "0" {
		return resp, err
	}
	if reset, err := strconv.ParseFloat(resp.Header.Get("X-Ratelimit-Reset"), 64); err == nil && reset > 0 {
		at := time.UnixMilli(int64(reset * 1000)) // seconds, possibly with decimals
		if reset > 1e11 {
			at = time.UnixMilli(int64(reset)) // milliseconds
		}
		r.mu.Lock()
		if at.After(r.until) {
			r.until = at
		}
		r.mu.Unlock()
	}
	return resp, nil
}
