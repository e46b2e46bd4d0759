package salesforce

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// field is one field of an object's describe metadata, as herd reads it.
type field struct {
	Name              string `json:"name"`
	Label             string `json:"label"`
	Type              string `json:"type"`
	CompoundFieldName string `json:"compoundFieldName"`
}

// describe is the part of /sobjects/OBJ/describe herd reads.
type describe struct {
	Name          string  `json:"name"`
	Label         string  `json:"label"`
	Queryable     bool    `json:"queryable"`
	Replicateable bool    `json:"replicateable"` // getDeleted and getUpdated work
	Fields        []field `json:"fields"`
}

// pgType maps a Salesforce field type to the column type holding it. ok is
// false for the compound types (address, location), whose components are
// fields of their own, and for base64: such fields are skipped. Unknown types are text:
// the value is kept in data anyway.
func pgType(sfType string) (typ string, ok bool) {
	switch strings.ToLower(sfType) {
	case "address", "location":
		return "", false
	case "base64":
		// File bodies: the REST API gives only a link to them, and Bulk
		// API 2.0 refuses queries that name them.
		return "", false
	case "boolean":
		return "boolean", true
	case "int", "long":
		return "bigint", true
	case "double", "currency", "percent":
		return "numeric", true
	case "date":
		return "date", true
	case "datetime":
		return "timestamp with time zone", true
	case "time":
		return "time without time zone", true
	case "json", "complexvalue":
		return "jsonb", true
	default: // id, reference, string, textarea, picklist, multipicklist, email, phone, url, combobox, anyType, encryptedstring
		return "text", true
	}
}

