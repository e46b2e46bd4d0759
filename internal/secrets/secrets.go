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
)

// Generate returns a random secret of n bytes, hex-encoded (so that it needs
// no quoting in a URL, a pgpass line or a config file).
func Generate(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// Read returns the first line of the file at path, trimmed. A file that
// others than its owner may read is refused: the secret in it has to be
// considered leaked.
func Read(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("secret file %s has mode %#o: make it readable by its owner only (chmod 600 %s), and replace the secret if others could read it", path, st.Mode().Perm(), path)
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

// Redacted stands in for a removed credential.
const Redacted = "xxxxx"

var dsnPassword = regexp.MustCompile(`(?i)\b(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// RedactURL returns s with every password, token or secret key it holds
// replaced by Redacted: the user info of one or several comma-separated
// URLs (postgres://u:PASS@h, nats://TOKEN@h), credential query parameters
// (password, token, X-Amz-Credential ...) and password=... in a Postgres
// key=value connection string. Anything it cannot parse is returned with
// only the key=value passwords removed.
func RedactURL(s string) string {
	if !strings.Contains(s, "://") {
		return dsnPassword.ReplaceAllString(s, "${1}="+Redacted)
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

var secretParams = regexp.MustCompile(`(?i)^(password|sslpassword|token|secret|.*secret.*|.*key.*|x-amz-credential|x-amz-signature|x-amz-security-token|auth.*|pass)$`)

func redactOne(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Scheme == "" {
		return dsnPassword.ReplaceAllString(s, "${1}="+Redacted)
	}
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
	out := u.String()
	if strings.HasPrefix(s, " ") {
		out = " " + out
	}
	return out
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
