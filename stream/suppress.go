package stream

import (
	"context"
	"crypto/sha256"
	hexenc "encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultSuppressedKV is the bucket that mirrors herd.suppressions: the
// people whose future events collectors drop (herd privacy suppress).
const DefaultSuppressedKV = "herd_suppressed"

// Kinds of suppressed ids, as SuppressKey and herd.suppressions name them.
const (
	SuppressUserID      = "user_id"
	SuppressAnonymousID = "anonymous_id"
)

// SuppressKey is the bucket key of a suppressed id: "h." and the first 128
// bits of the SHA-256 of the kind and the id, so that neither the bucket,
// nor herd.suppressions, nor a log line shows the id itself. The collector
// computes the same key from each event's userId and anonymousId.
func SuppressKey(kind, id string) string {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(id))
	var sum [sha256.Size]byte
	return "h." + hexenc.EncodeToString(h.Sum(sum[:0])[:16])
}

// SuppressedKV opens (creating if needed) the bucket of suppressed ids,
// keyed by SuppressKey; the entries' values do not matter.
func SuppressedKV(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.KeyValue, error) {
	c.Defaults()
	kv, err := js.KeyValue(ctx, DefaultSuppressedKV)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		storage := jetstream.FileStorage
		if c.MemoryStore {
			storage = jetstream.MemoryStorage
		}
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: DefaultSuppressedKV, History: 1, Storage: storage, Replicas: c.Replicas,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("open key-value bucket %s: %w", DefaultSuppressedKV, err)
	}
	return kv, nil
}
