package stream

import (
	"fmt"
	"time"

	"github.com/herdhq/herd/internal/secrets"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Embedded is a JetStream server running inside the herd process.
type Embedded struct {
	Server *server.Server
	// TokenFile holds the token every client must present (mode 0600);
	// empty when the server accepts in-process clients only and was
	// started without one.
	TokenFile string
	token     string
}

// StartEmbedded starts a JetStream server storing under dir. listen is
// "host:port" to also accept TCP clients, or "" for in-process clients only.
//
// tokenFile is where the clients' token is kept: read when it exists,
// generated (32 random bytes, mode 0600) when it does not. Every client,
// in-process ones included, must then present it. A server that listens
// beyond the process refuses to start without one: anyone who reaches it
// could read every write key from the sources bucket, publish events for
// any source or purge the stream.
func StartEmbedded(dir, listen, tokenFile string) (*Embedded, error) {
	return StartEmbeddedLimited(dir, listen, tokenFile, Limits{})
}

// Limits bound the embedded server's memory; a zero field keeps
// nats-server's default.
type Limits struct {
	// MaxMemory is JetStream's memory storage (herd's own stream and
	// buckets use files).
	MaxMemory int64
	// StreamQueue is the bytes a stream queues between publishers and its
	// store (nats-server's default is 128 MiB): past it publishes fail, and
	// the collector answers 503.
	StreamQueue int64
	// ClientPending is the bytes queued for one client before the server
	// cuts it off as slow (default 64 MiB); it must exceed what the
	// client's pulls may have outstanding.
	ClientPending int64
}

// StartEmbeddedLimited is StartEmbedded with the server's buffers bounded
// by l.
func StartEmbeddedLimited(dir, listen, tokenFile string, l Limits) (*Embedded, error) {
	opts := &server.Options{
		ServerName: "herd",
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
		DontListen: listen == "",

		JetStreamMaxMemory:    l.MaxMemory,
		StreamMaxBufferedSize: l.StreamQueue,
		MaxPending:            l.ClientPending,
	}
	if listen != "" {
		host, port, err := splitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("--nats-listen %q: %w", listen, err)
		}
		if port == 0 {
			port = -1 // a free port; nats-server reads 0 as its default, 4222
		}
		opts.Host, opts.Port = host, port
		if tokenFile == "" {
			return nil, fmt.Errorf("embedded NATS on %s: no token file; a server reachable beyond the process must require credentials", listen)
		}
	}
	e := &Embedded{TokenFile: tokenFile}
	if tokenFile != "" {
		tok, _, err := secrets.ReadOrCreate(tokenFile, 32)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS token: %w", err)
		}
		opts.Authorization, e.token = tok, tok
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not become ready within 15s (store %s)", dir)
	}
	e.Server = ns
	return e, nil
}

// Connect returns an in-process client connection.
func (e *Embedded) Connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.InProcessServer(e.Server), nats.MaxReconnects(-1)}
	if e.token != "" {
		opts = append(opts, nats.Token(e.token))
	}
	return nats.Connect("", opts...)
}

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
}

func splitHostPort(s string) (string, int, error) {
	var host string
	var port int
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			host = s[:i]
			if _, err := fmt.Sscanf(s[i+1:], "%d", &port); err != nil {
				return "", 0, err
			}
			if host == "" {
				host = "0.0.0.0"
			}
			return host, port, nil
		}
	}
	return "", 0, fmt.Errorf("want host:port")
}
