package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/internal/secrets"
	"github.com/herdhq/herd/stream"
)

// The tests here call run, which keeps parsed flags in package state: they
// do not run in parallel.

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// herdRun is one run of a herd command inside the test process.
type herdRun struct {
	stdout, stderr syncBuffer
	code           chan int
	cancel         context.CancelFunc
}

// start runs herd with args until stop (or the test's end).
func start(t *testing.T, args ...string) *herdRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &herdRun{code: make(chan int, 1), cancel: cancel}
	go func() { r.code <- run(ctx, args, &r.stdout, &r.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.code:
		case <-time.After(20 * time.Second):
			t.Errorf("herd %s did not stop", args[0])
		}
	})
	return r
}

// exit waits for the command to end by itself and returns its status.
func (r *herdRun) exit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case c := <-r.code:
		r.code <- c // for the cleanup
		return c
	case <-time.After(within):
		t.Fatalf("still running after %s; stderr:\n%s", within, r.stderr.String())
		return 0
	}
}

// stop cancels the command (SIGTERM) and returns its status.
func (r *herdRun) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	return r.exit(t, 20*time.Second)
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	p, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// waitHTTP waits until url answers want.
func waitHTTP(t *testing.T, r *herdRun, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d; stderr:\n%s", url, want, r.stderr.String())
		}
		select {
		case c := <-r.code:
			t.Fatalf("exited with %d; stderr:\n%s", c, r.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// embeddedNATS starts herd's embedded server listening on loopback, with its
// token in a file, as herd up --nats-listen runs it.
func embeddedNATS(t *testing.T) (url, tokenFile string) {
	t.Helper()
	dir := t.TempDir()
	tokenFile = filepath.Join(dir, natsTokenName)
	ns, err := stream.StartEmbedded(filepath.Join(dir, "nats"), "127.0.0.1:0", tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	return ns.Server.ClientURL(), tokenFile
}

// TestComponentsNeedNATSCredentials: herd collect, write and status reach a
// NATS server that requires a token with it, and without it (or with a
// wrong one) stop at once with an error naming what to set.
func TestComponentsNeedNATSCredentials(t *testing.T) {
	url, tokenFile := embeddedNATS(t)
	dbURL := pgtest.New(t)
	wrong := filepath.Join(t.TempDir(), "wrong.token")
	if err := secrets.WriteFile(wrong, secrets.Generate(32)); err != nil {
		t.Fatal(err)
	}
	sc := []string{"--stream", "CREDS_EVENTS", "--subject-prefix", "creds", "--sources-bucket", "creds_sources", "--stream-max-bytes", "67108864"}
	commands := map[string][]string{
		"collect": append([]string{"collect", "--nats-url", url, "--listen", "127.0.0.1:0"}, sc...),
		"write":   append([]string{"write", "--nats-url", url, "--database-url", dbURL}, sc...),
	}
	for _, name := range []string{"collect", "write"} {
		t.Run(name+" without token", func(t *testing.T) {
			r := start(t, append(commands[name], "--admin-listen", freeLoopback(t))...)
			if code := r.exit(t, 15*time.Second); code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, r.stderr.String())
			}
			msg := r.stderr.String()
			for _, want := range []string{"Authorization Violation", "HERD_NATS_TOKEN", "--nats-token-file", "--nats-creds"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q:\n%s", want, msg)
				}
			}
		})
		t.Run(name+" with a wrong token", func(t *testing.T) {
			r := start(t, append(commands[name], "--admin-listen", freeLoopback(t), "--nats-token-file", wrong)...)
			if code := r.exit(t, 15*time.Second); code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, r.stderr.String())
			}
			if msg := r.stderr.String(); !strings.Contains(msg, "credentials given") {
				t.Errorf("error does not say the credentials are wrong:\n%s", msg)
			}
		})
		t.Run(name+" with the token", func(t *testing.T) {
			admin := freeLoopback(t)
			r := start(t, append(commands[name], "--admin-listen", admin, "--nats-token-file", tokenFile)...)
			waitHTTP(t, r, "http://"+admin+"/readyz", 200)
			if code := r.stop(t); code != 0 {
				t.Fatalf("exit %d after a clean stop; stderr:\n%s", code, r.stderr.String())
			}
		})
	}
	t.Run("status", func(t *testing.T) {
		r := start(t, append([]string{"status", "--nats-url", url, "--database-url", dbURL}, sc[:6]...)...)
		if code := r.exit(t, 15*time.Second); code != 1 || !strings.Contains(r.stderr.String(), "HERD_NATS_TOKEN") {
			t.Errorf("status without token: exit %d, stderr %s", code, r.stderr.String())
		}
		r = start(t, append([]string{"status", "--nats-url", url, "--database-url", dbURL, "--nats-token-file", tokenFile}, sc[:6]...)...)
		if code := r.exit(t, 30*time.Second); code != 0 {
			t.Errorf("status with the token: exit %d, stderr %s", code, r.stderr.String())
		}
	})
}

// nonLoopback returns an address of this machine that is not loopback, to
// bind the admin listener beyond loopback; "0.0.0.0" when there is none
// (the unspecified address is not loopback either).
func nonLoopback() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	return "0.0.0.0"
}

