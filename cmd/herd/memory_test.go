package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/membudget"
)

// TestUpHoldsMemoryBudget offers a real herd up process, built from this
// tree and given a small --memory-limit, more than it can take: many
// connections sending large batches as fast as they are answered, with the
// archiver on. Its peak resident memory (VmHWM) must stay under the budget
// plus a stated margin, it must not die, 503s are allowed, and every event
// answered 200 must be in herd.events exactly once.
//
// HERD_MEMTEST_BIN names a herd binary to test instead of building one;
// HERD_MEMTEST_LIMIT overrides the budget (make memtest runs it alone).
func TestUpHoldsMemoryBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and loads a herd up process")
	}
	const (
		limit = 128 << 20
		// 48 connections of 40-event batches of ~2 KB events (~85 KB a
		// request) in a closed loop: the collector accepts them faster
		// than Postgres and the lake take them, so backlogs build behind
		// it, and the stream byte rate is passed: requests wait for it,
		// and those that would wait over a second are answered 503.
		conns   = 48
		perReq  = 40
		propLen = 2000
		offer   = 15 * time.Second
	)
	budget := int64(limit)
	if v := os.Getenv("HERD_MEMTEST_LIMIT"); v != "" {
		n, err := membudget.Parse(v)
		if err != nil {
			t.Fatal(err)
		}
		budget = n
	}
	// The margin: the budget bounds what herd sizes; beyond it the kernel
	// counts what the garbage collector has not yet found free (it runs
	// continuously only near GOMEMLIMIT) and the bodies being read. Seen
	// with the stream byte rate: 101–114 MiB at 128 MiB, 169 MiB at 200
	// MiB, 92–98 MiB at 96 MiB. Without it, the block caches of embedded
	// NATS (the last 10 s of stream bytes) took the peak to 178–234 MiB at
	// 128 MiB, and main without a budget peaked near 1 GB under this load.
	margin := budget * 15 / 100
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
	adminPort, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := "127.0.0.1:" + strconv.Itoa(adminPort)
	const key = "memtest-write-key-0123456789"
	args := []string{"up", "--data-dir", dataDir, "--database-url", dbURL, "--listen", addr, "--admin-listen", adminAddr,
		// The default source is a browser source: its byte rate would
		// answer 429 before the memory budget is reached.
		"--nats-listen", "", "--write-key", key, "--browser-byte-rate", "0", "--memory-limit", strconv.FormatInt(budget, 10)}
	if os.Getenv("HERD_MEMTEST_NO_LIMIT_FLAG") != "" {
		args = args[:len(args)-2]
	}
	cmd := exec.Command(bin, args...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERD_") && !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") && !strings.HasPrefix(kv, "GOGC=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	logf, err := os.Create(filepath.Join(dataDir, "..", "herd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	tail := func() string {
		b, _ := os.ReadFile(logf.Name())
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		return string(b)
	}

	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: 5 * time.Second}}
	url := "http://" + addr + "/v1/batch"
	post := func(body []byte) (int, error) {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.SetBasicAuth(key, "")
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && !bytes.Equal(bytes.TrimSpace(rb), []byte(`{"success":true}`)) {
			return 0, fmt.Errorf("200 with %s", rb)
		}
		if resp.StatusCode == 503 && (resp.Header.Get("Retry-After") == "" || !bytes.Contains(rb, []byte(`"error"`))) {
			return 0, fmt.Errorf("503 without Retry-After or JSON error: %s", rb)
		}
		return resp.StatusCode, nil
	}
	// Ready: the default source's key is accepted.
	deadline := time.Now().Add(40 * time.Second)
	for {
		if code, err := post([]byte(`{"batch":[]}`)); err == nil && code < 500 && code != 401 {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("herd up exited before it was ready: %v\n%s", err, tail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("herd up not answering on %s after 40s\n%s", addr, tail())
		}
		time.Sleep(100 * time.Millisecond)
	}

	props := strings.Repeat("x", propLen)
	var (
		mu       sync.Mutex
		acked    []string
		statuses = map[int]int{}
		errs     atomic.Int64
		firstErr atomic.Value
	)
	ctx, cancel := context.WithTimeout(context.Background(), offer)
	defer cancel()
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				ids := make([]string, perReq)
				var b bytes.Buffer
				b.WriteString(`{"batch":[`)
				for i := range ids {
					ids[i] = fmt.Sprintf("mem-%d-%d-%d", w, n, i)
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, `{"type":"track","event":"Load","userId":"u%d","messageId":%q,"properties":{"pad":%q,"i":%d}}`, w, ids[i], props, i)
				}
				b.WriteString(`]}`)
				code, err := post(b.Bytes())
				if err != nil {
					if errs.Add(1) == 1 {
						firstErr.Store(err.Error())
					}
					time.Sleep(50 * time.Millisecond)
					continue
				}
				mu.Lock()
				statuses[code]++
				if code == 200 {
					acked = append(acked, ids...)
				}
				mu.Unlock()
				if code == 503 {
					time.Sleep(20 * time.Millisecond) // sooner than Retry-After: the offer stays above what herd takes
				}
			}
		}()
	}
	// The largest resident set seen while the load runs, beside the
	// kernel's own peak read at the end.
	var rssMax int64
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		for ctx.Err() == nil {
			if v, err := procStatus(cmd.Process.Pid, "VmRSS:"); err == nil && v > rssMax {
				rssMax = v
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	wg.Wait()
	<-samplerDone
	select {
	case err := <-exited:
		stopped = true
		t.Fatalf("herd up died under load: %v\n%s", err, tail())
	default:
	}
	hwm, err := procStatus(cmd.Process.Pid, "VmHWM:")
	if err != nil {
		t.Fatal(err)
	}
	// The peak is read again once the backlog has drained into Postgres
	// (below): catching up must hold the budget too.
	t.Logf("budget %s: peak RSS (VmHWM) %s, largest sampled VmRSS %s; replies %v; transport errors %d (first: %v); %d events acknowledged",
		membudget.Format(budget), membudget.Format(hwm), membudget.Format(rssMax), statuses, errs.Load(), firstErr.Load(), len(acked))
	if hwm > budget+margin {
		t.Errorf("peak RSS %s is over the budget %s plus the margin %s", membudget.Format(hwm), membudget.Format(budget), membudget.Format(margin))
	}
	if len(acked) == 0 {
		t.Fatalf("no request was answered 200: the test offered nothing herd took\n%s", tail())
	}
	if errs.Load() > 0 {
		t.Errorf("%d requests failed (a timeout, a 503 without Retry-After or a JSON error, or a 200 with another body); the first: %v", errs.Load(), firstErr.Load())
	}
	// More was offered than herd takes: requests were refused, or made to
	// wait for the stream byte rate.
	waits := metricSum(t, "http://"+adminAddr+"/metrics", "herd_collector_stream_rate_waits_total")
	refused := metricSum(t, "http://"+adminAddr+"/metrics", "herd_collector_memory_refused_requests_total")
	t.Logf("back-pressure: %.0f requests refused for memory, %.0f made to wait for the stream byte rate", refused, waits)
	if statuses[503] == 0 && waits == 0 {
		t.Errorf("no 503 and no wait: herd took everything as it was offered, so the test did not offer more than it takes")
	}
	for code, n := range statuses {
		if code != 200 && code != 503 {
			t.Errorf("%d requests answered %d: only 200 and 503 are expected", n, code)
		}
	}

	// Every acknowledged event reaches herd.events exactly once.
	db := pgtest.Pool(t, dbURL)
	var rows, distinct int64
	wait := time.Now().Add(60 * time.Second)
	for {
		err := db.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT message_id) FROM herd.events WHERE message_id = ANY($1)`, acked).Scan(&rows, &distinct)
		if err != nil {
			t.Fatal(err)
		}
		if distinct == int64(len(acked)) || time.Now().After(wait) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if distinct != int64(len(acked)) {
		t.Errorf("%d of %d acknowledged events are in herd.events", distinct, len(acked))
	}
	var dups int64
	if err := db.QueryRow(context.Background(), `SELECT count(*) - count(DISTINCT message_id) FROM herd.events`).Scan(&dups); err != nil {
		t.Fatal(err)
	}
	if after, err := procStatus(cmd.Process.Pid, "VmHWM:"); err == nil && after > hwm {
		t.Logf("peak RSS while the backlog drained: %s", membudget.Format(after))
		if after > budget+margin {
			t.Errorf("peak RSS %s while the backlog drained is over the budget %s plus the margin %s", membudget.Format(after), membudget.Format(budget), membudget.Format(margin))
		}
	}
	if dups != 0 || rows != distinct {
		t.Errorf("%d duplicate rows in herd.events", dups)
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("herd up did not stop cleanly: %v\n%s", err, tail())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("herd up still running 30s after SIGTERM")
	}
}

// procStatus reads one kB field of /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// metricSum adds up every series of one metric on a Prometheus page.
func metricSum(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}
