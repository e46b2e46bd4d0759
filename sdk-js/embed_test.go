package sdkjs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// sourceHash mirrors sourceHash in scripts/build.mjs: what dist/ was built from.
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
	files = append(files, "scripts/build.mjs", "package.json")
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
		t.Fatalf("sdk-js/dist is stale: src/ changed since the last build (dist/src.sha256 %s, src %s); run `make sdk` (or sdk-js/scripts/build.sh)", strings.TrimSpace(string(recorded)), got)
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
		t.Skip("esbuild not installed (npm ci in sdk-js)")
	}
	out := t.TempDir()
	if b, err := exec.Command(node, "scripts/build.mjs", "--outdir", out).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	for _, f := range []string{"sdk.js", "herd.esm.js", "snippet.js", "src.sha256"} {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("dist", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("dist/%s differs from a fresh build: run `make sdk`", f)
		}
	}
}

func TestScriptSize(t *testing.T) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(Script)
	zw.Close()
	if buf.Len() > 6<<10 {
		t.Fatalf("sdk.js is %d bytes gzipped, over the 6 KB budget", buf.Len())
	}
	if !bytes.Contains(Script, []byte("herd-js")) || len(ESM) == 0 {
		t.Fatal("embedded builds look empty")
	}
}

func TestSnippet(t *testing.T) {
	tests := []struct {
		key, host      string
		wantIn, wantNo []string
	}{
		{"wk_123", "https://collect.example.com/", []string{`"wk_123"`, `"https://collect.example.com"`, "<script>", "</script>"}, []string{"__HERD_"}},
		{"wk", "", []string{`"wk",""`}, nil},
		// a key or host from configuration cannot end the script element or the string
		{`k"</script><script>alert(1)//`, "https://x\u2028", []string{`"k\"\u003c/script\u003e\u003cscript\u003ealert(1)//"`, `"https://x\u2028"`}, []string{"</script><script>alert"}},
	}
	for _, tt := range tests {
		s := Snippet(tt.key, tt.host)
		for _, w := range tt.wantIn {
			if !strings.Contains(s, w) {
				t.Errorf("Snippet(%q, %q) lacks %s:\n%s", tt.key, tt.host, w, s)
			}
		}
		for _, w := range tt.wantNo {
			if strings.Contains(s, w) {
				t.Errorf("Snippet(%q, %q) contains %s:\n%s", tt.key, tt.host, w, s)
			}
		}
		if strings.Count(s, "</script>") != 1 {
			t.Errorf("Snippet(%q, %q) has %d </script>", tt.key, tt.host, strings.Count(s, "</script>"))
		}
	}
}

func TestDemoPage(t *testing.T) {
	page := string(DemoPage("demo-key", "http://127.0.0.1:8080"))
	for _, w := range []string{Snippet("demo-key", "http://127.0.0.1:8080"), `data-herd-event="Demo Button Clicked"`, "history.pushState", "<title>"} {
		if !strings.Contains(page, w) {
			t.Errorf("demo page lacks %q", w)
		}
	}
	if strings.Contains(page, "HERD_SNIPPET") {
		t.Error("demo page still has the placeholder")
	}
}
