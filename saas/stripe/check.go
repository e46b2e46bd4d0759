package stripe

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"

	"github.com/herdhq/herd/saas"
	"github.com/jackc/pgx/v5"
)

// Check implements saas.Connector: for each object it lists everything
// Stripe holds and compares it with the table, in Postgres, through a
// temporary table, so that memory stays flat however large the account.
// On a live account an object changed in the last moments shows up as
// Changed until the next pass applies its event.
func (s *Syncer) Check(ctx context.Context) ([]saas.Diff, error) {
	var diffs []saas.Diff
	for i := range objects {
		d, err := s.checkObject(ctx, &objects[i])
		if err != nil {
			return diffs, err
		}
		diffs = append(diffs, d)
	}
	return diffs, nil
}

func (s *Syncer) checkObject(ctx context.Context, obj *object) (saas.Diff, error) {
	d := saas.Diff{Object: obj.Table}
	table := pgx.Identifier{"stripe", obj.Table}.Sanitize()
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE stripe_check (id text NOT NULL, data jsonb NOT NULL) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("create temporary table: %w", err)
		}
		next, stop := iter.Pull2(obj.list(ctx, s.api, s.listParams(), 0))
		defer stop()
		var listErr error
		src := pgx.CopyFromFunc(func() ([]any, error) {
			data, err, ok := next()
			if !ok {
				return nil, nil
			}
			if err != nil {
				listErr = err
				return nil, err
			}
			var o struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(data, &o); err != nil {
				return nil, fmt.Errorf("parse %s object: %w", obj.Kind, err)
			}
			return []any{o.ID, []byte(data)}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"stripe_check"}, []string{"id", "data"}, src); err != nil {
			if listErr != nil {
				return fmt.Errorf("list from Stripe: %w", listErr)
			}
			return fmt.Errorf("copy the listing into a temporary table: %w", err)
		}
		err := tx.QueryRow(ctx, `SELECT
			(SELECT count(DISTINCT id) FROM stripe_check),
			(SELECT count(*) FROM `+table+` WHERE NOT deleted),
			array(SELECT DISTINCT c.id FROM stripe_check c LEFT JOIN `+table+` t ON t.id = c.id AND NOT t.deleted
				WHERE t.id IS NULL ORDER BY 1),
			array(SELECT t.id FROM `+table+` t LEFT JOIN stripe_check c ON c.id = t.id
				WHERE NOT t.deleted AND c.id IS NULL ORDER BY 1),
			array(SELECT DISTINCT c.id FROM stripe_check c JOIN `+table+` t ON t.id = c.id
				WHERE NOT t.deleted AND t.data <> c.data ORDER BY 1)`).
			Scan(&d.Source, &d.Warehouse, &d.Missing, &d.Extra, &d.Changed)
		if err != nil {
			return fmt.Errorf("compare: %w", err)
		}
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("check stripe.%s: %w", obj.Table, err)
	}
	return d, nil
}
