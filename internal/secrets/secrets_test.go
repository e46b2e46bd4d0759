package secrets_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdhq/herd/internal/secrets"
)

func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, secret, keep string }{
		{"postgres://herd:s3cret@db:5432/herd?sslmode=disable", "s3cret", "postgres://herd:xxxxx@db:5432/herd"},
		{"postgres://postgres@127.0.0.1:5/herd?sslmode=disable&passfile=/d/pgpass", "", "passfile=/d/pgpass"},
		{"host=db user=herd password='a b' dbname=herd", "a b", "password=xxxxx"},
		{"host=db password=s3cret", "s3cret", "host=db"},
		{"nats://tok3n@n1:4222,nats://u:pw99@n2:4222", "tok3n", "nats://xxxxx@n1:4222,nats://u:xxxxx@n2:4222"},
		{"nats://n1:4222", "", "nats://n1:4222"},
		{"https://s3.example/b?X-Amz-Credential=AKIA1&X-Amz-Signature=sig9", "sig9", "s3.example"},
		{"postgres://app:pw%40x@app-db/app", "pw%40x", "app:xxxxx@app-db"},
		// A password with a comma, and a multi-host URL: one URL, not a list.
		{"postgres://postgres:hunter2,SECRET@127.0.0.1:5432/db", "SECRET", "postgres:xxxxx@127.0.0.1:5432/db"},
		{"postgres://postgres:hunter2,SECRET@127.0.0.1:5432/db", "hunter2", "postgres:xxxxx@"},
		{"postgresql://u:a,b,c@h1:5432,h2:5433/db?sslmode=require", "a,b,c", "u:xxxxx@h1:5432,h2:5433/db"},
		{"POSTGRES://u:p,w@h/db", "p,w", "xxxxx@h/db"},
		// Unparsable as a URL (raw '#' in the password): still no password.
		{"postgres://u:pa#ss,w@h/db", "ss,w", "postgres://xxxxx@h/db"},
		// Scheme-less NATS entries, as nats.go accepts them.
		{"TOKEN123@127.0.0.1:4222", "TOKEN123", "xxxxx@127.0.0.1:4222"},
		{"nats://n1:4222,tok9@n2:4222", "tok9", "nats://n1:4222,xxxxx@n2:4222"},
		{"bob:pw77@n1:4222", "pw77", "bob:xxxxx@n1:4222"},
		{"127.0.0.1:4222", "", "127.0.0.1:4222"},
	} {
		got := secrets.RedactURL(c.in)
		if c.secret != "" && strings.Contains(got, c.secret) {
			t.Errorf("RedactURL(%q) = %q: holds %q", c.in, got, c.secret)
		}
		if !strings.Contains(got, c.keep) {
			t.Errorf("RedactURL(%q) = %q: lost %q", c.in, got, c.keep)
		}
	}
}

func TestReadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "token")
	s, created, err := secrets.ReadOrCreate(path, 32)
	if err != nil || !created || len(s) != 64 {
		t.Fatalf("ReadOrCreate: %q %v %v", s, created, err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %#o, want 0600", st.Mode().Perm())
	}
	again, created, err := secrets.ReadOrCreate(path, 32)
	if err != nil || created || again != s {
		t.Errorf("second ReadOrCreate: %q %v %v, want the same secret", again, created, err)
	}
	os.Chmod(path, 0o644)
	if _, err := secrets.Read(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable secret file: %v", err)
	}
}

// otherUID is a uid that is not the test's, for files "another user"
// planted; planting them needs root (chown), else the test skips.
func otherUID(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("planting a file owned by another user needs root")
	}
	return 65534 // nobody
}

// A secret file another local user could have planted is refused, even
// with mode 0600: a symbolic link (to a file of theirs, or anywhere) or a
// file they own.
func TestReadRefusesPlantedFiles(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := secrets.WriteFile(real, "s3cret\n"); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.Read(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Read of a symbolic link: %v, want a refusal", err)
	}
	if _, _, err := secrets.ReadOrCreate(link, 16); err == nil {
		t.Error("ReadOrCreate used a symbolic link")
	}
	if s, err := secrets.Read(real); err != nil || s != "s3cret" {
		t.Fatalf("Read of the file itself: %q %v", s, err)
	}

	planted := filepath.Join(dir, "planted")
	if err := secrets.WriteFile(planted, "theirs\n"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(planted, otherUID(t), otherUID(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.Read(planted); err == nil || !strings.Contains(err.Error(), "belongs to uid") {
		t.Errorf("Read of a 0600 file another user owns: %v, want a refusal", err)
	}
	if s, _, err := secrets.ReadOrCreate(planted, 16); err == nil {
		t.Errorf("ReadOrCreate used a file another user owns (%q)", s)
	}
}

// CheckDir creates a missing directory 0700 and refuses one another user
// owns or may write to, or a symbolic link.
func TestCheckDir(t *testing.T) {
	base := t.TempDir()
	fresh := filepath.Join(base, "a", "data")
	if err := secrets.CheckDir(fresh); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("created %s: %v %v, want mode 0700", fresh, st.Mode().Perm(), err)
	}
	if err := secrets.CheckDir(fresh); err != nil {
		t.Errorf("CheckDir on its own directory: %v", err)
	}
	writable := filepath.Join(base, "writable")
	if err := os.Mkdir(writable, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(writable, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := secrets.CheckDir(writable); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Errorf("a directory others may write to: %v, want a refusal", err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(fresh, link); err != nil {
		t.Fatal(err)
	}
	if err := secrets.CheckDir(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a symbolic link: %v, want a refusal", err)
	}
	theirs := filepath.Join(base, "theirs")
	if err := os.Mkdir(theirs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, otherUID(t), otherUID(t)); err != nil {
		t.Fatal(err)
	}
	if err := secrets.CheckDir(theirs); err == nil || !strings.Contains(err.Error(), "belongs to uid") {
		t.Errorf("a directory another user owns: %v, want a refusal", err)
	}
}
