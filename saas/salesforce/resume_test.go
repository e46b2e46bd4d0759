package salesforce

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/salesforcefake"
	"github.com/prometheus/client_golang/prometheus"
)

func (h *harness) served(object string) int { return h.fake.Served(object) }

// TestKilledMidBackfillResumes: a run killed in the middle of Account's
// bulk results, then one killed in the middle of Lead's REST pages; each
// restart, a new connector on the same warehouse, fetches neither the
// finished objects nor the pages already written again, and the end state
// equals Salesforce's.
func TestKilledMidBackfillResumes(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(3500, 2600, 1500)
	h.cfg.Objects = []string{"Contact", "Account", "Lead"}

	// Run 1: killed when the second page of Account's bulk results is asked for.
	ctx, cancel := context.WithCancel(context.Background())
	h.fake.Hook = func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/results") && r.URL.Query().Get("locator") != "" {
			cancel()
		}
	}
	if err := h.syncer(nil).Sync(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("run 1: %v, want canceled", err)
	}
	if got := h.served("Contact"); got != 2600 {
		t.Fatalf("run 1 served %d contacts, want 2600 before the kill", got)
	}
	jobs := h.requests("POST /services/data/v59.0/jobs/query")
	if len(jobs) != 1 {
		t.Fatalf("run 1 created %d bulk jobs", len(jobs))
	}
	// Salesforce changes between the runs.
	var changed string
	for id := range h.fake.Live("Account") {
		changed = id
		break
	}
	h.fake.Update("Account", changed, map[string]any{"Name": "Changed between runs"})

	// Run 2: takes up the same job at the locator of the page not written,
	// passes over Contact incrementally, and is killed on Lead's second page.
	h.fake.ResetCounts()
	ctx, cancel = context.WithCancel(context.Background())
	leadQueried := false
	h.fake.Hook = func(r *http.Request) {
		if strings.Contains(r.URL.RawQuery, "FROM+Lead") {
			leadQueried = true
		} else if leadQueried && strings.Contains(r.URL.Path, "/query/01g") {
			cancel()
		}
	}
	if err := h.syncer(nil).Sync(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("run 2: %v, want canceled", err)
	}
	if n := len(h.requests("POST /services/data/v59.0/jobs/query")); n != 0 {
		t.Errorf("run 2 created %d bulk jobs, want to resume the first", n)
	}
	results := h.requests("/results?")
	wantLocator := base64.StdEncoding.EncodeToString([]byte("1000"))
	if len(results) == 0 || !strings.Contains(results[0], "locator="+urlQueryEscape(wantLocator)) {
		t.Errorf("run 2's first bulk results request: %v, want locator %s (page 2)", results, wantLocator)
	}
	if got := h.served("Account"); got != 2500 {
		t.Errorf("run 2 fetched %d Account records, want the 2500 not yet written", got)
	}
	if got := h.served("Contact"); got != 0 {
		t.Errorf("run 2 fetched %d contacts again, want 0 (finished; nothing changed)", got)
	}
	if got := h.served("Lead"); got != 1000 {
		// Page 1 written; page 2 served as the kill came, never written.
		t.Errorf("run 2 fetched %d leads before the kill, want 1000", got)
	}

	// Run 3: Lead resumes after its last written record.
	h.fake.ResetCounts()
	h.fake.Hook = nil
	s := h.syncer(nil)
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := h.served("Lead"); got != 1000 {
		t.Errorf("run 3 fetched %d leads, want the 1000 not yet written", got)
	}
	if got := h.served("Contact"); got != 0 {
		t.Errorf("run 3 fetched %d contacts again", got)
	}
	if got := h.served("Account"); got != 1 {
		t.Errorf("run 3 fetched %d accounts, want the 1 changed between runs", got)
	}
	h.assertMatches("Contact", "Account", "Lead")
	var name string
	if err := h.db.QueryRow(context.Background(), `SELECT name FROM salesforce.account WHERE id = $1`, changed).Scan(&name); err != nil || name != "Changed between runs" {
		t.Errorf("account changed between runs: %q %v", name, err)
	}
	diffs, err := s.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cleanDiffs(t, diffs)
}

func urlQueryEscape(s string) string {
	return strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(s)
}

