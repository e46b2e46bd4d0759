// Package secrets keeps the credentials herd generates for its own parts
// (NATS token, admin token, private Postgres password) in files readable by
// their owner only, and redacts credentials from URLs before they are
// printed or logged.
package secrets

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
)

// Generate returns a random secret of n bytes, hex-encoded (so that it needs
// no quoting in a URL, a pgpass line or a config file).
func Generate(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// CheckFile makes sure the file at path may hold a secret: a regular file
// (not a symbolic link), owned by the user herd runs as and readable by
// that user only. A file others may read holds a secret that has to be
// considered leaked; one another user created (or links to) holds a secret
// that user knows. (A Kubernetes Secret volume is a symbolic link owned by
// root: pass such secrets by environment, as deploy/k8s does.)
func CheckFile(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("secret file %s is a symbolic link: herd reads secrets only from regular files its user owns; replace the link by the file, delete it to have herd generate a new secret, or pass the secret by environment", path)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("secret file %s is not a regular file (%s)", path, st.Mode().Type())
	}
	if uid, ok := fileOwner(st); ok && uid != os.Geteuid() {
		return fmt.Errorf("secret file %s belongs to uid %d, not to uid %d that herd runs as: another user may have planted it and know the secret; delete it (herd generates a new one) or, if it is yours, chown it", path, uid, os.Geteuid())
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("secret file %s has mode %#o: make it readable by its owner only (chmod 600 %s), and replace the secret if others could read it", path, st.Mode().Perm(), path)
	}
	return nil
}

// Read returns the first line of the file at path, trimmed, once
// CheckFile accepts the file.
func Read(path string) (string, error) {
	if err := CheckFile(path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s, _, _ := strings.Cut(string(b), "\n")
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty: delete it to have herd generate a new secret, or write one in it", path)
	}
	return s, nil
}

// ReadOrCreate returns the secret kept at path, first writing a new one of
// n random bytes (mode 0600, directory 0700 when created) when there is
// none. created reports whether it was generated now.
func ReadOrCreate(path string, n int) (secret string, created bool, err error) {
	s, err := Read(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, fmt.Errorf("create directory for %s: %w", path, err)
	}
	s = Generate(n)
	if err := WriteFile(path, s+"\n"); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race
			s, err := Read(path)
			return s, false, err
		}
		return "", false, err
	}
	return s, true, nil
}

// WriteFile creates path with mode 0600 holding content; it fails when the
// file exists.
func WriteFile(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create secret file %s: %w", path, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write secret file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write secret file %s: %w", path, err)
	}
	return nil
}

// fileOwner returns the uid owning a file, where the system says.
func fileOwner(st fs.FileInfo) (int, bool) {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(sys.Uid), true
	}
	return 0, false
}

// CheckDir makes sure dir, which holds secrets, is a directory (not a
// symbolic link) that only the user herd runs as may change: owned by that
// user and writable by nobody else. It creates dir, mode 0700, when missing.
// A directory another user made could hold files they planted (a token or a
// password they know) or let them swap files later.
func CheckDir(dir string) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create directory %s: %w", dir, err)
		}
		// MkdirAll honours the umask; the directory is meant to be 0700.
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
		st, err = os.Lstat(dir)
	}
	if err != nil {
		return err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("directory %s is a symbolic link: give herd a real directory of its own (or the link's target)", dir)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if uid, ok := fileOwner(st); ok && uid != os.Geteuid() {
		return fmt.Errorf("directory %s belongs to uid %d, not to uid %d that herd runs as: another user could have put files in it (a token or password they know); use a directory of your own, or, if it is yours, chown -R it to yourself and delete the secrets in it (herd makes new ones)", dir, uid, os.Geteuid())
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("directory %s has mode %#o: others may add or replace files in it (a token or password they know); chmod 700 %s, and delete the secrets in it if others could have changed them (herd makes new ones)", dir, st.Mode().Perm(), dir)
	}
	return nil
}

