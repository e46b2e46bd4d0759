package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herdhq/herd/instance"
	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/nats-io/nats-server/v2/server"
)

var (
	buildOnce sync.Once
	herdBin   string
	buildErr  error
)

// herdBinary builds cmd/herd once per test binary.
func herdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		herdBin = filepath.Join(dir, "herd")
		if out, err := exec.Command("go", "build", "-o", herdBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return herdBin
}

// bareEnv is this process's environment without anything that names a
// database, a NATS server or a herd setting.
func bareEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "HERD_") || strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "STRIPE_") || k == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// otherNATS makes sure a NATS server that is not herd up's listens on the
// default port, 127.0.0.1:4222: the machine's own, else one started here.
func otherNATS(t *testing.T) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second); err == nil {
		c.Close()
		return
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: 4222, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("no NATS on 127.0.0.1:4222")
	}
	t.Cleanup(ns.Shutdown)
}

// runHerd runs the herd binary in dir with env and returns its exit code
// and output.
func runHerd(t *testing.T, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, herdBinary(t), args...)
	cmd.Dir, cmd.Env = dir, env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// TestCommandsFindTheirHerdUp is acceptance 1 of issue 17: herd up runs on
// ./data with its private Postgres while another NATS server listens on
// the default port; herd status, sources list and usage, given no flag and
// no variable, report on that herd up. Once it stops, they say what they
// tried instead of asking the other server.
func TestCommandsFindTheirHerdUp(t *testing.T) {
	if _, err := pgcluster.FindBinDir(); err != nil {
		t.Skip(err)
	}
	otherNATS(t)
	base := t.TempDir()
	env := bareEnv()
	port, _ := pgcluster.FreePort()
	// A stream name of its own: the other server may hold a HERD_EVENTS.
	streamName := fmt.Sprintf("HERD_LOCATE_%d", time.Now().UnixNano())
	up := exec.Command(herdBinary(t), "up", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--admin-listen", "127.0.0.1:0",
		"--write-key", "locate-key", "--stream", streamName, "--subject-prefix", "locate", "--sources-bucket", "locate_sources")
	up.Dir, up.Env = base, env
	upLog, err := os.Create(filepath.Join(base, "up.log"))
	if err != nil {
		t.Fatal(err)
	}
	up.Stdout, up.Stderr = upLog, upLog
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
			_ = up.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(upLog.Name())
			t.Logf("herd up output:\n%s", b)
		}
	})
	dataDir := filepath.Join(base, "data")
	// A second herd up started while the first is still starting (its
	// Postgres not up, no connection file yet) is refused at once: two would
	// stop each other's Postgres and share one JetStream store.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dataDir, "nats")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("herd up made no data directory")
		}
		time.Sleep(20 * time.Millisecond)
	}
	port2, _ := pgcluster.FreePort()
	second := exec.CommandContext(t.Context(), herdBinary(t), "up", "--listen", fmt.Sprintf("127.0.0.1:%d", port2), "--admin-listen", "127.0.0.1:0",
		"--stream", streamName, "--subject-prefix", "locate", "--sources-bucket", "locate_sources")
	second.Dir, second.Env = base, env
	second.WaitDelay = time.Second
	done := make(chan []byte, 1)
	go func() { b, _ := second.CombinedOutput(); done <- b }()
	select {
	case b := <-done:
		if second.ProcessState.ExitCode() != 1 || !strings.Contains(string(b), "herd up already runs on ./data") {
			t.Errorf("a second herd up on ./data: exit %d, want 1 saying one runs:\n%s", second.ProcessState.ExitCode(), b)
		}
	case <-time.After(15 * time.Second):
		_ = second.Process.Kill()
		t.Errorf("a second herd up on ./data started beside the first: %s", <-done)
	}
	deadline = time.Now().Add(2 * time.Minute)
	for {
		if _, err := instance.Find(dataDir); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("herd up wrote no connection file")
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, err := os.Stat(instance.Path(dataDir))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("connection file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/v1/track", port), strings.NewReader(`{"userId":"u1","event":"Located","messageId":"locate-1"}`))
	req.SetBasicAuth("locate-key", "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("track: %v %v", err, resp)
	}
	resp.Body.Close()

	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"status"}, []string{"stream " + streamName, "herd-writer", "default"}},
		{[]string{"sources", "list"}, []string{"default", "locate-key"}},
		{[]string{"usage"}, []string{"SCHEMA", "herd"}},
	} {
		code, out, errOut := runHerd(t, base, env, c.args...)
		if code != 0 {
			t.Errorf("herd %s: exit %d\n%s%s", strings.Join(c.args, " "), code, out, errOut)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("herd %s does not report on the herd up of ./data: no %q in\n%s", strings.Join(c.args, " "), w, out)
			}
		}
	}

	// Stopped, herd up removes its file; the commands then say what they
	// tried, and never ask the server on the default port.
	stopped = true
	_ = syscall.Kill(up.Process.Pid, syscall.SIGTERM)
	_ = up.Wait()
	if _, err := os.Stat(instance.Path(dataDir)); !os.IsNotExist(err) {
		t.Errorf("herd up left %s behind: %v", instance.Path(dataDir), err)
	}
	code, out, errOut := runHerd(t, base, env, "status")
	if code != 1 || !strings.Contains(errOut, "no NATS server: tried --nats-url, $HERD_NATS_URL and the herd up of --data-dir: no herd up has run on ./data") {
		t.Errorf("herd status with herd up stopped: exit %d, want 1 saying what it tried:\n%s%s", code, out, errOut)
	}
	code, out, errOut = runHerd(t, base, env, "sources", "list")
	if code != 1 || !strings.Contains(errOut, "no database: tried --database-url, $HERD_DATABASE_URL, $DATABASE_URL") {
		t.Errorf("herd sources list with herd up stopped: exit %d, want 1 saying what it tried:\n%s%s", code, out, errOut)
	}
}

