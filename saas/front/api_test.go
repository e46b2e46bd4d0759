package front

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// A next-page link keeps only its path and query, on the configured base:
// Front names the company's host, herd asks the one it was given.
func TestRebaseNextLink(t *testing.T) {
	for base, cases := range map[string]map[string]string{
		"https://api2.frontapp.com": {
			"https://acme.api.frontapp.com/contacts?page_token=x&limit=50": "https://api2.frontapp.com/contacts?page_token=x&limit=50",
			"https://evil.example/events?q%5Bafter%5D=1":                   "https://api2.frontapp.com/events?q%5Bafter%5D=1",
			"https://user:pw@evil.example/teams":                           "https://api2.frontapp.com/teams",
			"/teams?page_token=y":                                          "https://api2.frontapp.com/teams?page_token=y",
			"::not a url":                                                  "",
			"teams":                                                        "",
		},
		"https://proxy.example/front": {
			"https://acme.api.frontapp.com/contacts?page_token=x": "https://proxy.example/front/contacts?page_token=x",
			"https://proxy.example/front/contacts?page_token=x":   "https://proxy.example/front/contacts?page_token=x",
		},
	} {
		b, _ := url.Parse(base)
		c := &client{base: b}
		for next, want := range cases {
			got, err := c.rebase(next)
			if (err != nil) != (want == "") || got != want {
				t.Errorf("base %s: rebase(%q) = %q, %v; want %q", base, next, got, err, want)
			}
			if err == nil {
				if err := c.under(got); err != nil {
					t.Errorf("base %s: rebase(%q) = %q is not under the base: %v", base, next, got, err)
				}
			}
		}
	}
}

// Page URLs are read only under the configured base: same scheme, host
// and path prefix, no user info.
func TestUnderAPIBase(t *testing.T) {
	base, _ := url.Parse("https://proxy.example/front")
	c := &client{base: base}
	for u, ok := range map[string]bool{
		"https://proxy.example/front/contacts?page_token=x": true,
		"https://proxy.example/front/events":                true,
		"http://proxy.example/front/contacts":               false, // downgraded to plain text
		"https://evil.example/front/contacts":               false,
		"https://proxy.example.evil.example/front/contacts": false,
		"https://proxy.example/frontier/contacts":           false,
		"https://proxy.example/other":                       false,
		"https://user:pw@proxy.example/front/contacts":      false,
		"//evil.example/front/contacts":                     false,
		"::not a url":                                       false,
	} {
		if err := c.under(u); (err == nil) != ok {
			t.Errorf("under(%q) = %v, want ok %v", u, err, ok)
		}
	}
}

// When Front says the budget is spent (x-ratelimit-remaining 0), the next
// request waits for x-ratelimit-reset instead of spending a 429.
func TestRateLimitHeadersPause(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	var reset time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			reset = time.Now().Add(300 * time.Millisecond)
			w.Header().Set("X-Ratelimit-Remaining", "0")
			w.Header().Set("X-Ratelimit-Reset", strconv.FormatFloat(float64(reset.UnixMilli())/1000, 'f', 3, 64))
		}
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := &http.Client{Transport: newRateLimitPause(nil, time.Minute)}
	for range 2 {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if early := reset.Sub(time.Now()); early > 10*time.Millisecond {
		t.Fatalf("second request sent %s before the announced reset", early)
	}
}
