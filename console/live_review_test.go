package console_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/console"
	"github.com/jackc/pgx/v5"
)

// openLive opens /api/live?source=backend for c and returns its events
// (name and data, "" for the end of the stream).
func openLive(t *testing.T, e *env, c *client) <-chan [2]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.URL+"/api/live?source=backend", nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("live: %d", resp.StatusCode)
	}
	ev := &sse{r: bufio.NewReader(resp.Body)}
	out := make(chan [2]string, 64)
	go func() {
		defer close(out)
		for {
			n, d, err := ev.next()
			if err != nil {
				return
			}
			out <- [2]string{n, d}
		}
	}()
	return out
}

// ended waits for the stream to end; an event that still arrives fails
// the test.
func ended(t *testing.T, events <-chan [2]string, within time.Duration, secret string) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case g, ok := <-events:
			if !ok {
				return
			}
			if strings.Contains(g[1], secret) {
				t.Fatalf("event after the stream should have ended: %s %s", g[0], g[1])
			}
		case <-deadline:
			t.Fatalf("the live stream is still open %s later", within)
		}
	}
}

// TestLiveStreamEndsAtSignOut: REVOKE and sign-out end an open live
// stream; an event sent afterwards never reaches it.
func TestLiveStreamEndsAtSignOut(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	adm := e.signIn(t, e.Admin)
	events := openLive(t, e, adm)
	revoke := "REVOKE " + console.AdminRole + " FROM " + pgx.Identifier{e.Admin.Name}.Sanitize()
	for i := 0; ; i++ {
		_, err := e.P.DB.Exec(context.Background(), revoke)
		if err == nil {
			break
		}
		if i == 10 {
			t.Fatalf("%s: %v", revoke, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	adm.json("POST", "/api/logout", nil, 204, nil)
	if st, _, _ := adm.do("GET", "/api/sources", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("after sign-out /api/sources: %d, want 401", st)
	}
	if st := send(t, e.P, `{"messageId":"after-logout","userId":"u1","event":"Secret","properties":{"s":"after-logout-secret"}}`); st != 200 {
		t.Fatalf("collector: %d", st)
	}
	ended(t, events, 3*time.Second, "after-logout-secret")
}

// TestLiveStreamEndsAtRevoke: REVOKE alone ends the stream within a few
// seconds.
func TestLiveStreamEndsAtRevoke(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	adm := e.signIn(t, e.Admin)
	events := openLive(t, e, adm)
	revoke := "REVOKE " + console.AdminRole + " FROM " + pgx.Identifier{e.Admin.Name}.Sanitize()
	for i := 0; ; i++ {
		_, err := e.P.DB.Exec(context.Background(), revoke)
		if err == nil {
			break
		}
		if i == 10 {
			t.Fatalf("%s: %v", revoke, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3500 * time.Millisecond)
	if st := send(t, e.P, `{"messageId":"after-revoke","userId":"u1","event":"Secret","properties":{"s":"after-revoke-secret"}}`); st != 200 {
		t.Fatalf("collector: %d", st)
	}
	ended(t, events, 5*time.Second, "after-revoke-secret")
}

// TestLiveStreamEndsAtExpiry: a session past its lifetime ends its
// stream.
func TestLiveStreamEndsAtExpiry(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	adm := e.signIn(t, e.Admin)
	events := openLive(t, e, adm)
	e.Clock.Advance(13 * time.Hour)
	time.Sleep(1500 * time.Millisecond)
	if st := send(t, e.P, `{"messageId":"after-expiry","userId":"u1","event":"Secret","properties":{"s":"after-expiry-secret"}}`); st != 200 {
		t.Fatalf("collector: %d", st)
	}
	ended(t, events, 5*time.Second, "after-expiry-secret")
}
