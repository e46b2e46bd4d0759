package deploy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgcluster"
)

// upLater are metrics herd up exports only once something happened that a
// short run does not see: herd_check_events is labelled by store and
// appears after herd up's first check, ten minutes in.
var upLater = map[string]bool{"herd_check_events": true}

// TestHerdUpExportsMonitoredMetrics runs the herd binary's `herd up`, sends
// it an event and reads its /metrics: every metric the rules and the
// dashboard read from a component herd up runs (collector, writer, stream,
// archiver, herd check) is there, so the in-process registry of the other
// tests and herd up's wiring cannot drift apart.
func TestHerdUpExportsMonitoredMetrics(t *testing.T) {
	if _, err := pgcluster.FindBinDir(); err != nil {
		t.Skip(err)
	}
	herdHelp(t, "up") // builds the binary
	used := usedMetrics(t, monitoringQueries(t))
	dir := t.TempDir()
	port, _ := pgcluster.FreePort()
	aport, _ := pgcluster.FreePort()
	cmd := exec.Command(helpBin, "up", "--data-dir", filepath.Join(dir, "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--admin-listen", fmt.Sprintf("127.0.0.1:%d", aport), "--write-key", "metrics-key", "--enrich=false")
	cmd.Env = append(os.Environ(), "DATABASE_URL=", "HERD_DATABASE_URL=")
	var mu sync.Mutex
	var out strings.Builder
	cmd.Stdout = writerFunc(func(b []byte) { mu.Lock(); out.Write(b); mu.Unlock() })
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	printed := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	waitFor(t, 90*time.Second, "herd up is ready", func() bool { return strings.Contains(printed(), "see events") })

	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/track", port),
		strings.NewReader(`{"userId":"u1","event":"Signed Up","messageId":"up-metrics-1"}`))
	req.SetBasicAuth("metrics-key", "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("track: %d\n%s", resp.StatusCode, printed())
	}

	var exported map[string]bool
	var values map[string]float64
	waitFor(t, 30*time.Second, "herd up's /metrics shows the event written", func() bool {
		exported, values = scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", aport))
		return exported["herd_writer_rows_total"] && exported["herd_writer_receive_to_commit_seconds_bucket"]
	})
	// The archiver holds the event in an open lake file (for minutes, by
	// default): the gauge says so.
	waitFor(t, 30*time.Second, "herd_archive_buffered_events counts the event held in an open lake file", func() bool {
		_, values = scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", aport))
		return values["herd_archive_buffered_events"] == 1 && values["herd_archive_consumer_lag_messages"] == 1
	})
	for _, n := range used {
		switch {
		case upLater[n]:
		case strings.HasPrefix(n, "herd_replicate_"), strings.HasPrefix(n, "herd_stripe_"):
			// Exported once a replication or Stripe is configured.
		case !exported[n]:
			t.Errorf("herd up does not export %s, which the rules or the dashboard read", n)
		}
	}
}

// scrape reads a Prometheus text exposition and returns the names it
// declares, histograms' series included, and the values of the samples
// without labels.
func scrape(t *testing.T, url string) (map[string]bool, map[string]float64) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %d %s", url, resp.StatusCode, b)
	}
	names, values := map[string]bool{}, map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				values[f[0]] = v
			}
			continue
		}
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		names[f[2]] = true
		switch f[3] {
		case "histogram":
			names[f[2]+"_bucket"], names[f[2]+"_sum"], names[f[2]+"_count"] = true, true, true
		case "summary":
			names[f[2]+"_sum"], names[f[2]+"_count"] = true, true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names, values
}

type writerFunc func([]byte)

func (w writerFunc) Write(b []byte) (int, error) { w(b); return len(b), nil }
