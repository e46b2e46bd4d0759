package main

import (
	"flag"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/saas/salesforce"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// salesforceFlags configure the Salesforce connector. Credentials come from
// the environment only (and the JWT key from a 0600 file).
type salesforceFlags struct {
	instanceURL   string
	loginURL      string
	jwtAudience   string
	allowedHosts  string
	apiVersion    string
	objects       string
	apiShare      float64
	bulkThreshold int64
	lookback      time.Duration
	rate          float64
	jwtKeyFile    string
	interval      time.Duration
}

func (f *salesforceFlags) bind(fs *flag.FlagSet, up bool) {
	if up {
		fs.DurationVar(&f.interval, "salesforce-interval", time.Minute, "time between Salesforce sync passes (when $SALESFORCE_CLIENT_ID and a secret are set, herd up keeps salesforce.* fresh)")
	}
	fs.StringVar(&f.instanceURL, "salesforce-instance-url", "", "the org's API host, e.g. https://MyDomain.my.salesforce.com (default: the instance_url the token endpoint names)")
	fs.StringVar(&f.loginURL, "salesforce-login-url", salesforce.DefaultLoginURL, "where tokens come from: https://login.salesforce.com, https://test.salesforce.com (sandbox) or the org's My Domain (https only)")
	fs.StringVar(&f.jwtAudience, "salesforce-jwt-audience", "", "the JWT bearer flow's aud: https://login.salesforce.com, https://test.salesforce.com or a community URL, never a My Domain (default: test.salesforce.com for a sandbox login URL, else login.salesforce.com)")
	fs.StringVar(&f.allowedHosts, "salesforce-allowed-hosts", "", "comma-separated further hosts the token endpoint's instance_url may name (default: only *.salesforce.com and *.force.com over https)")
	fs.StringVar(&f.apiVersion, "salesforce-api-version", salesforce.DefaultAPIVersion, "Salesforce API version")
	fs.StringVar(&f.objects, "salesforce-objects", strings.Join(salesforce.DefaultObjects, ","), "comma-separated object API names to sync, custom ones (Invoice__c) included")
	if !up {
		fs.StringVar(&f.objects, "objects", strings.Join(salesforce.DefaultObjects, ","), "same as --salesforce-objects")
	}
	fs.Float64Var(&f.apiShare, "salesforce-api-share", 0.5, "share of the org's daily API requests herd may bring its use to; a pass stops before that")
	fs.Int64Var(&f.bulkThreshold, "salesforce-bulk-threshold", 50000, "objects with at least this many records are backfilled with Bulk API 2.0 (negative: never)")
	fs.DurationVar(&f.lookback, "salesforce-lookback", 5*time.Minute, "each pass re-reads changes this far before the last one's end")
	fs.Float64Var(&f.rate, "salesforce-rate", 10, "Salesforce API requests per second at most")
	fs.StringVar(&f.jwtKeyFile, "salesforce-jwt-key-file", "", "private key (mode 0600) for the JWT bearer flow (also $SALESFORCE_JWT_KEY_FILE)")
}

func (f *salesforceFlags) credentials() salesforce.Credentials {
	key := f.jwtKeyFile
	if key == "" {
		key = os.Getenv("SALESFORCE_JWT_KEY_FILE")
	}
	return salesforce.Credentials{
		ClientID:     os.Getenv("SALESFORCE_CLIENT_ID"),
		ClientSecret: os.Getenv("SALESFORCE_CLIENT_SECRET"),
		RefreshToken: os.Getenv("SALESFORCE_REFRESH_TOKEN"),
		Username:     os.Getenv("SALESFORCE_USERNAME"),
		JWTKeyFile:   key,
	}
}

func (f *salesforceFlags) missing() string { return f.credentials().Missing() }

func (f *salesforceFlags) every() time.Duration { return f.interval }

func (f *salesforceFlags) open(db *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) (saas.Connector, error) {
	if !(f.apiShare > 0 && f.apiShare <= 1) {
		return nil, usagef("--salesforce-api-share %v: want a fraction above 0 and at most 1, such as 0.5", f.apiShare)
	}
	var hosts []string
	for _, h := range strings.Split(f.allowedHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	var objects []string
	for _, o := range strings.Split(f.objects, ",") {
		if o = strings.TrimSpace(o); o != "" {
			objects = append(objects, o)
		}
	}
	s, err := salesforce.New(salesforce.Config{
		Credentials:   f.credentials(),
		LoginURL:      f.loginURL,
		JWTAudience:   f.jwtAudience,
		AllowedHosts:  hosts,
		InstanceURL:   f.instanceURL,
		APIVersion:    f.apiVersion,
		Objects:       objects,
		APIShare:      f.apiShare,
		BulkThreshold: f.bulkThreshold,
		Lookback:      f.lookback,
		Limits:        saas.Limits{RequestsPerSecond: f.rate},
	}, db, log, reg)
	if err != nil {
		// New refuses only settings: a usage error.
		return nil, usagef("%v", err)
	}
	return s, nil
}

func init() {
	registerConnector(&connector{
		name:  "salesforce",
		title: "Salesforce",
		syncHelp: `Signs in with a connected app: $SALESFORCE_CLIENT_ID with
$SALESFORCE_CLIENT_SECRET and $SALESFORCE_REFRESH_TOKEN (refresh-token flow),
or with $SALESFORCE_USERNAME and $SALESFORCE_JWT_KEY_FILE (JWT bearer flow).

Each object's table under the salesforce schema follows its describe metadata:
one typed column per field (compound addresses as their components), the
record as data, is_deleted, system_modstamp, synced_at. The first run backfills
each object (Bulk API 2.0 above --salesforce-bulk-threshold records, else the
REST query API), logging progress and resuming where an interrupted run
stopped. Later passes read what changed since the last one by SystemModstamp
(with --salesforce-lookback), follow deletions (queryAll and getDeleted), add a
column for each new field, and report a changed field type with the statement
that resolves it. A pass stops before the org's daily API use passes
--salesforce-api-share. Without --once, a pass runs every --interval until
interrupted.`,
		checkHelp: `Per object: SOQL COUNT() against the rows not marked deleted, and the most
recently changed records (up to 10000), read with every field, against the
stored rows value by value (SystemModstamp, each typed column, data). Also
lists fields whose type changed, with the fix, and fields not synced.`,
		newFlags: func() connectorFlags { return &salesforceFlags{} },
	})
}
