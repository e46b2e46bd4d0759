package salesforce

import (
	"context"
	"strings"
	"testing"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/schemas"
)

func TestSnakeNames(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"BillingStreet", "billing_street"},
		{"SystemModstamp", "system_modstamp"},
		{"AccountId", "account_id"},
		{"SLAExpirationDate__c", "sla_expiration_date__c"},
		{"My_Field__c", "my_field__c"},
		{"ns__Amount__c", "ns__amount__c"},
		{"Latitude__s", "latitude__s"},
		{"Name", "name"},
		{"MailingAddress2", "mailing_address2"},
		{"OpportunityLineItem", "opportunity_line_item"},
		{"9Lives", "f_9_lives"},
	} {
		if got := snake(c.in); got != c.want {
			t.Errorf("snake(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestHostileAndLongFieldNames: describe metadata is input like any other.
// A field name that is not an API name is never queried nor made a column;
// names longer than Postgres allows are cut with a hash; names that snake
// to the same column, or to a bookkeeping column, get distinct ones.
func TestHostileAndLongFieldNames(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Pool(t, pgtest.New(t))
	if _, err := schemas.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("VeryLongFieldName", 4) + "__c" // 71 bytes as snake
	d := &describe{Name: "Widget__c", Label: "Widget's \"label\"; DROP TABLE x", Queryable: true, Fields: []field{
		{Name: "Id", Type: "id"}, {Name: "SystemModstamp", Type: "datetime"},
		{Name: `Evil"; DROP TABLE salesforce.sync_state; --`, Type: "string"},
		{Name: "Robert'); DROP TABLE Students;--", Type: "string"},
		{Name: long, Label: "Long", Type: "string"},
		{Name: strings.Repeat("VeryLongFieldName", 4) + "X__c", Label: "Long too", Type: "int"},
		{Name: "Foo_Bar__c", Type: "string"}, {Name: "FooBar__c", Type: "double"},
		{Name: "Data", Label: "Data", Type: "string"},
		{Name: "Synced_At", Label: "'; --", Type: "string"},
	}}
	o, err := ensureTable(ctx, db, d, false)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, c := range o.Columns {
		if len(c.Column) > maxIdent {
			t.Errorf("column %q is %d bytes", c.Column, len(c.Column))
		}
		if strings.ContainsAny(c.Column, `"'; -`) {
			t.Errorf("column %q holds characters of the field name", c.Column)
		}
		if prev, dup := seen[c.Column]; dup || reservedColumns[c.Column] {
			t.Errorf("column %q for %s is taken (by %q)", c.Column, c.Field, prev)
		}
		seen[c.Column] = c.Field
	}
	if len(o.Columns) != 6 {
		t.Errorf("columns %+v, want 6 (the two hostile names skipped)", o.Columns)
	}
	for _, f := range o.Fields {
		if !apiName.MatchString(f) {
			t.Errorf("field %q would be put in a query", f)
		}
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM salesforce.sync_state`).Scan(&n); err != nil {
		t.Fatalf("sync_state after hostile names: %v", err)
	}
	// The same describe again keeps the names and adds nothing.
	o2, err := ensureTable(ctx, db, d, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(o2.Added) != 0 || len(o2.Drift) != 0 || len(o2.Columns) != len(o.Columns) {
		t.Errorf("second describe: added %v, drift %v", o2.Added, o2.Drift)
	}
	for i := range o.Columns {
		if o.Columns[i] != o2.Columns[i] {
			t.Errorf("column names moved: %v then %v", o.Columns[i], o2.Columns[i])
		}
	}
	if missing, err := schemas.Uncommented(ctx, db); err != nil || len(missing) > 0 {
		t.Errorf("uncommented: %v %v", missing, err)
	}
}
