package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// emptyAPI answers every request as an empty list in the shapes of Stripe's,
// Intercom's and Front's list and search endpoints at once: an account with
// nothing in it, enough for each connector to finish its passes.
func emptyAPI(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[],"has_more":false,"type":"list","total_count":0,
			"pages":{"type":"pages","page":1,"per_page":150,"total_pages":0},
			"admins":[],"teams":[],"segments":[],"conversations":[],"tickets":[],"companies":[],
			"_results":[],"_pagination":{"next":null}}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestUpWithConnectorsOnASmallPool runs a real herd up process with the
// Stripe, Intercom and Front connectors configured against fakes, on the
// pool Postgres gets by default on a 2-CPU machine (4 connections, set
// explicitly here so the test means the same on any machine). The
// connectors' pass locks must not starve that pool: /readyz turns ready
// and every connector records a successful pass in its sync_state.
func TestUpWithConnectorsOnASmallPool(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a herd up process")
	}
	bin := herdBinary(t)
	dbURL := pgtest.New(t)
	api := emptyAPI(t)
	var ports [2]int
	for i := range ports {
		p, err := pgcluster.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	addr, admin := "127.0.0.1:"+strconv.Itoa(ports[0]), "127.0.0.1:"+strconv.Itoa(ports[1])
	dataDir := t.TempDir()
	cmd := exec.Command(bin, "up", "--data-dir", dataDir, "--listen", addr, "--admin-listen", admin, "--nats-listen", "", "--console-listen", "",
		"--stripe-api-base", api.URL, "--intercom-api-base", api.URL, "--front-api-base", api.URL,
		"--stripe-interval", "2s", "--intercom-interval", "2s", "--front-interval", "2s")
	cmd.Env = append(bareEnv(), "HERD_DATABASE_URL="+dbURL+"&pool_max_conns=4",
		"STRIPE_API_KEY=sk_test_x", "INTERCOM_ACCESS_TOKEN=x", "FRONT_API_TOKEN=x")
	logf, err := os.Create(filepath.Join(t.TempDir(), "herd.log"))
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
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	tail := func() string {
		b, _ := os.ReadFile(logf.Name())
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		return string(b)
	}

	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	client := &http.Client{Timeout: 5 * time.Second}
	var ready string
	synced := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := client.Get("http://" + admin + "/readyz"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ready = strconv.Itoa(resp.StatusCode) + " " + strings.TrimSpace(string(b))
			if resp.StatusCode != 200 {
				ready = "not ready: " + ready
			}
		}
		for _, schema := range []string{"stripe", "intercom", "front"} {
			var n int
			err := db.QueryRow(context.Background(), `SELECT count(*) FROM `+schema+`.sync_state WHERE last_success_at IS NOT NULL`).Scan(&n)
			synced[schema] = err == nil && n > 0
		}
		if !strings.HasPrefix(ready, "not ready") && ready != "" && synced["stripe"] && synced["intercom"] && synced["front"] {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("herd up exited: %v\n%s", err, tail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: readyz %q, connectors with a successful pass %v\n%s", ready, synced, tail())
		}
		time.Sleep(250 * time.Millisecond)
	}
}
