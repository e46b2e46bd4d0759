package salesforce

import (
	"context"
	"fmt"
	"time"

	"github.com/herdhq/herd/saas"
	"github.com/jackc/pgx/v5"
)

// Check implements saas.Connector. Per object it compares SOQL COUNT() with
// the rows not marked deleted, and the Id and SystemModstamp of a sample of
// records (the most recently changed, where differences gather; all of
// them when there are no more than CheckSample) with the stored rows, by a
// checksum first and id by id when the checksums differ. A field whose type
// changed, or a field not yet a column, is reported as a problem. Check
// changes nothing. On a live org, records changed in the last moments show
// as changed until the next pass.
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
	var ids []string
	var stamps []time.Time
	soql := fmt.Sprintf("SELECT Id, SystemModstamp FROM %s ORDER BY SystemModstamp DESC, Id DESC LIMIT %d", object, s.cfg.CheckSample)
	err = s.api.query(ctx, soql, false, s.cfg.BatchSize, func(p *queryPage) error {
		for _, raw := range p.Records {
			r, err := fromREST(raw)
			if err != nil {
				return err
			}
			ids, stamps = append(ids, r.id), append(stamps, r.modstamp)
		}
		return nil
	})
	if err != nil {
		return d, err
	}
	complete := int64(len(ids)) >= n
	// The checksum: md5 over the sample's "id:modstamp" lines in id order,
	// once from Salesforce's answer and once from the stored rows.
	var src, wh string
	err = s.db.QueryRow(ctx, `SELECT
			coalesce(md5(string_agg(s.id || ':' || s.ms::text, ',' ORDER BY s.id)), ''),
			coalesce(md5(string_agg(t.id || ':' || t.system_modstamp::text, ',' ORDER BY s.id) FILTER (WHERE NOT t.is_deleted)), '')
		FROM unnest($1::text[], $2::timestamptz[]) AS s(id, ms) LEFT JOIN `+o.qualified()+` t ON t.id = s.id`, ids, stamps).Scan(&src, &wh)
	if err != nil {
		return d, fmt.Errorf("checksum %s: %w", o.qualified(), err)
	}
	if src != wh {
		rows, err := s.db.Query(ctx, `SELECT s.id, t.id IS NULL OR t.is_deleted
			FROM unnest($1::text[], $2::timestamptz[]) AS s(id, ms) LEFT JOIN `+o.qualified()+` t ON t.id = s.id
			WHERE t.id IS NULL OR t.is_deleted OR t.system_modstamp IS DISTINCT FROM s.ms ORDER BY s.id`, ids, stamps)
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