// apiName is what a Salesforce API name looks like (standard, custom __c,
// namespaced ns__Name__c). Names that do not match are never put in a
// query.
var apiName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,79}$`)

// maxIdent is Postgres's identifier length (NAMEDATALEN-1 bytes).
const maxIdent = 63

// snake turns an API name into a lower-case column or table name:
// BillingStreet → billing_street, SLAExpiration__c → sla_expiration__c.
// Characters outside [a-z0-9_] become '_', and a name not starting with a
// letter or '_' gets an 'f_' prefix; the result may still need uniquing.
func snake(name string) string {
	suffix := ""
	for _, s := range []string{"__c", "__r", "__s", "__e", "__x", "__mdt", "__b"} {
		if strings.HasSuffix(name, s) && len(name) > len(s) {
			name, suffix = name[:len(name)-len(s)], s
			break
		}
	}
	rs := []rune(name)
	var b strings.Builder
	for i, r := range rs {
		if unicode.IsUpper(r) && i > 0 {
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				b.WriteByte('_')
			}
		}
		r = unicode.ToLower(r)
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String() + suffix
	if s == "" || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z')) {
		s = "f_" + s
	}
	return s
}

// withHash shortens name to fit an identifier and appends a hash of the
// original API name, so that two long or colliding names stay distinct.
func withHash(name, api string) string {
	h := sha256.Sum256([]byte(api))
	tag := "_" + hex.EncodeToString(h[:4])
	if len(name) > maxIdent-len(tag) {
		name = name[:maxIdent-len(tag)]
	}
	return name + tag
}

// ident is a safe, unique identifier for api, given those taken.
func ident(api string, taken map[string]bool) string {
	s := snake(api)
	if len(s) > maxIdent || taken[s] {
		s = withHash(s, api)
	}
	for i := 0; taken[s]; i++ { // a hash collision: vanishingly rare
		s = withHash(s, fmt.Sprintf("%s#%d", api, i))
	}
	return s
}

// bookkeeping columns every object table has. Id, IsDeleted and
// SystemModstamp are fields of (nearly) every object and land in these.
var bookkeeping = map[string]string{
	"Id":             "id",
	"IsDeleted":      "is_deleted",
	"SystemModstamp": "system_modstamp",
}

// reservedColumns cannot hold a field other than their own.
var reservedColumns = map[string]bool{"id": true, "data": true, "is_deleted": true, "system_modstamp": true, "synced_at": true}

// reservedTables are the connector's own tables in the schema.
var reservedTables = map[string]bool{"sync_state": true, "fields": true}

// tableName is the table of an object: salesforce.<snake name>.
func tableName(object string) string {
	return ident(object, reservedTables)
}

// column is one typed column of an object table.
type column struct {
	Field  string // API name
	Column string
	SFType string
	PGType string // the type the column should have
}

// objectTable is what ensureTable decided for one object.
type objectTable struct {
	Object    string
	Table     string   // unquoted name in schema salesforce
	Fields    []string // fields to SELECT (API names)
	Columns   []column // typed columns to fill (bookkeeping excluded)
	Types     map[string]string
	Added     []column // columns added by this call to an existing table
	Created   bool
	Drift     []string // changed types, each with the SQL that resolves it
	Skipped   []string // field names herd refuses to put in a query (not API names)
	HasDelete bool     // the object has IsDeleted: queryAll shows deleted records
	HasModst  bool     // the object has SystemModstamp
	Replicate bool     // getDeleted works
}

func (o *objectTable) qualified() string { return pgx.Identifier{"salesforce", o.Table}.Sanitize() }

// ddl runs a transaction's statements, or in a dry run only its queries.
type ddl struct {
	pgx.Tx
	dry bool
}

func (d ddl) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if d.dry {
		return pgconn.CommandTag{}, nil
	}
	return d.Tx.Exec(ctx, sql, args...)
}

// ensureTable creates the object's table when missing and adds a column for
// each field that has none yet. A column whose type no longer matches the
// field's is left alone and reported in Drift with the statement that
// converts it; it is not written until then (its value stays in data).
//
// With dry set (herd sync salesforce check) nothing is changed: Added lists
// the fields that have no column yet, Created tells that the table is missing.
func ensureTable(ctx context.Context, db txBeginner, d *describe, dry bool) (*objectTable, error) {
	o := &objectTable{Object: d.Name, Table: tableName(d.Name), Types: map[string]string{}, Replicate: d.Replicateable}
	err := pgx.BeginFunc(ctx, db, func(db pgx.Tx) error {
		tx := ddl{db, dry}
		// One transaction per object, serialised by a lock on its name, so
		// that two processes never add the same column twice.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('herd salesforce ' || $1))`, d.Name); err != nil {
			return err
		}
		known := map[string]string{} // field → column
		taken := map[string]bool{}
		for c := range reservedColumns {
			taken[c] = true
		}
		rows, err := tx.Query(ctx, `SELECT field, column_name FROM salesforce.fields WHERE object = $1`, d.Name)
		if err != nil {
			return err
		}
		for rows.Next() {
			var f, c string
			if err := rows.Scan(&f, &c); err != nil {
				return err
			}
			known[f], taken[c] = c, true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		actual := map[string]string{} // column → format_type
		rows, err = tx.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
			FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = 'salesforce' AND c.relname = $1 AND a.attnum > 0 AND NOT a.attisdropped`, o.Table)
		if err != nil {
			return err
		}
		for rows.Next() {
			var c, t string
			if err := rows.Scan(&c, &t); err != nil {
				return err
			}
			actual[c] = t
		}
		if err := rows.Err(); err != nil {
			return err
		}
		exists := len(actual) > 0
		if !exists {
			o.Created = true
			if _, err := tx.Exec(ctx, `CREATE TABLE `+o.qualified()+` (
				id text PRIMARY KEY,
				data jsonb NOT NULL,
				is_deleted boolean NOT NULL DEFAULT false,
				system_modstamp timestamptz,
				synced_at timestamptz NOT NULL DEFAULT now())`); err != nil {
				return fmt.Errorf("create %s: %w", o.qualified(), err)
			}
			comments := map[string]string{
				"id":              "Salesforce record Id (18 characters).",
				"data":            "The record as the API returned it (compound fields as their components).",
				"is_deleted":      "The record is deleted in Salesforce (in the recycle bin, or purged as getDeleted reported).",
				"system_modstamp": "SystemModstamp: when Salesforce last changed the record; an older state never overwrites a newer one.",
				"synced_at":       "When herd last wrote the row.",
			}
			for c, text := range comments {
				if _, err := tx.Exec(ctx, `COMMENT ON COLUMN `+o.qualified()+`.`+pgx.Identifier{c}.Sanitize()+` IS `+quoteLiteral(text)); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `CREATE INDEX ON `+o.qualified()+` (system_modstamp)`); err != nil {
				return err
			}
		}
		label := d.Label
		if label == "" {
			label = d.Name
		}
		if o.Created {
			if _, err := tx.Exec(ctx, `COMMENT ON TABLE `+o.qualified()+` IS `+quoteLiteral(fmt.Sprintf("Salesforce %s (%s), typed from its describe metadata.", label, d.Name))); err != nil {
				return err
			}
		}
		for _, f := range d.Fields {
			if !apiName.MatchString(f.Name) {
				// Never put in a query: reported in Skipped.
				o.Skipped = append(o.Skipped, f.Name)
				continue
			}
			typ, ok := pgType(f.Type)
			if !ok {
				continue
			}
			if _, ok := bookkeeping[f.Name]; ok { // a column of its own, made with the table
				o.Fields = append(o.Fields, f.Name)
				o.Types[f.Name] = f.Type
				switch f.Name {
				case "IsDeleted":
					o.HasDelete = true
				case "SystemModstamp":
					o.HasModst = true
				}
				continue
			}
			o.Fields = append(o.Fields, f.Name)
			o.Types[f.Name] = f.Type
			col, ok := known[f.Name]
			if !ok {
				col = ident(f.Name, taken)
				taken[col] = true
				if _, err := tx.Exec(ctx, `INSERT INTO salesforce.fields (object, field, column_name, type, label) VALUES ($1, $2, $3, $4, $5)`,
					d.Name, f.Name, col, f.Type, f.Label); err != nil {
					return fmt.Errorf("record field %s.%s: %w", d.Name, f.Name, err)
				}
			}
			c := column{Field: f.Name, Column: col, SFType: f.Type, PGType: typ}
			have, present := actual[col]
			switch {
			case !present:
				if _, err := tx.Exec(ctx, `ALTER TABLE `+o.qualified()+` ADD COLUMN `+pgx.Identifier{col}.Sanitize()+` `+typ); err != nil {
					return fmt.Errorf("add column %s to %s: %w", col, o.qualified(), err)
				}
				if exists || dry {
					o.Added = append(o.Added, c)
				}
				if _, err := tx.Exec(ctx, `COMMENT ON COLUMN `+o.qualified()+`.`+pgx.Identifier{col}.Sanitize()+` IS `+
					quoteLiteral(fmt.Sprintf("%s (%s, Salesforce type %s).", f.Label, f.Name, f.Type))); err != nil {
					return err
				}
			case have != typ:
				o.Drift = append(o.Drift, fmt.Sprintf("%s.%s changed type in Salesforce to %s: column %s is %s, wants %s; its values stay in data until you run: ALTER TABLE %s ALTER COLUMN %s TYPE %s USING (data->>%s)::%s;",
					d.Name, f.Name, f.Type, col, have, typ, o.qualified(), pgx.Identifier{col}.Sanitize(), typ, quoteLiteral(f.Name), typ))
				continue
			}
			o.Columns = append(o.Columns, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("table for Salesforce %s: %w", d.Name, err)
	}
	return o, nil
}

// quoteLiteral quotes s as an SQL string literal (for COMMENT, which takes
// no parameters).
func quoteLiteral(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "?")
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// txBeginner starts transactions: a pool.
type txBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}
