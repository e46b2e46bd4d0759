package main

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestPrintUpHidesPasswords: whatever a DATABASE_URL given to herd up holds
// (a password with a comma, several hosts, a key=value string), the lines
// herd up prints hold no part of its password, and the psql line reads the
// URL from $DATABASE_URL, saying to set it when it came from elsewhere.
func TestPrintUpHidesPasswords(t *testing.T) {
	for _, c := range []struct {
		name, url string
		secrets   []string
	}{
		{"plain", "postgres://herd:s3cretPw@db:5432/herd", []string{"s3cretPw"}},
		{"comma in the password", "postgres://postgres:hunter2,SECRET@127.0.0.1:5432/db", []string{"hunter2", "SECRET"}},
		{"several hosts", "postgresql://u:pw,x@h1:5432,h2:5433/db", []string{"pw,x"}},
		{"key=value", "host=db user=herd password=kv-s3cret dbname=herd", []string{"kv-s3cret"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("DATABASE_URL", "")
			var out bytes.Buffer
			e := &env{stdout: &out, stderr: io.Discard, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			f := &upFlags{dataDir: t.TempDir()}
			f.collectorFlags.listen = "127.0.0.1:8080"
			f.admin.listen = "127.0.0.1:9090"
			printUp(e, f, "wk", "127.0.0.1:8080", c.url, false, nil, &adminListener{})
			text := out.String()
			for _, s := range c.secrets {
				if strings.Contains(text, s) {
					t.Errorf("herd up printed %q of %s:\n%s", s, c.url, text)
				}
			}
			if !strings.Contains(text, `psql "$DATABASE_URL"`) {
				t.Errorf("the psql line does not read $DATABASE_URL:\n%s", text)
			}
			if !strings.Contains(text, "set DATABASE_URL") {
				t.Errorf("herd up does not say to set DATABASE_URL, which is not set:\n%s", text)
			}
		})
	}
}
