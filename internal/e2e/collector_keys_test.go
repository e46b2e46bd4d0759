package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/internal/natstest"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/warehouse"
	"github.com/nats-io/nats.go/jetstream"
)

// trackUntil posts one track call with key until the reply's status is want
// or timeout passes, and returns how long that took.
func trackUntil(t *testing.T, p *herdtest.Pipeline, key string, want int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		r := post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u"}`), map[string]string{"Authorization": basic(key)})
		if r.Status == want {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("key %.6s…: status %d after %s, want %d: %s", key, r.Status, timeout, want, r.RawBody)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWriteKeysDie: collectors accept exactly the keys live in herd.sources.
// A key whose row is deleted, or whose source got a new key, is refused
// within seconds, and the new key is accepted.
func TestWriteKeysDie(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change string // SQL run on the source's row ($1: id, $2: a new key)
		newKey bool   // whether $2 becomes the live key
	}{
		{"row deleted", `DELETE FROM herd.sources WHERE id = $1 AND $2 <> ''`, false},
		{"key rotated", `UPDATE herd.sources SET write_key = $2 WHERE id = $1`, true},
		{"key rotated as herd up --write-key does", `UPDATE herd.sources SET write_key = $2, revoked_at = NULL WHERE id = $1`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := herdtest.Start(t, herdtest.Options{NoWriter: true})
			ctx := context.Background()
			src, err := warehouse.CreateSource(ctx, p.DB, herd.Source{Name: "victim", Kind: herd.KindBrowser})
			if err != nil {
				t.Fatal(err)
			}
			trackUntil(t, p, src.WriteKey, 200, 5*time.Second)
			next := warehouse.NewWriteKey()
			if _, err := p.DB.Exec(ctx, tc.change, src.ID, next); err != nil {
				t.Fatal(err)
			}
			took := trackUntil(t, p, src.WriteKey, 401, 3*time.Second)
			t.Logf("old key refused after %s", took)
			if tc.newKey {
				trackUntil(t, p, next, 200, 3*time.Second)
			}
			// Another source is untouched.
			trackUntil(t, p, p.WriteKey, 200, time.Second)
		})
	}
}

// TestSourcesBucketHidesKeys: the bucket's keys (what a listing, a log line
// or a monitoring page shows) reveal no write key, and entries left by older
// versions, named by an encoding of the write key, are deleted by the
// mirror, after which the collector refuses their key.
func TestSourcesBucketHidesKeys(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{NoWriter: true})
	ctx := context.Background()
	kv, err := stream.SourcesKV(ctx, p.JS, p.Stream)
	if err != nil {
		t.Fatal(err)
	}

	// An entry as an older version wrote it, for a key with no row.
	stale := herd.Source{ID: 999, Name: "gone", Kind: herd.KindBrowser, WriteKey: warehouse.NewWriteKey()}
	b, _ := json.Marshal(stale)
	oldName := "k." + base64.RawURLEncoding.EncodeToString([]byte(stale.WriteKey))
	if _, err := kv.Put(ctx, oldName, b); err != nil {
		t.Fatal(err)
	}
	// The mirror passes every second in herdtest; the entry goes, and with
	// it the collector's copy. (A 401 alone proves nothing here: the
	// collector may not have seen the entry yet.)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := kv.Get(ctx, oldName)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old-form entry %s still in the bucket after 5s (err %v)", oldName, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	trackUntil(t, p, stale.WriteKey, 401, 5*time.Second)

	keys, err := kv.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Errorf("bucket keys %v: want one per live source (2)", keys)
	}
	for _, k := range keys {
		for _, s := range []herd.Source{p.Source, p.Server} {
			for _, form := range []string{s.WriteKey, base64.RawURLEncoding.EncodeToString([]byte(s.WriteKey)), base64.StdEncoding.EncodeToString([]byte(s.WriteKey))} {
				if strings.Contains(k, form) || strings.Contains(k, form[:len(form)/2]) {
					t.Errorf("bucket key %q reveals the write key of source %s", k, s.Name)
				}
			}
		}
		if !stream.IsSourceKey(k) {
			t.Errorf("bucket key %q is not of stream.SourceKey's form", k)
		}
	}
	// Both live keys still work.
	trackUntil(t, p, p.WriteKey, 200, time.Second)
	trackUntil(t, p, p.Server.WriteKey, 200, time.Second)
}

// TestOldFormEntryKeepsKeyDuringUpgrade: while a key has both an old-form
// and a new entry (a collector upgraded before the mirror), deleting the
// old-form entry does not refuse the key.
func TestOldFormEntryKeepsKeyDuringUpgrade(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{NoWriter: true})
	ctx := context.Background()
	kv, err := stream.SourcesKV(ctx, p.JS, p.Stream)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p.Source)
	oldName := "k." + base64.RawURLEncoding.EncodeToString([]byte(p.WriteKey))
	if _, err := kv.Put(ctx, oldName, b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for { // the mirror deletes it within a pass
		if _, err := kv.Get(ctx, oldName); errors.Is(err, jetstream.ErrKeyNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old-form entry not deleted within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the collector's watch applies the delete
	for i := 0; i < 3; i++ {
		if r := post(t, p.URL+"/v1/track", []byte(`{"event":"e","userId":"u"}`), map[string]string{"Authorization": basic(p.WriteKey)}); r.Status != 200 {
			t.Fatalf("live key refused after its old-form entry was deleted: %d %s", r.Status, r.RawBody)
		}
	}
}

// TestTruncateSourcesKillsKeys: TRUNCATE herd.sources, which fires no row or
// DELETE trigger, still wakes the mirror at once: the bucket empties within
// seconds, not at the next periodic pass (an hour here).
func TestTruncateSourcesKillsKeys(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	db := pgtest.Pool(t, pgtest.New(t))
	t.Cleanup(cancel) // registered after the pool, so it runs first: the mirror releases its LISTEN connection
	if _, err := schemas.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := warehouse.CreateSource(ctx, db, herd.Source{Name: "web", Kind: herd.KindBrowser}); err != nil {
		t.Fatal(err)
	}
	ns := natstest.Run(t)
	sc := natstest.StreamConfig(t)
	kv, err := stream.SourcesKV(ctx, natstest.JetStream(t, ns, sc), sc)
	if err != nil {
		t.Fatal(err)
	}
	go warehouse.MirrorSources(ctx, db, kv, time.Hour, herdtest.Logger(t)) //nolint:errcheck
	keys := func() int {
		k, err := kv.Keys(ctx)
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return len(k)
	}
	waitFor := func(want int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for keys() != want {
			if time.Now().After(deadline) {
				t.Fatalf("bucket holds %d entries after %s; want %d", keys(), within, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(1, 5*time.Second)          // the mirror's first pass
	time.Sleep(200 * time.Millisecond) // its LISTEN is in place
	if _, err := db.Exec(ctx, `TRUNCATE herd.sources`); err != nil {
		t.Fatal(err)
	}
	waitFor(0, 3*time.Second)
}
