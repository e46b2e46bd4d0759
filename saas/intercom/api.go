package intercom

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// apiError is an answer of the Intercom API other than 2xx, with the error
// list Intercom sends ({"type": "error.list", "errors": [{code, message}]}).
type apiError struct {
	Method, Path string
	Status       int
	Code         string // first error's code: unauthorized, not_found, rate_limit_exceeded...
	Message      string
	RequestID    string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("Intercom API %s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Code != "" || e.Message != "" {
		s += fmt.Sprintf(" (%s: %s)", e.Code, e.Message)
	}
	if e.RequestID != "" {
		s += " request_id " + e.RequestID
	}
	switch e.Status {
	case http.StatusUnauthorized:
		s += "; check INTERCOM_ACCESS_TOKEN"
	case http.StatusForbidden:
		s += "; the app needs read permission on this object"
	}
	return s
}

func isNotFound(err error) bool {
	var e *apiError
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// client speaks Intercom's REST API: Bearer token, a pinned Intercom-Version,
// JSON both ways.
type client struct {
	base    string
	token   string
	version string
	http    *http.Client
}

// maxBody bounds what herd reads of one answer: a conversation with its 500
// parts is well under it.
const maxBody = 64 << 20

// do sends one request and returns the answer's body; a non-2xx answer is an
// *apiError.
func (c *client) do(ctx context.Context, method, path string, query url.Values, body any) ([]byte, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	var key string
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
		sum := sha256.Sum256(append([]byte(method+" "+path+" "), b...))
		key = hex.EncodeToString(sum[:16])
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("Intercom API %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Intercom-Version", c.version)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		// A search is a read: mark it safe to repeat so that the transport
		// retries it after a 429 like a GET. The key is the request's own
		// hash, so that an API honouring it could only merge identical reads.
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("Intercom API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("Intercom API %s %s: read answer: %w", method, path, err)
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("Intercom API %s %s: answer larger than %d bytes", method, path, maxBody)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Method: method, Path: path, Status: resp.StatusCode}
		var el struct {
			RequestID string `json:"request_id"`
			Errors    []struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"errors"`
		}
		if json.Unmarshal(b, &el) == nil && len(el.Errors) > 0 {
			e.Code, e.Message, e.RequestID = el.Errors[0].Code, el.Errors[0].Message, el.RequestID
		}
		return nil, e
	}
	return b, nil
}

// page is one answer of a list, scroll or search endpoint.
type page struct {
	items      []json.RawMessage
	total      int64  // total_count, 0 when absent
	next       string // pages.next.starting_after, "" on the last page
	scrollNext string // scroll_param
}

func parsePage(b []byte, itemsKey string) (page, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return page{}, fmt.Errorf("parse Intercom list: %w", err)
	}
	var p page
	if v, ok := raw[itemsKey]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &p.items); err != nil {
			return p, fmt.Errorf("parse Intercom list: %q is not an array: %w", itemsKey, err)
		}
	}
	_ = json.Unmarshal(raw["total_count"], &p.total)
	_ = json.Unmarshal(raw["scroll_param"], &p.scrollNext)
	var pages struct {
		Next json.RawMessage `json:"next"`
	}
	if json.Unmarshal(raw["pages"], &pages) == nil && len(pages.Next) > 0 {
		// List and search endpoints give {"starting_after": ...}; a few older
		// ones give a URL, which herd does not use.
		var n struct {
			StartingAfter string `json:"starting_after"`
		}
		if json.Unmarshal(pages.Next, &n) == nil {
			p.next = n.StartingAfter
		}
	}
	return p, nil
}

// rateLimitHint gives the transport Intercom's retry hint: a 429 carries
// X-RateLimit-Reset (when the window resets, Unix seconds) rather than
// Retry-After, so it is translated into one.
type rateLimitHint struct {
	base http.RoundTripper
	now  func() time.Time
}

func (r rateLimitHint) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "" {
		return resp, err
	}
	if reset, perr := strconv.ParseInt(strings.TrimSpace(resp.Header.Get("X-RateLimit-Reset")), 10, 64); perr == nil {
		wait := time.Until(time.Unix(reset, 0))
		if r.now != nil {
			wait = time.Unix(reset, 0).Sub(r.now())
		}
		secs := max(0, int64((wait+time.Second-1)/time.Second))
		resp.Header.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	return resp, nil
}

// updatedAt reads an object's id and updated_at (Unix seconds).
func idAndUpdated(data []byte) (string, int64, error) {
	var o struct {
		ID        json.RawMessage `json:"id"`
		UpdatedAt int64           `json:"updated_at"`
	}
	if err := json.Unmarshal(data, &o); err != nil {
		return "", 0, fmt.Errorf("parse Intercom object: %w", err)
	}
	id := jsonString(o.ID)
	if id == "" {
		return "", 0, fmt.Errorf("Intercom object without an id: %.200s", data)
	}
	return id, o.UpdatedAt, nil
}

// jsonString reads an id Intercom sends as a string or, for a few objects
// (tags, segments in older versions), a number.
func jsonString(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(v, &n) == nil {
		return n.String()
	}
	return ""
}
