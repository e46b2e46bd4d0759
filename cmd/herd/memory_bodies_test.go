package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/membudget"
)

// TestUpHoldsMemoryBudgetSlowBodies opens many connections to a real herd
// up with a small --memory-limit, each sending a large batch slowly: the
// headers and most of the body at once, the rest only after a pause.
// Bodies that arrive whole at the same time would need far more than the
// budget (400 × ~470 KB); herd up must read only what its body budget
// admits, answer the rest 503 with Retry-After, and its peak resident
// memory (VmHWM) stay under the budget plus the same margin as
// TestUpHoldsMemoryBudget.
func TestUpHoldsMemoryBudgetSlowBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and loads a herd up process")
	}
	const (
		budget  = 128 << 20
		conns   = 400
		events  = 220
		propLen = 2000
		pause   = 5 * time.Second
	)
	margin := int64(budget * 3 / 10)
	bin := os.Getenv("HERD_MEMTEST_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "herd")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	dbURL := pgtest.New(t)
	dataDir := t.TempDir()
	port, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	const key = "memtest-write-key-0123456789"
	cmd := exec.Command(bin, "up", "--data-dir", dataDir, "--database-url", dbURL, "--listen", addr, "--admin-listen", "127.0.0.1:0",
		"--nats-listen", "", "--write-key", key, "--browser-byte-rate", "0", "--memory-limit", strconv.Itoa(budget))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERD_") && !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") && !strings.HasPrefix(kv, "GOGC=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var logs syncWriter // one lock for both streams
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
	deadline := time.Now().Add(40 * time.Second)
	for {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/batch", strings.NewReader(`{"batch":[]}`))
		req.Header.Set("Authorization", auth)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 && resp.StatusCode != 401 {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("herd up exited before it was ready: %v\n%s", waitErr, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("herd up not answering on %s after 40s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}

	body := func(w int) []byte {
		var b bytes.Buffer
		b.WriteString(`{"batch":[`)
		pad := strings.Repeat("y", propLen)
		for i := range events {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"type":"track","event":"Slow","userId":"u%d","messageId":"slow-%d-%d","properties":{"pad":%q}}`, w, w, i, pad)
		}
		b.WriteString(`]}`)
		return b.Bytes()
	}
	var (
		mu       sync.Mutex
		statuses = map[string]int{}
		wg       sync.WaitGroup
	)
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status := "no reply"
			defer func() { mu.Lock(); statuses[status]++; mu.Unlock() }()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				status = "dial: " + err.Error()
				return
			}
			defer c.Close()
			b := body(w)
			head := fmt.Sprintf("POST /v1/batch HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, auth, len(b))
			split := len(b) - 4096
			go func() {
				// The writes stop when herd up answers and closes.
				_ = c.SetWriteDeadline(time.Now().Add(pause + 20*time.Second))
				if _, err := c.Write(append([]byte(head), b[:split]...)); err != nil {
					return
				}
				time.Sleep(pause)
				_, _ = c.Write(b[split:])
			}()
			_ = c.SetReadDeadline(time.Now().Add(pause + 25*time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return
			}
			resp.Body.Close()
			status = strconv.Itoa(resp.StatusCode)
			if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
				status += " without Retry-After"
			}
		}()
	}
	var rssMax int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if v, err := procStatus(cmd.Process.Pid, "VmRSS:"); err == nil && v > rssMax {
				rssMax = v
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-sampled
	select {
	case <-exited:
		t.Fatalf("herd up died under slow large bodies: %v\n%s", waitErr, logs.String())
	default:
	}
	hwm, err := procStatus(cmd.Process.Pid, "VmHWM:")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("budget %s: peak RSS (VmHWM) %s, largest sampled VmRSS %s; replies %v",
		membudget.Format(budget), membudget.Format(hwm), membudget.Format(rssMax), statuses)
	if hwm > budget+margin {
		t.Errorf("peak RSS %s is over the budget %s plus the margin %s", membudget.Format(hwm), membudget.Format(int64(budget)), membudget.Format(margin))
	}
	for s, n := range statuses {
		if s != "200" && s != "503" {
			t.Errorf("%d connections: %s; want 200 or 503 with Retry-After", n, s)
		}
	}
	if statuses["200"] == 0 {
		t.Errorf("no slow body was accepted: the test shows nothing about what herd up reads")
	}
}
