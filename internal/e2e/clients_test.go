package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/herdtest"
)

// TestRealClients sends track, identify and page with the real npm libraries
// @segment/analytics-node and @rudderstack/rudder-sdk-node (gzip on, its
// default), installed from the registry by this test, and reads the rows.
func TestRealClients(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
	dir, _ := filepath.Abs("clients")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@segment", "analytics-node")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	p := herdtest.Start(t, herdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "send.mjs", p.URL, p.WriteKey, "npm")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node send.mjs: %v\n%s", err, out)
	}
	want := map[string][2]string{
		"npm-segment-track": {"track", "Segment Track"}, "npm-segment-identify": {"identify", ""}, "npm-segment-page": {"page", "Pricing"},
		"npm-rudder-track": {"track", "Rudder Track"}, "npm-rudder-identify": {"identify", ""}, "npm-rudder-page": {"page", "Docs"},
	}
	if n := p.WaitRows(t, int64(len(want)), 10*time.Second, "SELECT count(*) FROM herd.events WHERE message_id LIKE 'npm-%'"); n != int64(len(want)) {
		t.Fatalf("rows %d, want %d", n, len(want))
	}
	rows, err := p.DB.Query(context.Background(), `SELECT message_id, type, coalesce(event,''), user_id, coalesce(library_name,''), sent_at IS NOT NULL FROM herd.events WHERE message_id LIKE 'npm-%'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, typ, event, user, lib string
		var hasSent bool
		if err := rows.Scan(&id, &typ, &event, &user, &lib, &hasSent); err != nil {
			t.Fatal(err)
		}
		w := want[id]
		if typ != w[0] || event != w[1] {
			t.Errorf("%s: type %s event %q, want %s %q", id, typ, event, w[0], w[1])
		}
		if lib == "" || !hasSent || user == "" {
			t.Errorf("%s: library %q sent_at %v user %q", id, lib, hasSent, user)
		}
	}
}

// TestREADMECurl runs the curl example of the README against a running herd.
func TestREADMECurl(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(readme), "\n") {
		if len(lines) == 0 && !strings.HasPrefix(l, "curl ") {
			continue
		}
		lines = append(lines, l)
		if !strings.HasSuffix(l, "\\") {
			break
		}
	}
	if len(lines) == 0 {
		t.Fatal("README has no curl example")
	}
	example := strings.Join(lines, "\n")
	p := herdtest.Start(t, herdtest.Options{})
	script := strings.ReplaceAll(example, "http://localhost:8080", p.URL)
	cmd := exec.Command("bash", "-c", "set -e; "+script)
	cmd.Env = append(os.Environ(), "WRITE_KEY="+p.WriteKey)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"success":true`) {
		t.Fatalf("README example:\n%s\n-> %v %s", example, err, out)
	}
	if n := p.WaitRows(t, 1, 5*time.Second, "SELECT count(*) FROM herd.events"); n != 1 {
		t.Fatalf("rows %d after the README example", n)
	}
}
