// Package stream owns herd's JetStream topology: the events stream, its
// subjects and message ids, the durable consumers, the sources KV bucket, and
// an embedded server for single-node installs. Collector and writer agree on
// the wire through this package alone.
package stream

import (
	"context"
	"crypto/sha256"
	hexenc "encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/secrets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config names the stream and sets its limits. The zero value, after
// Defaults, is a single-replica file stream.
type Config struct {
	Name       string        // stream name; default HERD_EVENTS
	Prefix     string        // subject prefix; default "herd"
	Replicas   int           // 1 on a single node, 3 on a cluster
	MaxBytes   int64         // stream size limit; publishes are refused past it (default 10 GiB)
	MaxAge     time.Duration // 0: keep until consumed and acked by every consumer's retention
	DupeWindow time.Duration // Nats-Msg-Id deduplication window; default 2 minutes
	SourcesKV  string        // KV bucket mirroring herd.sources; default herd_sources
	// BestEffort names durable consumers (the archiver) whose unacknowledged
	// messages are kept only while the stream is below TrimPressure of its
	// size limit; past it they are trimmed as soon as the other consumers
	// have them, so that a stopped archiver never makes the collector refuse
	// events. Default: herd-archiver.
	BestEffort []string
	// TrimPressure is the fraction of MaxBytes past which BestEffort
	// consumers stop holding messages; default 0.75.
	TrimPressure float64
	MemoryStore  bool // for tests and benchmarks only: not durable across restarts
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Name == "" {
		c.Name = "HERD_EVENTS"
	}
	if c.Prefix == "" {
		c.Prefix = "herd"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 10 << 30
	}
	if c.DupeWindow == 0 {
		c.DupeWindow = 2 * time.Minute
	}
	if c.SourcesKV == "" {
		c.SourcesKV = "herd_sources"
	}
	if c.BestEffort == nil {
		c.BestEffort = []string{"herd-archiver"}
	}
	if c.TrimPressure == 0 {
		c.TrimPressure = 0.75
	}
}

// EventSubject is the subject an accepted event of the source is published on.
func (c Config) EventSubject(sourceID int64) string {
	return c.Prefix + ".events." + strconv.FormatInt(sourceID, 10)
}

// RejectSubject is the subject a refused event or body is published on.
func (c Config) RejectSubject(sourceID int64) string {
	return c.Prefix + ".rejects." + strconv.FormatInt(sourceID, 10)
}

// WebhookSubject is the subject a verified third-party webhook body is
// published on (name: "stripe", ...). Loaders consume their own subject.
func (c Config) WebhookSubject(name string) string { return c.Prefix + ".webhooks." + name }

// EventsFilter matches every event subject (for consumers that want events only).
func (c Config) EventsFilter() string { return c.Prefix + ".events.>" }

// RejectsFilter matches every reject subject.
func (c Config) RejectsFilter() string { return c.Prefix + ".rejects.>" }

// MsgID is the Nats-Msg-Id of an event: JetStream drops a second publish of
// the same id within the duplicate window.
func MsgID(sourceID int64, messageID string) string {
	return strconv.FormatInt(sourceID, 10) + "/" + messageID
}

// Ensure creates or updates the stream and the sources bucket.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Stream, error) {
	c.Defaults()
	storage := jetstream.FileStorage
	if c.MemoryStore {
		storage = jetstream.MemoryStorage
	}
	sc := jetstream.StreamConfig{
		Name:       c.Name,
		Subjects:   []string{c.EventsFilter(), c.RejectsFilter(), c.Prefix + ".webhooks.>"},
		Storage:    storage,
		Replicas:   c.Replicas,
		MaxBytes:   c.MaxBytes,
		MaxAge:     c.MaxAge,
		Discard:    jetstream.DiscardNew,
		Duplicates: c.DupeWindow,
		Retention:  jetstream.LimitsPolicy,
	}
	s, err := js.CreateOrUpdateStream(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", c.Name, err)
	}
	if _, err := SourcesKV(ctx, js, c); err != nil {
		return nil, err
	}
	return s, nil
}

// SourcesKV opens (creating if needed) the bucket that mirrors herd.sources,
// keyed by a hash of the write key (SourceKey).
func SourcesKV(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.KeyValue, error) {
	c.Defaults()
	kv, err := js.KeyValue(ctx, c.SourcesKV)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		storage := jetstream.FileStorage
		if c.MemoryStore {
			storage = jetstream.MemoryStorage
		}
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: c.SourcesKV, History: 1, Storage: storage, Replicas: c.Replicas,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("open key-value bucket %s: %w", c.SourcesKV, err)
	}
	return kv, nil
}

// ErrAuth marks a connection refused for its credentials: retrying cannot
// help, the operator must give the right ones.
var ErrAuth = errors.New("NATS refused the credentials")

// IsAuthError reports whether err is NATS refusing a client's credentials.
func IsAuthError(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrAuth) || errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrNkeysNotSupported) {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "authorization violation") || strings.Contains(msg, "authentication")
}

// Connect dials url with options suited to a long-running component: it
// retries forever and reports connection changes to the callbacks' logger.
// A server that refuses the credentials (or their absence) is an error at
// once, wrapping ErrAuth, instead of a retry loop that never ends; a server
// that is not up yet is waited for.
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
	}
	opts = append(base, opts...)
	nc, err := nats.Connect(url, opts...)
	if err == nil {
		return nc, nil
	}
	if IsAuthError(err) {
		return nil, fmt.Errorf("connect to NATS at %s: %w: %w", secrets.RedactURL(url), ErrAuth, err)
	}
	// Not reachable yet: keep trying in the background, as a component
	// started before its server should.
	nc, err = nats.Connect(url, append(opts, nats.RetryOnFailedConnect(true))...)
	if err != nil {
		if IsAuthError(err) {
			err = fmt.Errorf("%w: %w", ErrAuth, err)
		}
		return nil, fmt.Errorf("connect to NATS at %s: %w", secrets.RedactURL(url), err)
	}
	return nc, nil
}

// SourceKey is the key of a write key in the sources bucket: "h." and the
// first 128 bits of the key's SHA-256 in hex. A hash rather than an encoding
// of the key, so that a bucket listing, a log line or a metric that shows a
// bucket key never shows a write key. (The entry's value still holds the
// key: the collector needs it, and NATS authorization guards the bucket.)
func SourceKey(writeKey string) string {
	sum := sha256.Sum256([]byte(writeKey))
	return "h." + hexenc.EncodeToString(sum[:16])
}

// IsSourceKey reports whether key has SourceKey's form; entries under any
// other key (those of older versions, keyed by an encoding of the write
// key) are left for the mirror to delete.
func IsSourceKey(key string) bool {
	if len(key) != 2+32 || key[:2] != "h." {
		return false
	}
	_, err := hexenc.DecodeString(key[2:])
	return err == nil
}
