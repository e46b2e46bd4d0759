package load

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// An https URL with a path prefix is sent over TLS to the prefixed paths.
func TestHTTPSWithPrefix(t *testing.T) {
	var hits, wrong atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/collect/v1/track" || r.TLS == nil {
			wrong.Add(1)
			http.Error(w, "wrong path", 404)
			return
		}
		hits.Add(1)
		_, _ = w.Write([]byte(`{"success":true}`))
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{
		URL: srv.URL + "/collect/", WriteKey: "k", Conns: 2, Duration: 200 * time.Millisecond, MaxEvents: 50,
		TLS: srv.Client().Transport.(*http.Transport).TLSClientConfig,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if hits.Load() == 0 || wrong.Load() != 0 || res.Failed != 0 || res.Events != hits.Load() {
		t.Fatalf("hits %d, wrong %d, result %+v", hits.Load(), wrong.Load(), res)
	}
}
