package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/herdhq/herd/internal/pgtest"
)

// herd sync intercom is wired: it refuses to start without a token and
// names what to set, reads the token from a 0600 file only, runs a pass
// against --intercom-api-base with the pinned version, and check exits 0
// on an empty workspace it matches. (The connector's behaviour is
// saas/intercom's tests.)
func TestSyncIntercomCommand(t *testing.T) {
	t.Parallel()
	var requests, badAuth atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Header.Get("Authorization") != "Bearer tok_cli" || r.Header.Get("Intercom-Version") != "2.11" {
			badAuth.Add(1)
			w.WriteHeader(401)
			_, _ = w.Write([]byte(`{"type":"error.list","errors":[{"code":"unauthorized","message":"Access Token Invalid"}]}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"type":"list","data":[],"admins":[],"teams":[],"segments":[],"conversations":[],"total_count":0,"pages":{"type":"pages"}}`))
	}))
	defer api.Close()
	dir := t.TempDir()
	env := append(bareEnv(), "HERD_DATABASE_URL="+pgtest.New(t))
	var clean []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "INTERCOM_") {
			clean = append(clean, kv)
		}
	}
	env = clean

	code, _, errOut := runHerd(t, dir, env, "sync", "intercom", "--once", "--intercom-api-base", api.URL)
	if code != 2 || !strings.Contains(errOut, "INTERCOM_ACCESS_TOKEN") {
		t.Fatalf("without a token: exit %d, %s; want 2 naming INTERCOM_ACCESS_TOKEN", code, errOut)
	}
	tokenFile := filepath.Join(dir, "intercom.token")
	if err := os.WriteFile(tokenFile, []byte("tok_cli\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runHerd(t, dir, env, "sync", "intercom", "--once", "--intercom-api-base", api.URL, "--token-file", tokenFile)
	if code == 0 || requests.Load() != 0 {
		t.Fatalf("token file readable by others: exit %d, %d requests (%s); want a refusal before any request", code, requests.Load(), errOut)
	}
	if err := os.Chmod(tokenFile, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"sync", "intercom", "--once", "--intercom-api-base", api.URL, "--token-file", tokenFile},
		{"sync", "intercom", "check", "--intercom-api-base", api.URL, "--token-file", tokenFile},
	} {
		code, out, errOut := runHerd(t, dir, env, args...)
		if code != 0 {
			t.Fatalf("herd %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	if requests.Load() == 0 || badAuth.Load() != 0 {
		t.Errorf("%d requests, %d without the token or the pinned version", requests.Load(), badAuth.Load())
	}
	code, _, errOut = runHerd(t, dir, append(env, "INTERCOM_ACCESS_TOKEN=wrong"), "sync", "intercom", "--once", "--intercom-api-base", api.URL)
	if code == 0 || !strings.Contains(errOut, "unauthorized: Access Token Invalid") {
		t.Errorf("wrong token: exit %d, %s; want Intercom's error named", code, errOut)
	}
}

// herd sync intercom --help does not promise every part: the API gives at
// most 500 of a conversation's parts, and the help says so.
func TestSyncIntercomHelpStatesThePartsCap(t *testing.T) {
	t.Parallel()
	_, out, errOut := runHerd(t, t.TempDir(), bareEnv(), "sync", "intercom", "--help")
	help := strings.Join(strings.Fields(out+errOut), " ")
	if strings.Contains(help, "every part") || !strings.Contains(help, "at most 500 a conversation") {
		t.Errorf("herd sync intercom --help on conversation parts:\n%s", out+errOut)
	}
}

// herd sync intercom check names the repair, and it works: a contact the
// warehouse holds but Intercom does not is reported, queued, and gone
// (marked deleted) after the pass the message names.
func TestSyncIntercomCheckNamesTheRepair(t *testing.T) {
	t.Parallel()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(r.URL.Path, "/contacts/") && r.Method == "GET" {
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"type":"error.list","errors":[{"code":"not_found","message":"User Not Found"}]}`))
			return
		}
		_, _ = w.Write([]byte(`{"type":"list","data":[],"admins":[],"teams":[],"segments":[],"conversations":[],"total_count":0,"pages":{"type":"pages"}}`))
	}))
	defer api.Close()
	dir := t.TempDir()
	dbURL := pgtest.New(t)
	env := append(bareEnv(), "HERD_DATABASE_URL="+dbURL, "INTERCOM_ACCESS_TOKEN=tok")
	if code, out, errOut := runHerd(t, dir, env, "sync", "intercom", "--once", "--intercom-api-base", api.URL); code != 0 {
		t.Fatalf("first pass: exit %d\n%s%s", code, out, errOut)
	}
	db := pgtest.Pool(t, dbURL)
	if _, err := db.Exec(t.Context(), `INSERT INTO intercom.contacts (id, data, deleted, updated_at, synced_at) VALUES ('ghost', '{"id":"ghost"}', false, now(), now())`); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runHerd(t, dir, env, "sync", "intercom", "check", "--intercom-api-base", api.URL)
	if code == 0 || !strings.Contains(out, "ghost") || !strings.Contains(errOut, "intercom.refetch") || !strings.Contains(errOut, "herd sync intercom --once") {
		t.Fatalf("check with an extra contact: exit %d\n%s%s\nwant a failure naming the id and the repair", code, out, errOut)
	}
	if code, out, errOut := runHerd(t, dir, env, "sync", "intercom", "--once", "--intercom-api-base", api.URL); code != 0 {
		t.Fatalf("repair pass: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runHerd(t, dir, env, "sync", "intercom", "check", "--intercom-api-base", api.URL); code != 0 {
		t.Errorf("check after the repair pass: exit %d\n%s%s", code, out, errOut)
	}
}
