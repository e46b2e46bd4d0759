package main

import (
	"strings"
	"testing"

	"github.com/herdhq/herd/internal/pgtest"
)

// Settings that are not usable are refused with a usage error (exit 2)
// saying which, not replaced by a default.
func TestSyncSalesforceRefusesBadSettings(t *testing.T) {
	env := append(bareEnv(), "SALESFORCE_CLIENT_ID=id", "SALESFORCE_CLIENT_SECRET=secret", "SALESFORCE_REFRESH_TOKEN=refresh")
	db := pgtest.New(t)
	dir := t.TempDir()
	for _, c := range []struct{ flag, value string }{
		{"--salesforce-api-share", "5"},
		{"--salesforce-api-share", "0"},
		{"--salesforce-api-version", "NaN"},
		{"--salesforce-login-url", "http://login.salesforce.com"},
	} {
		code, out, errOut := runHerd(t, dir, env, "sync", "salesforce", "--once", "--database-url", db, c.flag, c.value)
		if code != 2 || !strings.Contains(errOut, c.value) {
			t.Errorf("%s %s: exit %d, want 2 naming the value\n%s%s", c.flag, c.value, code, out, errOut)
		}
	}
}
