package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// sourceHash mirrors sourceHash in build.mjs: what dist/ was built from.
func sourceHash(t *testing.T) string {
	t.Helper()
	entries, err := os.ReadDir("src")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, "src/"+e.Name())
	}
	sort.Strings(files)
	files = append(files, "build.mjs", "package-lock.json")
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte(f + "\x00"))
		h.Write(b)
		h.Write([]byte("\x00"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestDistBuiltFromCurrentSource(t *testing.T) {
	recorded, err := os.ReadFile("dist/src.sha256")
	if err != nil {
		t.Fatal(err)
	}
	if got := sourceHash(t); strings.TrimSpace(string(recorded)) != got {
		t.Fatalf("console/web/dist is stale: src/ changed since the last build (dist/src.sha256 %s, src %s); run `make console`", strings.TrimSpace(string(recorded)), got)
	}
}

// TestDistRebuildsIdentically rebuilds with esbuild when it is installed and
// compares byte for byte, which also catches a dist/ edited by hand.
func TestDistRebuildsIdentically(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	if _, err := os.Stat("node_modules/esbuild"); err != nil {
		t.Skip("esbuild not installed (npm ci in console/web)")
	}
	out := t.TempDir()
	cmd := exec.Command(node, "build.mjs", "--outdir", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	for _, f := range []string{"index.html", "app.js", "app.css"} {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := fs.ReadFile(Dist, f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("embedded %s differs from a fresh build of src/; run `make console`", f)
		}
	}
}

// TestIndexHasNoInlineScript: the console's CSP allows scripts from 'self'
// only, so index.html may load app.js but not carry script of its own.
func TestIndexHasNoInlineScript(t *testing.T) {
	b, err := fs.ReadFile(Dist, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	if strings.Count(html, "<script") != 1 || !strings.Contains(html, `<script defer src="/app.js"></script>`) {
		t.Fatalf("index.html must load /app.js and have no other script:\n%s", html)
	}
	if m := regexp.MustCompile(`(?i)\son[a-z]+\s*=`).FindString(html); m != "" {
		t.Fatalf("index.html has an inline event handler (%s)", m)
	}
}
