// Package natstest runs a real nats-server with JetStream inside the test
// process on a free port, one per test, so tests run in parallel against the
// real thing.
package natstest

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a running test server.
type Server struct {
	*server.Server
	t    testing.TB
	opts *server.Options
}

// Run starts a JetStream server on a free port with its store in a temporary
// directory; it is shut down when the test ends.
func Run(t testing.TB) *Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoSigs:    true,
		NoLog:     true,
	}
	s := &Server{t: t, opts: opts}
	s.start()
	t.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	ns, err := server.NewServer(s.opts)
	if err != nil {
		s.t.Fatalf("natstest: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("natstest: server not ready")
	}
	s.Server = ns
	// Keep the port on restart.
	s.opts.Port = ns.Addr().(*net.TCPAddr).Port
}

// Restart shuts the server down and starts it again on the same port and store.
func (s *Server) Restart() {
	s.t.Helper()
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
	s.start()
}

var counter atomic.Int64

// StreamConfig returns a stream.Config with names unique to this test.
func StreamConfig(t testing.TB) stream.Config {
	n := counter.Add(1)
	c := stream.Config{
		Name:      fmt.Sprintf("T%d_EVENTS", n),
		Prefix:    fmt.Sprintf("t%d", n),
		SourcesKV: fmt.Sprintf("t%d_sources", n),
		MaxBytes:  1 << 30,
	}
	c.Defaults()
	return c
}

// Connect opens a client connection closed when the test ends.
func Connect(t testing.TB, s *Server) *nats.Conn {
	t.Helper()
	nc, err := stream.Connect(s.ClientURL(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a new connection and ensures the
// stream described by c exists.
func JetStream(t testing.TB, s *Server, c stream.Config) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Ensure(context.Background(), js, c); err != nil {
		t.Fatal(err)
	}
	return js
}
