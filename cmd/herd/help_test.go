package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpOnce: --help (and its spellings) prints the command's usage once,
// to stdout, and exits 0; a wrong flag still goes to stderr with exit 2.
func TestHelpOnce(t *testing.T) {
	for _, h := range []string{"--help", "-h", "-help"} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"up", "--listen", ":0", h}, &out, &errb); code != 0 {
			t.Errorf("herd up %s: exit %d", h, code)
		}
		if n := strings.Count(out.String(), "Usage: herd up"); n != 1 || errb.Len() != 0 {
			t.Errorf("herd up %s: usage %d times on stdout, %d bytes on stderr; want once on stdout", h, n, errb.Len())
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"up", "--bogus"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "bogus") {
		t.Errorf("herd up --bogus: exit %d, stderr %q", code, errb.String())
	}
}