// TestLocateSaysWhenSystemsMix: with a herd up live on the data directory,
// a command whose database comes from a flag or variable and NATS from
// herd.json (or the other way round) says so on stderr; one that takes
// both from the same place says nothing.
func TestLocateSaysWhenSystemsMix(t *testing.T) {
	for _, v := range []string{"DATABASE_URL", "HERD_DATABASE_URL", "HERD_NATS_URL", "HERD_DATA_DIR"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	dir := t.TempDir()
	if err := instance.Write(dir, instance.Info{PID: os.Getpid(), DatabaseURL: "postgres://up@127.0.0.1:5999/herd",
		NATSURL: "nats://127.0.0.1:4999", Stream: "HERD_EVENTS"}); err != nil {
		t.Fatal(err)
	}
	lock, err := instance.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string // empty: no warning
	}{
		{"neither given", nil, nil, ""},
		{"both given", nil, []string{"--database-url", "postgres://other/db", "--nats-url", "nats://other:4222"}, ""},
		{"database from DATABASE_URL", map[string]string{"DATABASE_URL": "postgres://other/db"}, nil,
			"the database comes from a flag or variable, NATS from the herd up of " + dir},
		{"NATS from the flag", nil, []string{"--nats-url", "nats://other:4222"},
			"the database comes from the herd up of " + dir + " (" + instance.Path(dir) + "), NATS from a flag or variable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			fs := newFlagSet(commands["status"])
			if err := fs.Parse(append([]string{"--data-dir", dir}, c.args...)); err != nil {
				t.Fatal(err)
			}
			if err := applyEnv(fs); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			locate(fs, &stderr)
			switch {
			case c.want == "" && stderr.Len() != 0:
				t.Errorf("want no warning, got %q", stderr.String())
			case c.want != "" && (!strings.Contains(stderr.String(), c.want) || strings.Count(stderr.String(), "\n") != 1):
				t.Errorf("want one line with %q, got %q", c.want, stderr.String())
			}
		})
	}
}
