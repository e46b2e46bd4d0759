package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/internal/salesforcefake"
)

// TestSyncSalesforceCommand runs herd sync salesforce --once and check
// against the fake: credentials from the environment (never printed), the
// check's table, and exit status 1 once Salesforce holds a change the
// warehouse lacks.
func TestSyncSalesforceCommand(t *testing.T) {
	fake := salesforcefake.New(t)
	fake.AddObject("Lead", "00Q", true, salesforcefake.Field{Name: "Company", Label: "Company", Type: "string"})
	var ids []string
	for i := range 30 {
		ids = append(ids, fake.Create("Lead", salesforcefake.Now().Add(-time.Hour), map[string]any{"Company": fmt.Sprint("Co ", i)}))
	}
	env := append(bareEnv(), "SALESFORCE_CLIENT_ID="+fake.ClientID, "SALESFORCE_CLIENT_SECRET="+fake.ClientSecret, "SALESFORCE_REFRESH_TOKEN="+fake.RefreshToken)
	flags := []string{"--database-url", pgtest.New(t), "--salesforce-login-url", fake.URL(), "--salesforce-objects", "Lead"}
	dir := t.TempDir()
	herd := func(args ...string) (int, string) {
		code, out, errOut := runHerd(t, dir, env, append(args, flags...)...)
		for _, secret := range []string{fake.ClientSecret, fake.RefreshToken, "00Dfake!token"} {
			if strings.Contains(out+errOut, secret) {
				t.Errorf("herd %v printed a secret", args)
			}
		}
		return code, out + errOut
	}
	if code, out := herd("sync", "salesforce", "--once"); code != 0 {
		t.Fatalf("sync: exit %d\n%s", code, out)
	}
	code, out := herd("sync", "salesforce", "check")
	if code != 0 || !strings.Contains(out, "Lead") || !strings.Contains(out, "30") {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	fake.Update("Lead", ids[3], map[string]any{"Company": "Renamed"})
	code, out = herd("sync", "salesforce", "check")
	if code != 1 || !strings.Contains(out, "Lead changed: "+ids[3]) {
		t.Errorf("check after a change: exit %d, want 1 naming %s\n%s", code, ids[3], out)
	}
	if code, out, errOut := runHerd(t, dir, bareEnv(), append([]string{"sync", "salesforce", "--once"}, flags...)...); code != 2 || !strings.Contains(errOut, "SALESFORCE_CLIENT_ID") {
		t.Errorf("sync without credentials: exit %d, want 2 saying what to set\n%s%s", code, out, errOut)
	}
}
