package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/jackc/pgx/v5"
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
		out, err := exec.Command("go", "build", "-o", herdBin, "github.com/herdhq/herd/cmd/herd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return herdBin
}

// startProcess runs herd with args; the process is killed when the test ends.
func startProcess(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(herdBinary(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, _ := os.CreateTemp(t.TempDir(), "proc-*.log")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s output:\n%s", args[0], tailString(string(b), 3000))
		}
	})
	return cmd
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestWriterSIGKILL kills the writer process in the middle of its batches,
// several times, and restarts it: every event is stored exactly once.
func TestWriterSIGKILL(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{NoWriter: true})
	const total = 6000
	var items []string
	for i := 0; i < total; i++ {
		items = append(items, fmt.Sprintf(`{"type":"track","event":"Kill","userId":"u%d","messageId":"k-%d","properties":{"pad":"%s"}}`, i%50, i, strings.Repeat("x", 200)))
	}
	for i := 0; i < total; i += 500 {
		r := post(t, p.URL+"/v1/batch", []byte(`{"batch":[`+strings.Join(items[i:i+500], ",")+`]}`), map[string]string{"Authorization": basic(p.WriteKey)})
		if r.Status != 200 {
			t.Fatalf("batch: %d %s", r.Status, r.RawBody)
		}
	}
	args := []string{"write", "--nats-url", p.NATS.ClientURL(), "--database-url", p.DBURL, "--stream", p.Stream.Name,
		"--subject-prefix", p.Stream.Prefix, "--sources-bucket", p.Stream.SourcesKV, "--admin-listen", "127.0.0.1:0",
		"--batch-events", "300", "--writers", "2", "--ack-wait", "2s"}
	count := func() int64 {
		var n int64
		_ = p.DB.QueryRow(context.Background(), "SELECT count(*) FROM herd.events").Scan(&n)
		return n
	}
	kills := 0
	for kills < 3 {
		cmd := startProcess(t, args...)
		before := count()
		deadline := time.Now().Add(20 * time.Second)
		for count() == before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := count(); n >= total {
			break // it finished before we could kill it
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		kills++
	}
	startProcess(t, args...)
	if n := p.WaitRows(t, total, 60*time.Second, "SELECT count(*) FROM herd.events"); n != total {
		t.Fatalf("rows %d, want %d after %d kills", n, total, kills)
	}
	var distinct int64
	_ = p.DB.QueryRow(context.Background(), "SELECT count(DISTINCT message_id) FROM herd.events").Scan(&distinct)
	if distinct != total {
		t.Fatalf("distinct message ids %d, want %d", distinct, total)
	}
	if kills == 0 {
		t.Fatal("the writer was never killed mid-stream")
	}
	t.Logf("killed the writer %d times; %d rows, all distinct", kills, total)
}

