package stream_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/natstest"
	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scrapeMetrics serves reg over HTTP as herd's /metrics does and returns the
// status and the unlabelled samples by name.
func scrapeMetrics(t *testing.T, url string) (int, map[string]float64) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<20))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			t.Fatalf("scrape: %q: %v", line, err)
		}
		out[name] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// TestStreamUpFollowsNATS scrapes the stream collector while JetStream
// answers (herd_stream_up 1), while the NATS server is down (0, and the
// rest of /metrics still scrapes), for a stream that does not exist (0),
// and after NATS is back (1 again).
func TestStreamUpFollowsNATS(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	cfg := natstest.StreamConfig(t)
	nc, err := stream.Connect(srv.ClientURL(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Ensure(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	missing := natstest.StreamConfig(t) // never created

	reg := prometheus.NewRegistry()
	reg.MustRegister(stream.NewCollector(js, cfg, nil))
	other := prometheus.NewGauge(prometheus.GaugeOpts{Name: "herd_test_other", Help: "Another metric on the same /metrics."})
	other.Set(7)
	reg.MustRegister(other)
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	t.Cleanup(hs.Close)

	regMissing := prometheus.NewRegistry()
	regMissing.MustRegister(stream.NewCollector(js, missing, nil))
	hsMissing := httptest.NewServer(promhttp.HandlerFor(regMissing, promhttp.HandlerOpts{}))
	t.Cleanup(hsMissing.Close)

	expect := func(t *testing.T, url string, up float64, streamShown bool) {
		t.Helper()
		status, m := scrapeMetrics(t, url)
		if status != http.StatusOK {
			t.Fatalf("scrape answered %d, want 200", status)
		}
		got, ok := m["herd_stream_up"]
		if !ok || got != up {
			t.Fatalf("herd_stream_up = %v (present %v), want %v; scrape: %v", got, ok, up, m)
		}
		if _, ok := m["herd_stream_messages"]; ok != streamShown {
			t.Errorf("herd_stream_messages present = %v, want %v", ok, streamShown)
		}
	}

	t.Run("NATS up", func(t *testing.T) {
		expect(t, hs.URL, 1, true)
	})
	t.Run("stream missing", func(t *testing.T) {
		expect(t, hsMissing.URL, 0, false)
	})
	t.Run("NATS down", func(t *testing.T) {
		srv.Shutdown()
		srv.WaitForShutdown()
		start := time.Now()
		expect(t, hs.URL, 0, false)
		if _, m := scrapeMetrics(t, hs.URL); m["herd_test_other"] != 7 {
			t.Errorf("the rest of /metrics did not scrape with NATS down: %v", m)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("scrapes with NATS down took %s", d)
		}
	})
	t.Run("NATS back", func(t *testing.T) {
		srv.Restart()
		deadline := time.Now().Add(20 * time.Second)
		for nc.Status() != nats.CONNECTED && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		expect(t, hs.URL, 1, true)
	})
}
