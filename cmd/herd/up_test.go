package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdhq/herd/doctor"
	"github.com/herdhq/herd/instance"
	"github.com/herdhq/herd/internal/secrets"
	"github.com/herdhq/herd/stream"
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
			printUp(e, f, "wk", "127.0.0.1:8080", c.url, false, nil, &adminListener{}, "http://127.0.0.1:8082")
			text := out.String()
			if !strings.Contains(text, "console     http://127.0.0.1:8082") {
				t.Errorf("herd up does not print the console's URL:\n%s", text)
			}
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

// TestUpRefusesAForeignDataDir: a data directory another local user made
// (with their own 0600 nats.token and pgpass in it) is refused before herd
// up reads anything from it; one herd up made 0755 in an older version is
// closed to others, with its lake and NATS directories.
func TestUpRefusesAForeignDataDir(t *testing.T) {
	base := t.TempDir()
	var out, errOut bytes.Buffer
	e := &env{stdout: &out, stderr: &errOut, log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	old := filepath.Join(base, "old")
	if err := os.Mkdir(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(old, "lake", "events"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := privateDataDir(e, old); err != nil {
		t.Fatalf("a data directory of ours: %v", err)
	}
	for _, d := range []string{old, filepath.Join(old, "lake"), filepath.Join(old, "nats")} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o066 != 0 || (d != old && st.Mode().Perm()&0o077 != 0) {
			t.Errorf("%s mode %#o: others may list or read it", d, st.Mode().Perm())
		}
	}

	if os.Geteuid() != 0 {
		t.Skip("planting a directory owned by another user needs root")
	}
	planted := filepath.Join(base, "planted")
	if err := os.Mkdir(planted, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{natsTokenName, pgPassName} {
		p := filepath.Join(planted, name)
		if err := secrets.WriteFile(p, "127.0.0.1:*:*:postgres:theirs\n"); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(planted, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	code := run(context.Background(), []string{"up", "--data-dir", planted, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--database-url", "postgres://postgres@127.0.0.1:1/none?sslmode=disable"}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "belongs to uid 65534") {
		t.Errorf("herd up in another user's data directory: exit %d, want a refusal saying whose it is; stderr:\n%s", code, errOut.String())
	}
}

// A .creds file holds an nkey seed: it gets the checks of a token file.
func TestNATSCredsFileChecked(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "herd.creds")
	if err := secrets.WriteFile(creds, "-----BEGIN NATS USER JWT-----\n"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(creds, 0o644); err != nil {
		t.Fatal(err)
	}
	n := natsFlags{creds: creds}
	if _, err := n.options(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable .creds file: %v, want a refusal", err)
	}
	if err := os.Chmod(creds, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.options(); err != nil {
		t.Errorf("a 0600 .creds file: %v", err)
	}
}

// TestInstanceAdminURLDialable: herd up with its admin listener on every
// interface writes an admin_url a local command can dial (loopback, not
// [::] or 0.0.0.0), and the setup checks it ran at start.
func TestInstanceAdminURLDialable(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := &upFlags{dataDir: dir}
	setup := []doctor.Result{doctor.AdminListener(ln.Addr().String(), "the one in a file")}
	if err := writeInstance(f, "postgres://x@127.0.0.1/db", nil, &adminListener{ln: ln}, stream.Config{Name: "HERD_EVENTS"}, setup); err != nil {
		t.Fatal(err)
	}
	in, err := instance.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(in.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		t.Errorf("admin_url %q: want a loopback address a local command can dial", in.AdminURL)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Errorf("dial admin_url %s: %v", in.AdminURL, err)
	} else {
		c.Close()
	}
	if len(in.Setup) != 1 || in.Setup[0].Name != setup[0].Check || in.Setup[0].Level != setup[0].Level.String() || in.Setup[0].Message != setup[0].Message {
		t.Errorf("setup recorded %+v, want %+v", in.Setup, setup)
	}
}