// TestUpPrintsWhatToDo runs herd up as a newcomer would with make run, with
// no DATABASE_URL (so a private cluster is created from the system's
// binaries), and checks what it prints and that a curl-style event lands.
func TestUpPrintsWhatToDo(t *testing.T) {
	t.Parallel()
	if _, err := pgcluster.FindBinDir(); err != nil {
		t.Skip(err)
	}
	dir, err := os.MkdirTemp("", "herd-up-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port, _ := pgcluster.FreePort()
	aport, _ := pgcluster.FreePort()
	cmd := exec.Command(herdBinary(t), "up", "--data-dir", filepath.Join(dir, "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--admin-listen", fmt.Sprintf("127.0.0.1:%d", aport), "--write-key", "newcomer-key")
	cmd.Env = append(os.Environ(), "DATABASE_URL=", "HERD_DATABASE_URL=")
	var out strings.Builder
	var mu sync.Mutex
	cmd.Stdout = writerFunc(func(b []byte) { mu.Lock(); out.Write(b); mu.Unlock() })
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	printed := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(printed(), "see events") {
		if time.Now().After(deadline) {
			t.Fatalf("herd up printed no instructions:\n%s", printed())
		}
		time.Sleep(100 * time.Millisecond)
	}
	text := printed()
	for _, want := range []string{"write key   newcomer-key", fmt.Sprintf("demo page   http://127.0.0.1:%d/demo", port), "psql \"postgres://postgres@127.0.0.1:"} {
		if !strings.Contains(text, want) {
			t.Errorf("herd up output lacks %q:\n%s", want, text)
		}
	}
	// The private Postgres has a password, kept 0600 in the data directory,
	// and nothing printed or logged holds it.
	pgpass := filepath.Join(dir, "data", "pgpass")
	st, err := os.Stat(pgpass)
	if err != nil {
		t.Fatalf("no password file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %#o, want 0600", pgpass, st.Mode().Perm())
	}
	pass, _ := os.ReadFile(pgpass)
	password := strings.Split(strings.Split(string(pass), "\n")[0], ":")[4]
	if len(password) < 16 || strings.Contains(text, password) {
		t.Errorf("herd up printed the private Postgres's password (or it is too short: %d characters):\n%s", len(password), text)
	}
	r := post(t, fmt.Sprintf("http://127.0.0.1:%d/v1/track", port), []byte(`{"userId":"u1","event":"Signed Up","messageId":"up-1"}`),
		map[string]string{"Authorization": basic("newcomer-key"), "Content-Type": "application/json"})
	if r.Status != 200 {
		t.Fatalf("track: %d %s", r.Status, r.RawBody)
	}
	acked := time.Now()
	// Operators see the row within a second of the 200 (the design's
	// promise; typical is tens of milliseconds).
	dbURL := text[strings.Index(text, "psql \"")+6:]
	dbURL = dbURL[:strings.Index(dbURL, "\"")]
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for {
		var n int
		_ = conn.QueryRow(context.Background(), "SELECT count(*) FROM herd.events WHERE message_id = 'up-1'").Scan(&n)
		if n == 1 {
			break
		}
		if time.Since(acked) > time.Second {
			t.Fatalf("event not visible in Postgres a second after its 200")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("row visible %s after the 200", time.Since(acked).Round(time.Millisecond))
	// Without the password file, the private Postgres refuses.
	bare, _, _ := strings.Cut(dbURL, "&passfile=")
	cfg, err := pgx.ParseConfig(bare)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = ""
	if c, err := pgx.ConnectConfig(context.Background(), cfg); err == nil {
		c.Close(context.Background())
		t.Error("the private Postgres accepted a connection without its password")
	}
	// The printed psql command shows the event.
	line := text[strings.Index(text, "psql "):]
	line = line[:strings.Index(line, "\n")]
	var rows string
	for time.Now().Before(deadline) {
		o, err := exec.Command("bash", "-c", line).CombinedOutput()
		rows = string(o)
		if err == nil && strings.Contains(rows, "Signed Up") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(rows, "Signed Up") {
		t.Fatalf("printed psql command does not show the event: %s", rows)
	}
	// Ctrl-C drains and stops within 10 s.
	start := time.Now()
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("stopping took %s", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("herd up did not stop within 15 s of SIGINT")
	}
}

type writerFunc func([]byte)

func (w writerFunc) Write(b []byte) (int, error) { w(b); return len(b), nil }

// TestUpHidesPasswords runs herd up with a DATABASE_URL that holds a
// password, given both ways: neither what it prints nor what it logs holds
// the password, and the flag draws a warning that ps shows it.
func TestUpHidesPasswords(t *testing.T) {
	t.Parallel()
	// A comma in the password: a redaction that splits URLs on commas
	// would print the part after it.
	const password = "Sup3rSecret,Pw-e2e"
	dbURL := strings.Replace(pgtest.New(t), "postgres@", "postgres:"+password+"@", 1)
	if !strings.Contains(dbURL, password) {
		t.Fatalf("cannot put a password in %s", dbURL)
	}
	for _, how := range []string{"env", "flag"} {
		t.Run(how, func(t *testing.T) {
			listen, admin := freeAddr(t), freeAddr(t)
			args := []string{"up", "--data-dir", t.TempDir(), "--listen", listen, "--admin-listen", admin, "--enrich=false"}
			env := append(os.Environ(), "HERD_DATABASE_URL=", "DATABASE_URL=")
			if how == "flag" {
				args = append(args, "--database-url", dbURL)
			} else {
				env = append(env, "HERD_DATABASE_URL="+dbURL)
			}
			cmd := exec.Command(herdBinary(t), args...)
			cmd.Env = env
			var out strings.Builder
			var mu sync.Mutex
			cmd.Stdout = writerFunc(func(b []byte) { mu.Lock(); out.Write(b); mu.Unlock() })
			cmd.Stderr = cmd.Stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			printed := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
			deadline := time.Now().Add(60 * time.Second)
			for !strings.Contains(printed(), "see events") {
				if time.Now().After(deadline) {
					t.Fatalf("herd up printed no instructions:\n%s", printed())
				}
				time.Sleep(100 * time.Millisecond)
			}
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
			text := printed()
			for _, part := range strings.Split(password, ",") {
				if strings.Contains(text, part) {
					t.Errorf("herd up printed or logged (part of) the database password:\n%s", text)
				}
			}
			if !strings.Contains(text, "postgres:xxxxx@") {
				t.Errorf("herd up does not show the URL with its password masked:\n%s", text)
			}
			if warned := strings.Contains(text, "ps") && strings.Contains(text, "flag=--database-url"); warned != (how == "flag") {
				t.Errorf("warning about a password on the command line: %t, want %t:\n%s", warned, how == "flag", text)
			}
		})
	}
}
