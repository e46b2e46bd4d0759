package harness

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
)

// testLogger logs into buf (shown when the test fails) rather than the test
// output.
func testLogger(t *testing.T, buf *bytes.Buffer) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(&lockedWriter{w: buf}, nil))
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