// TestAdminTokenBeyondLoopback: an admin listener beyond loopback answers
// 401 with a JSON error to every path but /healthz and /readyz without the
// bearer token, and 200 with it; pprof's cmdline is gone; loopback without
// a token stays open.
func TestAdminTokenBeyondLoopback(t *testing.T) {
	token := secrets.Generate(32)
	a := newAdmin()
	a.check("ok", func(context.Context) error { return nil })
	a.mux.HandleFunc("/q/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "saved query result") })
	f := adminFlags{listen: nonLoopback() + ":0", token: token}
	l, err := f.listenAdmin(a, "", discard())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: l.h}
	go srv.Serve(l.ln) //nolint:errcheck
	t.Cleanup(func() { srv.Close() })
	port := l.ln.Addr().(*net.TCPAddr).Port
	host := nonLoopback()
	if host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	base := fmt.Sprintf("http://%s:%d", host, port)

	get := func(path, auth string) (int, string, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/healthz", "", 200},
		{"/readyz", "", 200},
		{"/metrics", "", 401},
		{"/metrics", "Bearer " + token, 200},
		{"/metrics", "Bearer " + token[:len(token)-1], 401},
		{"/metrics", "Basic " + token, 401},
		{"/q/report", "", 401},
		{"/q/report", "Bearer " + token, 200},
		{"/debug/pprof/", "", 401},
		{"/debug/pprof/", "Bearer " + token, 200},
		{"/debug/pprof/cmdline", "Bearer " + token, 404},
		{"/healthz/../metrics", "", 401},
	} {
		code, body, hdr := get(c.path, c.auth)
		if code != c.want {
			t.Errorf("GET %s (%q): %d, want %d: %s", c.path, c.auth, code, c.want, body)
			continue
		}
		if code == 401 {
			var e struct{ Error string }
			if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" || hdr.Get("Content-Type") != "application/json" {
				t.Errorf("GET %s: 401 body %q is not a JSON error", c.path, body)
			}
			if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("GET %s: no WWW-Authenticate: Bearer", c.path)
			}
		}
	}
	if _, m, _ := get("/metrics", "Bearer "+token); !strings.Contains(m, "herd_admin_unauthorized_requests_total") {
		t.Error("no herd_admin_unauthorized_requests_total in /metrics")
	}

	// Loopback without a token: open, as before.
	lf := adminFlags{listen: "127.0.0.1:0"}
	l2, err := lf.listenAdmin(newAdmin(), "", discard())
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	if _, ok := l2.h.(*http.ServeMux); !ok {
		t.Error("a loopback listener without a token is wrapped in the token check")
	}
}

// TestAdminBeyondLoopbackWithoutToken: herd collect refuses to start with
// an admin listener beyond loopback and no token, saying what to set; herd
// up generates one into its data directory (0600) and keeps it.
func TestAdminBeyondLoopbackWithoutToken(t *testing.T) {
	url, tokenFile := embeddedNATS(t)
	r := start(t, "collect", "--nats-url", url, "--nats-token-file", tokenFile, "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0")
	if code := r.exit(t, 15*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, r.stderr.String())
	}
	if msg := r.stderr.String(); !strings.Contains(msg, "HERD_ADMIN_TOKEN") || !strings.Contains(msg, "--admin-token-file") {
		t.Errorf("error does not say what to set:\n%s", msg)
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := secrets.WriteFile(short, "abc\n"); err != nil {
		t.Fatal(err)
	}
	r = start(t, "collect", "--nats-url", url, "--nats-token-file", tokenFile, "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0", "--admin-token-file", short)
	if code := r.exit(t, 15*time.Second); code != 2 {
		t.Errorf("a 3-character admin token: exit %d, want 2; stderr:\n%s", code, r.stderr.String())
	}

	dataDir := t.TempDir()
	f := adminFlags{listen: "0.0.0.0:0"}
	l, err := f.listenAdmin(newAdmin(), dataDir, discard())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	path := filepath.Join(dataDir, adminTokenName)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no generated admin token: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("admin token mode %#o, want 0600", st.Mode().Perm())
	}
	first, _ := os.ReadFile(path)
	l, err = f.listenAdmin(newAdmin(), dataDir, discard())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if again, _ := os.ReadFile(path); string(again) != string(first) {
		t.Error("the admin token changed on a second start")
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestSecretFlagWarningScoped: --from is a secret (a URL that may hold a
// password) for replicate only; herd replay's --from DATE draws no warning.
func TestSecretFlagWarningScoped(t *testing.T) {
	for _, v := range []string{"DATABASE_URL", "HERD_DATABASE_URL", "HERD_LAKE"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	dataDir := t.TempDir()
	const warning = "a secret was given on the command line"
	for _, c := range []struct {
		args []string
		warn bool
	}{
		{[]string{"replay", "--from", "2026-01-01", "--data-dir", dataDir}, false},
		{[]string{"replicate", "add", "app", "--from", "postgres://app:s3cret@127.0.0.1:1/app", "--tables", "public.users", "--data-dir", dataDir}, true},
		{[]string{"replicate", "add", "app", "--from", "postgres://app@127.0.0.1:1/app", "--tables", "public.users", "--data-dir", dataDir}, false},
	} {
		var out, errOut bytes.Buffer
		run(context.Background(), c.args, &out, &errOut)
		if got := strings.Contains(errOut.String(), warning); got != c.warn {
			t.Errorf("herd %s: secret warning %v, want %v:\n%s", strings.Join(c.args, " "), got, c.warn, errOut.String())
		}
	}
}
