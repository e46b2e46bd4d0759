package herd_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Dir        string
	Imports    []string
	Deps       []string
	Standard   bool
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

const mod = "github.com/herdhq/herd"

// TestImportDirections enforces the layering of DESIGN.md: the root package
// uses only the standard library; the collector never reaches Postgres and
// the writer never serves HTTP; only cmd wires them together.
func TestImportDirections(t *testing.T) {
	rules := []struct {
		pkg       string // package, and its subpackages
		forbidden []string
	}{
		{mod + "/collector", []string{"github.com/jackc/pgx", mod + "/writer", mod + "/warehouse", mod + "/schemas"}},
		{mod + "/writer", []string{"github.com/valyala/fasthttp", mod + "/collector"}},
		{mod + "/stream", []string{"github.com/jackc/pgx", "github.com/valyala/fasthttp", mod + "/collector", mod + "/writer"}},
		// The console reads the stream's wire format and the lake through
		// what cmd hands it; it runs no part of the event path.
		{mod + "/console", []string{"github.com/valyala/fasthttp", mod + "/collector", mod + "/writer", mod + "/archive"}},
	}
	pkgs := listPackages(t)
	for _, p := range pkgs {
		if p.ImportPath == mod {
			for _, d := range p.Deps {
				if !isStd(d) {
					t.Errorf("root package %s depends on %s: it may use the standard library only", mod, d)
				}
			}
		}
		// Webhook verifiers (saas/*/...hook) run in the collector: standard library only.
		if strings.HasPrefix(p.ImportPath, mod+"/saas/") && strings.HasSuffix(p.ImportPath, "hook") {
			for _, d := range p.Deps {
				if !isStd(d) {
					t.Errorf("webhook verifier %s depends on %s: it may use the standard library only", p.ImportPath, d)
				}
			}
		}
		for _, r := range rules {
			if p.ImportPath != r.pkg && !strings.HasPrefix(p.ImportPath, r.pkg+"/") {
				continue
			}
			for _, d := range p.Deps {
				for _, f := range r.forbidden {
					if d == f || strings.HasPrefix(d, f+"/") {
						t.Errorf("%s depends on %s, which it must not", p.ImportPath, d)
					}
				}
			}
		}
		if strings.HasPrefix(p.ImportPath, mod+"/cmd/") {
			continue
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, mod+"/cmd") {
				t.Errorf("%s imports %s: only cmd wires packages", p.ImportPath, imp)
			}
		}
	}
}

func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// TestPackageDocs requires a package comment on every package.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if len(p.GoFiles) == 0 {
			continue
		}
		fset := token.NewFileSet()
		found := false
		for _, f := range p.GoFiles {
			af, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil && strings.TrimSpace(af.Doc.Text()) != "" {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("package %s has no package comment", p.ImportPath)
		}
	}
}
