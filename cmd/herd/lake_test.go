package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdhq/herd/internal/pgtest"
)

// TestLakeCommandsRefuseAMissingLake: a command that reads the lake, given
// a directory lake that does not exist (by --lake, or DATA-DIR/lake with
// no herd up), fails naming what it tried instead of reporting an empty
// lake; once the directory exists, the same command runs.
func TestLakeCommandsRefuseAMissingLake(t *testing.T) {
	for _, v := range []string{"HERD_LAKE", "HERD_DATABASE_URL", "HERD_NATS_URL"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	t.Setenv("DATABASE_URL", pgtest.New(t))
	dataDir := t.TempDir()
	if err := os.Chmod(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nonexistent")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"replay", []string{"replay", "--from", "2026-01-01"}},
		{"archive status", []string{"archive", "status"}},
		{"archive repair", []string{"archive", "repair"}},
		{"archive locate", []string{"archive", "locate", "m-1", "--source", "default"}},
		{"archive compact", []string{"archive", "compact"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, where := range []struct{ flag, lake string }{
				{"--data-dir", filepath.Join(dataDir, "lake")},
				{"--lake", missing},
			} {
				args := append(append([]string{}, c.args...), "--data-dir", dataDir)
				if where.flag == "--lake" {
					args = append(args, "--lake", missing)
				}
				var out, errOut bytes.Buffer
				code := run(context.Background(), args, &out, &errOut)
				want := "no lake at " + where.lake + ": tried --lake, $HERD_LAKE, then DATA-DIR/lake"
				if code == 0 || !strings.Contains(errOut.String(), want) {
					t.Errorf("herd %s (%s): exit %d, want a failure with %q:\n%s%s", strings.Join(args, " "), where.flag, code, want, out.String(), errOut.String())
				}
			}
		})
	}
	if err := os.Mkdir(filepath.Join(dataDir, "lake"), 0o700); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"archive", "status", "--data-dir", dataDir}, &out, &errOut); code != 0 {
		t.Errorf("herd archive status on an existing empty lake: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}
