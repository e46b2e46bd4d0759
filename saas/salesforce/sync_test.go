package salesforce

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/internal/salesforcefake"
	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/schemas"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// syncBuffer is a log sink safe for concurrent writers.
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

type harness struct {
	t    *testing.T
	db   *pgxpool.Pool
	fake *salesforcefake.Fake
	logs *syncBuffer
	cfg  Config
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	db := pgtest.Pool(t, pgtest.New(t))
	if _, err := schemas.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	fake := salesforcefake.New(t)
	h := &harness{t: t, db: db, fake: fake, logs: &syncBuffer{}}
	h.cfg = Config{
		Credentials:   Credentials{ClientID: fake.ClientID, ClientSecret: fake.ClientSecret, RefreshToken: fake.RefreshToken},
		LoginURL:      fake.URL(),
		Objects:       []string{"Account", "Contact"},
		BatchSize:     500,
		BulkPageSize:  1000,
		BulkPoll:      time.Millisecond,
		BulkThreshold: 3000,
		Limits:        saas.Limits{RequestsPerSecond: 5000, Burst: 100, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("syncer log:\n%s", h.logs.String())
		}
	})
	return h
}

// syncer builds a connector on the harness's database, as a fresh process would.
func (h *harness) syncer(reg prometheus.Registerer) *Syncer {
	h.t.Helper()
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := New(h.cfg, h.db, log, reg)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// seedCRM declares Account, Contact and Lead, and creates records in
// groups sharing one SystemModstamp, as an import leaves them.
func (h *harness) seedCRM(accounts, contacts, leads int) {
	f := h.fake
	f.AddObject("Account", "001", true,
		salesforcefake.Field{Name: "Name", Label: "Account Name", Type: "string"},
		salesforcefake.Field{Name: "Industry", Label: "Industry", Type: "picklist"},
		salesforcefake.Field{Name: "NumberOfEmployees", Label: "Employees", Type: "int"},
		salesforcefake.Field{Name: "AnnualRevenue", Label: "Annual Revenue", Type: "currency"},
		salesforcefake.Field{Name: "BillingAddress", Label: "Billing Address", Type: "address"},
		salesforcefake.Field{Name: "BillingStreet", Label: "Billing Street", Type: "textarea", Compound: "BillingAddress"},
		salesforcefake.Field{Name: "BillingCity", Label: "Billing City", Type: "string", Compound: "BillingAddress"},
		salesforcefake.Field{Name: "BillingLatitude", Label: "Billing Latitude", Type: "double", Compound: "BillingAddress"},
		salesforcefake.Field{Name: "CreatedDate", Label: "Created Date", Type: "datetime"},
	)
	f.AddObject("Contact", "003", true,
		salesforcefake.Field{Name: "AccountId", Label: "Account ID", Type: "reference"},
		salesforcefake.Field{Name: "Email", Label: "Email", Type: "email"},
		salesforcefake.Field{Name: "HasOptedOutOfEmail", Label: "Email Opt Out", Type: "boolean"},
		salesforcefake.Field{Name: "Birthdate", Label: "Birthdate", Type: "date"},
		salesforcefake.Field{Name: "Score__c", Label: "Score", Type: "percent"},
	)
	f.AddObject("Lead", "00Q", true,
		salesforcefake.Field{Name: "Company", Label: "Company", Type: "string"},
		salesforcefake.Field{Name: "Status", Label: "Status", Type: "picklist"},
	)
	base := salesforcefake.Now().Add(-2 * time.Hour)
	stamp := func(i int) time.Time { return base.Add(time.Duration(i/400) * time.Second) } // 400 records a stamp
	var accountIDs []string
	for i := range accounts {
		accountIDs = append(accountIDs, f.Create("Account", stamp(i), map[string]any{
			"Name": fmt.Sprintf("Acme %d", i), "Industry": []string{"Retail", "Energy", "Media"}[i%3],
			"NumberOfEmployees": float64(10 + i), "AnnualRevenue": float64(i) * 1000.5,
			"BillingStreet": fmt.Sprintf("%d Main St\nSuite %d", i, i%7), "BillingCity": "Lyon", "BillingLatitude": 45.75,
			"CreatedDate": base.Add(-time.Duration(i) * time.Hour),
		}))
	}
	for i := range contacts {
		var acct any
		if len(accountIDs) > 0 {
			acct = accountIDs[i%len(accountIDs)]
		}
		f.Create("Contact", stamp(i), map[string]any{
			"AccountId": acct, "Email": fmt.Sprintf("c%d@example.com", i), "HasOptedOutOfEmail": i%5 == 0,
			"Birthdate": "1990-01-02", "Score__c": float64(i%100) / 4,
		})
	}
	for i := range leads {
		f.Create("Lead", stamp(i), map[string]any{"Company": fmt.Sprintf("Lead Co %d", i), "Status": "Open"})
	}
}

// assertMatches compares every table with the fake: the live ids and their
// SystemModstamp.
func (h *harness) assertMatches(objects ...string) {
	h.t.Helper()
	ctx := context.Background()
	for _, obj := range objects {
		want := h.fake.Live(obj)
		rows, err := h.db.Query(ctx, `SELECT id, system_modstamp FROM `+pgx.Identifier{"salesforce", tableName(obj)}.Sanitize()+` WHERE NOT is_deleted`)
		if err != nil {
			h.t.Fatal(err)
		}
		got := map[string]time.Time{}
		var id string
		var ms time.Time
		if _, err := pgx.ForEachRow(rows, []any{&id, &ms}, func() error { got[id] = ms; return nil }); err != nil {
			h.t.Fatal(err)
		}
		if len(got) != len(want) {
			h.t.Errorf("%s: warehouse has %d live rows, Salesforce %d", obj, len(got), len(want))
		}
		bad := 0
		for id, w := range want {
			if g, ok := got[id]; !ok || !g.Equal(w) {
				bad++
				if bad <= 3 {
					h.t.Errorf("%s %s: warehouse modstamp %v (present %v), Salesforce %v", obj, id, g, ok, w)
				}
			}
		}
		if bad > 3 {
			h.t.Errorf("%s: %d records differ in all", obj, bad)
		}
	}
}

func (h *harness) requests(substr string) []string { return h.fake.Requests(substr) }

func cleanDiffs(t *testing.T, diffs []saas.Diff) {
	t.Helper()
	for _, d := range diffs {
		if !d.Clean() {
			t.Errorf("check: %s differs: %+v", d.Object, d)
		}
	}
}

// TestBackfillMatchesAndCheckCatchesChange: several thousand records per
// object, Account (over the bulk threshold) through a Bulk API 2.0 query
// job and Contact through /queryAll pages, under 503s and tokens that
// expire; the tables match the fake, typed; check agrees, then catches a
// record changed in Salesforce.
func TestBackfillMatchesAndCheckCatchesChange(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(3500, 2600, 0)
	h.fake.Every503 = 9
	h.fake.TokenLife = 5
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	s := h.syncer(reg)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	h.assertMatches("Account", "Contact")

	if n := len(h.requests("POST /services/data/v59.0/jobs/query")); n != 1 {
		t.Errorf("bulk query jobs created: %d, want 1 (Account)", n)
	}
	if n := len(h.requests("/results?")); n < 4 {
		t.Errorf("bulk result pages fetched: %d, want at least 4 (3500 records, 1000 a page)", n)
	}
	if n := len(h.requests("GET /services/data/v59.0/query/01g")); n < 5 {
		t.Errorf("nextRecordsUrl pages followed: %d, want at least 5 (2600 contacts, 500 a page)", n)
	}
	if got := testutil.ToFloat64(s.m.tokens); got < 3 {
		t.Errorf("token renewals: %v, want several (tokens expire every 5 requests)", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	lag := -1.0
	for _, mf := range mfs {
		if mf.GetName() == "herd_saas_lag_seconds" {
			lag = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if lag < 0 || lag > 60 {
		t.Errorf("herd_saas_lag_seconds after the backfill: %v, want a few seconds", lag)
	}
	if got := testutil.ToFloat64(s.m.retries); got < 1 {
		t.Errorf("retries after 503: %v, want some", got)
	}

	// Typed columns, compound address flattened, compound itself skipped.
	var name, industry, street, city string
	var employees int64
	var revenue, lat float64
	var created time.Time
	err = h.db.QueryRow(ctx, `SELECT name, industry, number_of_employees, annual_revenue::float8, billing_street, billing_city, billing_latitude::float8, created_date
		FROM salesforce.account WHERE name = 'Acme 7'`).Scan(&name, &industry, &employees, &revenue, &street, &city, &lat, &created)
	if err != nil {
		t.Fatal(err)
	}
	if industry != "Energy" || employees != 17 || revenue != 7003.5 || street != "7 Main St\nSuite 0" || city != "Lyon" || lat != 45.75 || created.IsZero() {
		t.Errorf("account 7 typed columns: %q %d %v %q %q %v %v", industry, employees, revenue, street, city, lat, created)
	}
	var hasCompound bool
	if err := h.db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'salesforce' AND table_name = 'account' AND column_name = 'billing_address')`).Scan(&hasCompound); err != nil || hasCompound {
		t.Errorf("compound billing_address column exists: %v %v", hasCompound, err)
	}
	var opted int
	var birth time.Time
	if err := h.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE has_opted_out_of_email), min(birthdate) FROM salesforce.contact`).Scan(&opted, &birth); err != nil || opted != 520 || birth.Format("2006-01-02") != "1990-01-02" {
		t.Errorf("contact booleans and dates: %d opted out (want 520), birthdate %v, %v", opted, birth, err)
	}
	var types map[string]string = map[string]string{}
	rows, _ := h.db.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'salesforce' AND table_name IN ('account', 'contact')`)
	var c, dt string
	if _, err := pgx.ForEachRow(rows, []any{&c, &dt}, func() error { types[c] = dt; return nil }); err != nil {
		t.Fatal(err)
	}
	for col, want := range map[string]string{"number_of_employees": "bigint", "annual_revenue": "numeric", "created_date": "timestamp with time zone",
		"has_opted_out_of_email": "boolean", "birthdate": "date", "score__c": "numeric", "account_id": "text", "industry": "text", "data": "jsonb"} {
		if types[col] != want {
			t.Errorf("column %s is %q, want %s", col, types[col], want)
		}
	}
	if missing, err := schemas.Uncommented(ctx, h.db); err != nil || len(missing) > 0 {
		t.Errorf("uncommented: %v %v", missing, err)
	}

	diffs, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 2 || diffs[0].Source != 3500 || diffs[1].Source != 2600 {
		t.Errorf("check: %+v", diffs)
	}
	cleanDiffs(t, diffs)

	var changed string
	for id := range h.fake.Live("Contact") {
		changed = id
		break
	}
	h.fake.Update("Contact", changed, map[string]any{"Email": "new@example.com"})
	diffs, err = s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffs[1]; len(d.Changed) != 1 || d.Changed[0] != changed || d.Clean() {
		t.Errorf("check after a change in Salesforce: %+v, want %s changed", d, changed)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	diffs, err = s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cleanDiffs(t, diffs)
}

// TestNextPassAddsFieldRenewsTokenMarksDeletes: after the backfill, a new
// field appears in describe, every token expires, records are deleted
// (one to the recycle bin, one purged) and one is updated during the pass:
// the next pass adds the typed column and fills it, renews the token
// without failing, and marks both deleted.
func TestNextPassAddsFieldRenewsTokenMarksDeletes(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(700, 900, 0)
	ctx := context.Background()
	s := h.syncer(prometheus.NewRegistry())
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	h.fake.AddField("Account", salesforcefake.Field{Name: "Tier__c", Label: "Tier", Type: "picklist"})
	h.fake.AddField("Account", salesforcefake.Field{Name: "Renewal_Date__c", Label: "Renewal", Type: "date"})
	h.fake.SetQuietly("Account", func(r map[string]any) { r["Tier__c"], r["Renewal_Date__c"] = "Gold", "2027-03-01" })
	contacts := h.fake.Live("Contact")
	var ids []string
	for id := range contacts {
		ids = append(ids, id)
	}
	binned, purged, edited := ids[0], ids[1], ids[2]
	h.fake.SoftDelete("Contact", binned)
	h.fake.Purge("Contact", purged)
	h.fake.ExpireTokens()
	renewals := testutil.ToFloat64(s.m.tokens)
	done := false
	h.fake.Hook = func(r *http.Request) {
		// A change while the pass reads: the next pass brings it.
		if !done && strings.Contains(r.URL.RawQuery, "FROM+Contact") {
			done = true
			h.fake.Update("Contact", edited, map[string]any{"Email": "during@example.com"})
		}
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("pass with expired tokens: %v", err)
	}
	if got := testutil.ToFloat64(s.m.tokens); got != renewals+1 {
		t.Errorf("token renewals in the pass: %v, want 1", got-renewals)
	}
	var typ string
	var golds, renewals2027 int
	if err := h.db.QueryRow(ctx, `SELECT data_type FROM information_schema.columns WHERE table_schema = 'salesforce' AND table_name = 'account' AND column_name = 'renewal_date__c'`).Scan(&typ); err != nil || typ != "date" {
		t.Fatalf("renewal_date__c column: %q %v", typ, err)
	}
	if err := h.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE tier__c = 'Gold'), count(*) FILTER (WHERE renewal_date__c = '2027-03-01') FROM salesforce.account`).Scan(&golds, &renewals2027); err != nil || golds != 700 || renewals2027 != 700 {
		t.Errorf("new columns filled on %d and %d of 700 accounts (%v)", golds, renewals2027, err)
	}
	for _, id := range []string{binned, purged} {
		var del bool
		if err := h.db.QueryRow(ctx, `SELECT is_deleted FROM salesforce.contact WHERE id = $1`, id).Scan(&del); err != nil || !del {
			t.Errorf("contact %s deleted in Salesforce: is_deleted %v (%v)", id, del, err)
		}
	}
	h.fake.Hook = nil
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var email string
	if err := h.db.QueryRow(ctx, `SELECT email FROM salesforce.contact WHERE id = $1`, edited).Scan(&email); err != nil || email != "during@example.com" {
		t.Errorf("contact changed during a pass: %q %v", email, err)
	}
	h.assertMatches("Account", "Contact")
	diffs, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cleanDiffs(t, diffs)
}
