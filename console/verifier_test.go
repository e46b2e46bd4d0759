package console

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"hash"
	"sync/atomic"
	"testing"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// TestEveryFailedSignInPaysOneScramCheck: whatever makes a sign-in fail
// (no such role, a role without a password, an md5 verifier, a wrong
// SCRAM password), the console derives one SCRAM key, so the time taken
// does not tell which names exist or how they are set up.
func TestEveryFailedSignInPaysOneScramCheck(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Pool(t, pgtest.New(t))
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	sfx := hex.EncodeToString(b)
	nopw, md5r, scram := "nopw_"+sfx, "md5r_"+sfx, "scram_"+sfx
	sum := md5.Sum([]byte("s3cret" + md5r))
	for _, q := range []string{
		"CREATE ROLE " + nopw + " LOGIN",
		"CREATE ROLE " + md5r + " LOGIN PASSWORD 'md5" + hex.EncodeToString(sum[:]) + "'",
		"SET password_encryption = 'scram-sha-256'; CREATE ROLE " + scram + " LOGIN PASSWORD 's3cret'",
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		for _, r := range []string{nopw, md5r, scram} {
			_, _ = db.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize())
		}
	})
	var calls atomic.Int64
	orig := scramKey
	scramKey = func(h func() hash.Hash, password string, salt []byte, iter, keyLength int) ([]byte, error) {
		calls.Add(1)
		return orig(h, password, salt, iter, keyLength)
	}
	t.Cleanup(func() { scramKey = orig })
	s := &Server{cfg: Config{DB: db}}
	for _, user := range []string{"missing_" + sfx, nopw, md5r, scram} {
		calls.Store(0)
		ok, err := s.checkVerifier(ctx, user, "wrong")
		if ok || err == nil {
			t.Fatalf("%s with a wrong password: %v %v, want a refusal", user, ok, err)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("%s: %d SCRAM derivations, want 1 like every other failure", user, n)
		}
	}
}
