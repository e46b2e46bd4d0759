package salesforce

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/herdhq/herd/saas"
	"github.com/jackc/pgx/v5"
)

// Check implements saas.Connector. Per object it compares SOQL COUNT() with
// the rows not marked deleted, and a sample of records (the most recently
// changed, where differences gather; all of them when there are no more
// than CheckSample), read with every field, with the stored rows value by
// value: SystemModstamp, each typed column and data. A field whose type
// changed, a field not yet a column, or one whose name herd refuses is
// reported as a problem. Check changes nothing. On a live org, records
// changed in the last moments show as changed until the next pass.
func (s *Syncer) Check(ctx context.Context) ([]saas.Diff, error) {
	max, remaining, err := s.api.limits(ctx)
	if err != nil {
		return nil, fmt.Errorf("salesforce check: read the org's API limits: %w", err)
	}
	s.budget.set(max, remaining)
	var diffs []saas.Diff
	for _, obj := range s.cfg.Objects {
		d, err := s.checkObject(ctx, obj)
		if err != nil {
			return diffs, fmt.Errorf("check %s: %w", obj, err)
		}
		diffs = append(diffs, d)
	}
	return diffs, nil
}

func (s *Syncer) checkObject(ctx context.Context, object string) (saas.Diff, error) {
	d := saas.Diff{Object: object}
	desc, err := s.api.describe(ctx, object)
	if err != nil {
		return d, err
	}
	desc.Name = object
	o, err := ensureTable(ctx, s.db, desc, true)
	if err != nil {
		return d, err
	}
	d.Problems = append(d.Problems, o.Drift...)
	if len(o.Skipped) > 0 {
		d.Problems = append(d.Problems, fmt.Sprintf("fields not synced, their names are not Salesforce API names herd puts in a query: %.500q", o.Skipped))
	}
	if o.Created {
		d.Problems = append(d.Problems, fmt.Sprintf("no table %s yet: run 'herd sync salesforce --once'", o.qualified()))
	} else {
		for _, c := range o.Added {
			d.Problems = append(d.Problems, fmt.Sprintf("field %s (%s) has no column yet: the next pass adds %s", c.Field, c.SFType, c.Column))
		}
	}
	n, err := s.api.count(ctx, object)
	if err != nil {
		return d, err
	}
	d.Source = int(n)
	if o.Created {
		return d, nil
	}
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM `+o.qualified()+` WHERE NOT is_deleted`).Scan(&d.Warehouse); err != nil {
		return d, fmt.Errorf("count %s: %w", o.qualified(), err)
	}
	// The sample, every field: compared with the stored rows value by
	// value (typed columns, and data but for datetimes, whose text differs
	// between the REST and Bulk APIs and which their columns compare).
	var ids []string
	var recs []json.RawMessage
	soql := selectSOQL(o, nil, false) + fmt.Sprintf(" ORDER BY SystemModstamp DESC, Id DESC LIMIT %d", s.cfg.CheckSample)
	err = s.api.query(ctx, soql, false, s.cfg.BatchSize, func(p *queryPage) error {
		for _, raw := range p.Records {
			r, err := fromREST(raw)
			if err != nil {
				return err
			}
			ids, recs = append(ids, r.id), append(recs, r.data)
		}
		return nil
	})
	if err != nil {
		return d, err
	}
	complete := int64(len(ids)) >= n
	if len(recs) > 0 {
		q, args := compareSQL(o)
		arr, err := json.Marshal(recs)
		if err != nil {
			return d, err
		}
		rows, err := s.db.Query(ctx, q, append([]any{string(arr)}, args...)...)
		if err != nil {
			return d, fmt.Errorf("compare %s: %w", o.qualified(), err)
		}
		var id string
		var missing bool
		if _, err := pgx.ForEachRow(rows, []any{&id, &missing}, func() error {
			if missing {
				d.Missing = append(d.Missing, id)
			} else {
				d.Changed = append(d.Changed, id)
			}
			return nil
		}); err != nil {
			return d, fmt.Errorf("compare %s: %w", o.qualified(), err)
		}
	}
	if complete {
		rows, err := s.db.Query(ctx, `SELECT t.id FROM `+o.qualified()+` t WHERE NOT t.is_deleted AND t.id <> ALL($1::text[]) ORDER BY t.id`, ids)
		if err != nil {
			return d, err
		}
		extra, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return d, fmt.Errorf("extra rows of %s: %w", o.qualified(), err)
		}
		d.Extra = extra
	}
	return d, nil
}

// compareSQL lists the sampled records ($1, a JSON array of Salesforce's
// answer) that are missing from o's table, marked deleted there, or stored
// with another SystemModstamp, typed column value or data.
func compareSQL(o *objectTable) (string, []any) {
	var args []any
	var diff []string
	for _, c := range o.Columns {
		args = append(args, c.Field)
		col := "t." + pgx.Identifier{c.Column}.Sanitize()
		if c.PGType == "jsonb" {
			diff = append(diff, fmt.Sprintf("%s IS DISTINCT FROM (r->$%d)", col, len(args)+1))
		} else {
			diff = append(diff, fmt.Sprintf("%s IS DISTINCT FROM (r->>$%d)::%s", col, len(args)+1, c.PGType))
		}
	}
	var timeFields []string
	for f, typ := range o.Types {
		switch strings.ToLower(typ) {
		case "datetime", "date", "time":
			timeFields = append(timeFields, f)
		}
	}
	sort.Strings(timeFields)
	args = append(args, timeFields)
	diff = append(diff, fmt.Sprintf("(t.data - $%d::text[]) IS DISTINCT FROM (r - $%d::text[])", len(args)+1, len(args)+1))
	return `SELECT r->>'Id', t.id IS NULL OR t.is_deleted
		FROM jsonb_array_elements($1::jsonb) AS r LEFT JOIN ` + o.qualified() + ` t ON t.id = r->>'Id'
		WHERE t.id IS NULL OR t.is_deleted OR t.system_modstamp IS DISTINCT FROM (r->>'SystemModstamp')::timestamptz
			OR ` + strings.Join(diff, "\n\t\t\tOR ") + `
		ORDER BY 1`, args
}
