package stream_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startEmbedded starts the embedded server listening on a free loopback
// port, stopped when the test ends.
func startEmbedded(t *testing.T, dir, tokenFile string) *stream.Embedded {
	t.Helper()
	ns, err := stream.StartEmbedded(filepath.Join(dir, "nats"), "127.0.0.1:0", tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// TestEmbeddedRequiresToken: an embedded server that listens on TCP
// generates a token kept 0600, refuses clients without it or with a wrong
// one (at once, naming the cause), accepts herd's own, and keeps the same
// token across restarts.
func TestEmbeddedRequiresToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "nats.token")
	ns := startEmbedded(t, dir, tokenFile)

	st, err := os.Stat(tokenFile)
	if err != nil {
		t.Fatalf("no token file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %#o, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(tokenFile)
	token := strings.TrimSpace(string(b))
	if len(token) < 32 {
		t.Fatalf("token %q is too short", token)
	}

	url := ns.Server.ClientURL()
	for _, c := range []struct {
		name string
		opts []nats.Option
	}{
		{"no credentials", nil},
		{"wrong token", []nats.Option{nats.Token("not-" + token)}},
		{"user and password", []nats.Option{nats.UserInfo("herd", token)}},
	} {
		start := time.Now()
		nc, err := stream.Connect(url, "intruder", c.opts...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected to the embedded server", c.name)
			continue
		}
		if !errors.Is(err, stream.ErrAuth) {
			t.Errorf("%s: error %v does not say the credentials were refused", c.name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %s to fail", c.name, d)
		}
	}

	// herd's own: a TCP client with the token, and the in-process one.
	nc, err := stream.Connect(url, "herd-test", nats.Token(token))
	if err != nil {
		t.Fatalf("with the token: %v", err)
	}
	js, _ := jetstream.New(nc)
	var sc stream.Config
	sc.MemoryStore = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := stream.Ensure(ctx, js, sc); err != nil {
		t.Fatalf("ensure the stream with the token: %v", err)
	}
	nc.Close()
	in, err := ns.Connect("herd-in-process")
	if err != nil {
		t.Fatalf("in-process client: %v", err)
	}
	in.Close()

	// A restart reads the same token.
	ns.Shutdown()
	ns2 := startEmbedded(t, dir, tokenFile)
	nc, err = stream.Connect(ns2.Server.ClientURL(), "herd-test", nats.Token(token))
	if err != nil {
		t.Fatalf("after a restart, the kept token: %v", err)
	}
	nc.Close()
}

// TestEmbeddedListenNeedsToken: a server reachable beyond the process is
// never started without credentials.
func TestEmbeddedListenNeedsToken(t *testing.T) {
	t.Parallel()
	if ns, err := stream.StartEmbedded(t.TempDir(), "127.0.0.1:0", ""); err == nil {
		ns.Shutdown()
		t.Fatal("started a listening server without a token")
	}
}

// TestEmbeddedTokenFileMode: a token file others may read is refused.
func TestEmbeddedTokenFileMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "nats.token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ns, err := stream.StartEmbedded(filepath.Join(dir, "nats"), "127.0.0.1:0", tokenFile)
	if err == nil {
		ns.Shutdown()
		t.Fatal("started with a world-readable token file")
	}
	if !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("error %q does not say how to fix the file", err)
	}
}
