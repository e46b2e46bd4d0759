package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/herdtest"
)

// chunked hides a reader's length, so that the client sends the body with
// Transfer-Encoding: chunked.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestChunkedBodies: a body without Content-Length is read as it arrives,
// admitted 64 KiB at a time: a small one is stored, one past the batch
// limit is refused 413 with a JSON error, whatever it would have grown to.
func TestChunkedBodies(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	send := func(body io.Reader) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, p.URL+"/v1/batch", chunked{body})
		req.Header.Set("Authorization", basic(p.WriteKey))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	for i := range 100 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"type":"track","event":"Chunked","userId":"u","messageId":"chunked-` + string(rune('a'+i/26)) + string(rune('a'+i%26)) + `","properties":{"pad":"` + strings.Repeat("c", 1000) + `"}}`)
	}
	b.WriteString(`]}`)
	if code, body := send(strings.NewReader(b.String())); code != 200 {
		t.Fatalf("chunked batch of 100 KB: %d %s", code, body)
	}
	p.WaitRows(t, 100, 30*time.Second, `SELECT count(*) FROM herd.events WHERE message_id LIKE 'chunked-%'`)

	// 2 MiB, chunked: past the limit. The server may close before the
	// client has written it all: then the client sees an error, not a
	// status, which is as good.
	big := io.MultiReader(strings.NewReader(`{"batch":[{"type":"track","event":"x","userId":"u","properties":{"p":"`), strings.NewReader(strings.Repeat("z", 2<<20)), strings.NewReader(`"}}]}`))
	code, body := send(big)
	if code != 0 && (code != 413 || !strings.Contains(body, `"error"`)) {
		t.Errorf("chunked body of 2 MiB: %d %s; want 413 with a JSON error", code, body)
	}
}
