package stripe

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/schemas"
)

const stripeMockVersion = "v0.203.0"

// stripeMock returns the base URL of a stripe-mock started for this test,
// installing stripe-mock with go install if it is missing.
func stripeMock(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("stripe-mock")
	if err != nil {
		gobin, _ := exec.Command("go", "env", "GOBIN").Output()
		dir := strings.TrimSpace(string(gobin))
		if dir == "" {
			gopath, _ := exec.Command("go", "env", "GOPATH").Output()
			dir = filepath.Join(strings.TrimSpace(strings.Split(string(gopath), string(os.PathListSeparator))[0]), "bin")
		}
		bin = filepath.Join(dir, "stripe-mock")
		if _, err := os.Stat(bin); err != nil {
			out, err := exec.Command("go", "install", "github.com/stripe/stripe-mock@"+stripeMockVersion).CombinedOutput()
			if err != nil {
				t.Skipf("stripe-mock is not installed and 'go install github.com/stripe/stripe-mock@%s' failed: %v\n%s",
					stripeMockVersion, err, out)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Empty ports: the system chooses free ones; HTTPS must be pinned to
	// localhost too, or it binds every interface on a fixed port.
	cmd := exec.CommandContext(ctx, bin, "-http-addr", "127.0.0.1:", "-https-addr", "127.0.0.1:")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "Listening for HTTP at address: "); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(20 * time.Second):
		t.Fatal("stripe-mock did not report its HTTP address within 20s")
	}
	return ""
}

// recorder notes every request herd makes and every answer it gets.
type recorder struct {
	mu   sync.Mutex
	reqs []string
	bad  []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	line := req.Method + " " + req.URL.RequestURI()
	r.reqs = append(r.reqs, line)
	if err != nil {
		r.bad = append(r.bad, line+": "+err.Error())
		return nil, err
	}
	if resp.StatusCode >= 300 {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		r.bad = append(r.bad, fmt.Sprintf("%s: %d %s", line, resp.StatusCode, body))
	}
	return resp, nil
}

// Acceptance 4: stripe-mock, which validates requests against Stripe's
// published OpenAPI specification, accepts every request herd makes: the
// backfill, the incremental pass with its created filters, a retrieval of
// every object type, and check.
func TestStripeMockAcceptsEveryRequest(t *testing.T) {
	t.Parallel()
	base := stripeMock(t)
	ctx := context.Background()
	db := pgtest.Pool(t, pgtest.New(t))
	if _, err := schemas.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	s, err := New(Config{
		APIKey: "sk_test_123", APIBase: base, HTTPTransport: rec,
		Limits: saas.Limits{RequestsPerSecond: 500, Burst: 50, MaxRetries: -1},
	}, db, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil { // backfill, then incremental
		t.Fatalf("full sync against stripe-mock: %v", err)
	}
	if err := s.Sync(ctx); err != nil { // incremental from a cursor
		t.Fatalf("incremental sync against stripe-mock: %v", err)
	}
	for _, o := range objects {
		if _, err := o.get(ctx, s.api, "herd_probe"); err != nil {
			t.Errorf("retrieve %s: %v", o.Kind, err)
		}
	}
	bt := objectByTable("balance_transactions")
	for _, err := range bt.list(ctx, s.api, s.listParams(), time.Now().Add(-time.Hour).Unix()) {
		if err != nil {
			t.Errorf("list balance transactions by created: %v", err)
		}
	}
	if _, err := s.Check(ctx); err != nil {
		t.Fatalf("check against stripe-mock: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, b := range rec.bad {
		t.Errorf("stripe-mock refused: %s", b)
	}
	seen := map[string]bool{}
	for _, r := range rec.reqs {
		path, _, _ := strings.Cut(strings.TrimPrefix(r, "GET "), "?")
		seen[path] = true
	}
	for _, o := range objects {
		if !seen["/v1/"+o.Table] || !seen["/v1/"+o.Table+"/herd_probe"] {
			t.Errorf("no list or retrieve request for %s reached stripe-mock", o.Table)
		}
	}
	if !seen["/v1/events"] {
		t.Error("no events request reached stripe-mock")
	}
	t.Logf("stripe-mock accepted %d requests", len(rec.reqs))
}