// Redacted stands in for a removed credential.
const Redacted = "xxxxx"

var dsnPassword = regexp.MustCompile(`(?i)\b(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// RedactURL returns s with every password, token or secret key it holds
// replaced by Redacted: the user info of a Postgres URL (parsed whole, so
// that a multi-host URL or a password with a comma stays one URL), of each
// of several comma-separated URLs (nats://TOKEN@h1,nats://u:PASS@h2) and of
// scheme-less entries (TOKEN@host:4222, as nats.go accepts), credential
// query parameters (password, token, X-Amz-Credential ...) and password=...
// in a Postgres key=value connection string.
func RedactURL(s string) string {
	trimmed := strings.TrimSpace(s)
	if lower := strings.ToLower(trimmed); strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		return redactPostgres(s)
	}
	if !strings.Contains(s, "://") {
		s = dsnPassword.ReplaceAllString(s, "${1}="+Redacted)
		if strings.ContainsAny(trimmed, " \t\n=") {
			return s // a key=value connection string, not a list of hosts
		}
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

// redactPostgres redacts a postgres:// URL as one URL: libpq and pgx read
// postgres://u:p,w@h1:5432,h2:5433/db as one password and two hosts.
func redactPostgres(s string) string {
	lead := s[:len(s)-len(strings.TrimLeft(s, " "))]
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		// Unparsable (a password with a raw '/' or '#'...): drop everything
		// between the scheme and the last '@'.
		return lead + userinfo.ReplaceAllString(strings.TrimSpace(s), "${1}"+Redacted+"@")
	}
	return lead + redactParsed(u)
}

// userinfo matches a URL's scheme and everything up to the last '@', for a
// URL url.Parse refuses: removing too much is better than printing a secret.
var userinfo = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*://).*@`)

// bareUserinfo matches the user info of a scheme-less host entry
// (TOKEN@host:4222, user:pass@host).
var bareUserinfo = regexp.MustCompile(`^(\s*)([^\s@/]+)@([^\s@]+)$`)

var secretParams = regexp.MustCompile(`(?i)^(password|sslpassword|token|secret|.*secret.*|.*key.*|x-amz-credential|x-amz-signature|x-amz-security-token|auth.*|pass)$`)

func redactOne(s string) string {
	if !strings.Contains(s, "://") {
		// host:port, TOKEN@host:port or user:pass@host:port.
		if m := bareUserinfo.FindStringSubmatch(s); m != nil {
			user, _, hasPass := strings.Cut(m[2], ":")
			if hasPass {
				return m[1] + user + ":" + Redacted + "@" + m[3]
			}
			return m[1] + Redacted + "@" + m[3] // a token
		}
		return dsnPassword.ReplaceAllString(s, "${1}="+Redacted)
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Scheme == "" {
		if userinfo.MatchString(strings.TrimSpace(s)) {
			return userinfo.ReplaceAllString(strings.TrimSpace(s), "${1}"+Redacted+"@")
		}
		return dsnPassword.ReplaceAllString(s, "${1}="+Redacted)
	}
	out := redactParsed(u)
	if strings.HasPrefix(s, " ") {
		out = " " + out
	}
	return out
}

// redactParsed redacts a parsed URL's user info and credential parameters.
func redactParsed(u *url.URL) string {
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		} else if u.Scheme == "nats" || u.Scheme == "tls" || u.Scheme == "ws" || u.Scheme == "wss" {
			// nats://TOKEN@host: the user part is the token.
			u.User = url.User(Redacted)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k := range q {
			if secretParams.MatchString(k) {
				q[k] = []string{Redacted}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

// ScramVerifier is what Postgres stores for a scram-sha-256 password
// (RFC 5802, as pg_authid.rolpassword holds it). Setting a role's password
// to it keeps the password itself out of the statement, and so out of the
// server's logs and pg_stat_statements.
func ScramVerifier(password string) (string, error) {
	const iterations = 4096
	salt := make([]byte, 16)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails (Go 1.24+)
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(server)), nil
}
