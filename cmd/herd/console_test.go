package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
	"github.com/herdhq/herd/stream"
)

// herd up runs without its console, and says so, when the default console
// address is taken (another herd up on the machine, a test running in
// parallel); herd console, and an address given on purpose, refuse.
func TestConsoleDefaultAddressTaken(t *testing.T) {
	ln, err := net.Listen("tcp", defaultConsoleListen)
	if err != nil && !errors.Is(err, syscall.EADDRINUSE) {
		t.Skipf("cannot hold %s: %v", defaultConsoleListen, err)
	}
	if ln != nil {
		defer ln.Close()
	}
	dbURL := pgtest.New(t)
	db := pgtest.Pool(t, dbURL)
	if _, err := schemas.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	g := newGroup(context.Background(), e.log)
	defer g.cancel()
	cf := &consoleFlags{listen: defaultConsoleListen, maxSessions: 5}
	url, err := startConsole(e, g, nil, cf, db, dbURL, nil, nil, stream.Config{}, nil, true)
	if err != nil || url != "" || !strings.Contains(logs.String(), "console not served") {
		t.Errorf("herd up with the default console address taken: url %q, err %v, log %q; want no console and a warning", url, err, logs.String())
	}
	if _, err := startConsole(e, g, nil, cf, db, dbURL, nil, nil, stream.Config{}, nil, false); err == nil || !strings.Contains(err.Error(), "--console-listen") {
		t.Errorf("herd console with its address taken: %v, want a refusal naming --console-listen", err)
	}
}
