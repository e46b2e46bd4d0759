package console

import (
	"crypto/md5"
	"encoding/hex"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/secrets"
)

// TestLimiterRefusedAttemptsAddNoKeys: a client out of attempts cannot
// grow the table by trying new user names.
func TestLimiterRefusedAttemptsAddNoKeys(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(2, time.Minute, func() time.Time { return now })
	for i := 0; i < 2; i++ {
		if ok, _ := l.take("ip:1", "user:a"); !ok {
			t.Fatalf("attempt %d refused", i)
		}
	}
	for i := 0; i < 100; i++ {
		if ok, wait := l.take("ip:1", "user:"+string(rune('b'+i))); ok || wait <= 0 {
			t.Fatalf("attempt with a new name from a spent IP: allowed")
		}
	}
	if len(l.m) != 2 {
		t.Fatalf("%d keys, want 2", len(l.m))
	}
	now = now.Add(30 * time.Second)
	if ok, _ := l.take("ip:1", "user:z"); ok {
		t.Fatal("half a refill is not an attempt")
	}
	now = now.Add(31 * time.Second)
	if ok, _ := l.take("ip:1", "user:z"); !ok {
		t.Fatal("a refill later: refused")
	}
}

// TestVerifyPassword checks the verifier formats of pg_authid: SCRAM as
// Postgres (and herd's secrets package) computes it, and md5.
func TestVerifyPassword(t *testing.T) {
	scram, err := secrets.ScramVerifier("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum([]byte("s3cret" + "alice"))
	md5v := "md5" + hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		stored, user, pw string
		ok, known        bool
	}{
		{scram, "alice", "s3cret", true, true},
		{scram, "alice", "s3cret ", false, true},
		{md5v, "alice", "s3cret", true, true},
		{md5v, "bob", "s3cret", false, true},
		{"SCRAM-SHA-256$4096:bad", "alice", "s3cret", false, false},
		{"s3cret", "alice", "s3cret", false, false},
	} {
		ok, known := verifyPassword(tc.stored, tc.user, tc.pw)
		if ok != tc.ok || known != tc.known {
			t.Errorf("verifyPassword(%.30q, %s, %q): %v %v, want %v %v", tc.stored, tc.user, tc.pw, ok, known, tc.ok, tc.known)
		}
	}
}