// TestChangedTypeReportedWithFix: a field whose type changes in Salesforce
// does not fail the pass; the change is reported in sync_state and by
// check with the statement that resolves it, and running that statement
// resolves it.
func TestChangedTypeReportedWithFix(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(50, 0, 0)
	h.cfg.Objects = []string{"Account"}
	ctx := context.Background()
	s := h.syncer(nil)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	h.fake.SetFieldType("Account", "NumberOfEmployees", "string")
	var id string
	for id = range h.fake.Live("Account") {
		break
	}
	h.fake.Update("Account", id, map[string]any{"NumberOfEmployees": "about fifty"})
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("a changed type failed the pass: %v", err)
	}
	var lastErr *string
	if err := h.db.QueryRow(ctx, `SELECT last_error FROM salesforce.sync_state WHERE object = 'Account'`).Scan(&lastErr); err != nil || lastErr == nil {
		t.Fatalf("sync_state.last_error: %v %v", lastErr, err)
	}
	_, fix, ok := strings.Cut(*lastErr, "until you run: ")
	if !ok || !strings.HasPrefix(fix, "ALTER TABLE") {
		t.Fatalf("last_error names no statement: %s", *lastErr)
	}
	diffs, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 1 || len(diffs[0].Problems) != 1 || !strings.Contains(diffs[0].Problems[0], fix) || diffs[0].Clean() {
		t.Errorf("check: %+v, want the changed type with %s", diffs, fix)
	}
	if _, err := h.db.Exec(ctx, fix); err != nil {
		t.Fatalf("the statement given does not run: %v", err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := h.db.QueryRow(ctx, `SELECT number_of_employees FROM salesforce.account WHERE id = $1`, id).Scan(&v); err != nil || v != "about fifty" {
		t.Errorf("after the fix: %q %v", v, err)
	}
	if err := h.db.QueryRow(ctx, `SELECT last_error FROM salesforce.sync_state WHERE object = 'Account'`).Scan(&lastErr); err != nil || lastErr != nil {
		t.Errorf("last_error after the fix: %v %v", lastErr, err)
	}
	diffs, err = s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cleanDiffs(t, diffs)
}

// TestStopsAtAPIShare: with the org near herd's share of its daily API
// requests, the pass stops before passing it, and says so.
func TestStopsAtAPIShare(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(3500, 2600, 0)
	h.fake.APIMax, h.fake.APIUsed = 1000, 490
	h.cfg.APIShare = 0.5
	err := h.syncer(nil).Sync(context.Background())
	if !errors.Is(err, ErrAPIShare) {
		t.Fatalf("pass: %v, want it stopped at the API share", err)
	}
	if h.fake.APIUsed > 500 {
		t.Errorf("the org used %d of 1000 requests, herd's share stops at 500", h.fake.APIUsed)
	}
	var lastErr string
	if err := h.db.QueryRow(context.Background(), `SELECT last_error FROM salesforce.sync_state WHERE last_error IS NOT NULL`).Scan(&lastErr); err != nil || !strings.Contains(lastErr, "--salesforce-api-share") {
		t.Errorf("sync_state.last_error: %q %v", lastErr, err)
	}
	if !strings.Contains(h.logs.String(), "stopping the Salesforce pass") {
		t.Error("the log does not say the pass stopped")
	}
}

// TestJWTBearerFlow signs in with a key file, and refuses one others can read.
func TestJWTBearerFlow(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(0, 0, 20)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	h.fake.JWTKey = &key.PublicKey
	path := filepath.Join(t.TempDir(), "salesforce.key")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	h.cfg.Objects = []string{"Lead"}
	h.cfg.Credentials = Credentials{ClientID: h.fake.ClientID, Username: h.fake.Username, JWTKeyFile: path}
	if err := h.syncer(prometheus.NewRegistry()).Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.assertMatches("Lead")

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	h.fake.ExpireTokens()
	err = h.syncer(nil).Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("key readable by others: %v, want a refusal saying chmod 600", err)
	}
	for _, secret := range []string{string(pemBytes[40:80]), "00Dfake!token"} {
		if strings.Contains(h.logs.String(), secret) {
			t.Errorf("the log holds a secret: %q", secret)
		}
	}
}

// TestTokenRenewedBeforeExpiry: a token older than the session timeout is
// renewed before use, without a request refused first.
func TestTokenRenewedBeforeExpiry(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(0, 0, 5)
	h.cfg.Objects = []string{"Lead"}
	h.cfg.SessionTTL = time.Hour
	s := h.syncer(nil)
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	grants := h.fake.Grants
	s.now = func() time.Time { return time.Now().Add(61 * time.Minute) }
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.fake.Grants != grants+1 || h.fake.Refused != 0 {
		t.Errorf("after the session timeout: %d new tokens, %d requests refused; want 1 and 0", h.fake.Grants-grants, h.fake.Refused)
	}
}

// TestFailedBulkJobReplaced: a bulk query job that fails fails the pass,
// and the next pass runs a new job instead of waiting on the failed one.
func TestFailedBulkJobReplaced(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(3200, 0, 0)
	h.cfg.Objects = []string{"Account"}
	h.fake.FailJobs = 1
	s := h.syncer(nil)
	if err := s.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "Failed") {
		t.Fatalf("pass with a failed job: %v", err)
	}
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(h.requests("POST /services/data/v59.0/jobs/query")); n != 2 {
		t.Errorf("bulk jobs created: %d, want 2", n)
	}
	h.assertMatches("Account")
}

// TestWideObjectQueriedThroughComposite: an object with hundreds of fields
// makes a query longer than a URI may be; it goes through the Composite API.
func TestWideObjectQueriedThroughComposite(t *testing.T) {
	h := newHarness(t)
	var fields []salesforcefake.Field
	for i := range 400 {
		fields = append(fields, salesforcefake.Field{Name: fmt.Sprintf("Custom_Field_Number_%03d_With_A_Long_Name__c", i), Label: "Custom", Type: "double"})
	}
	h.fake.AddObject("Wide__c", "a01", true, fields...)
	for i := range 700 {
		h.fake.Create("Wide__c", salesforcefake.Now().Add(-time.Minute), map[string]any{"Custom_Field_Number_399_With_A_Long_Name__c": float64(i)})
	}
	h.cfg.Objects = []string{"Wide__c"}
	s := h.syncer(nil)
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.assertMatches("Wide__c")
	if n := len(h.requests("POST /services/data/v59.0/composite")); n < 1 {
		t.Errorf("composite requests: %d, want the long queries sent that way", n)
	}
	var sum float64
	if err := h.db.QueryRow(context.Background(), `SELECT sum(custom_field_number_399_with_a_long_name__c)::float8 FROM salesforce.wide__c`).Scan(&sum); err != nil || sum != 699*700/2 {
		t.Errorf("sum of the 400th column: %v %v", sum, err)
	}
	diffs, err := s.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cleanDiffs(t, diffs)
}
