package main

import (
	"bufio"
	"bytes"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
)

// TestUpPrintsBoundPort: herd up --listen 127.0.0.1:0 prints the demo
// page and collector URLs with the port it listens on, and they answer.
func TestUpPrintsBoundPort(t *testing.T) {
	dbURL := pgtest.New(t)
	up := exec.Command(herdBinary(t), "up", "--data-dir", t.TempDir(), "--database-url", dbURL, "--listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--console-listen", "127.0.0.1:0", "--nats-listen", "")
	up.Env = append(bareEnv(), "HERD_WRITE_KEY=listen-test-key-0123456789")
	var stderr syncWriter
	up.Stderr = &stderr
	out, err := up.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-up.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = up.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	demo := regexp.MustCompile(`demo page\s+(http://\S+)`)
	send := regexp.MustCompile(`send\s+curl .* (http://\S+/v1/track)`)
	var demoURL, trackURL string
	deadline := time.After(90 * time.Second)
	for demoURL == "" || trackURL == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("herd up ended before printing its URLs:\n%s", stderr.String())
			}
			if m := demo.FindStringSubmatch(l); m != nil {
				demoURL = m[1]
			}
			if m := send.FindStringSubmatch(l); m != nil {
				trackURL = m[1]
			}
		case <-deadline:
			t.Fatal("herd up printed no demo and send lines in 90 s")
		}
	}
	go func() {
		for range lines {
		}
	}()
	for _, u := range []string{demoURL, trackURL} {
		if strings.Contains(u, ":0/") {
			t.Fatalf("printed %s: port 0", u)
		}
	}
	resp, err := http.Get(demoURL)
	if err != nil {
		t.Fatalf("GET %s: %v", demoURL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", demoURL, resp.StatusCode)
	}
}

type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
