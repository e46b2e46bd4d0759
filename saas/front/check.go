package front

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/herdhq/herd/saas"
	"github.com/jackc/pgx/v5"
)

// Check implements saas.Connector: it lists everything Front holds (every
// message and comment of every conversation included) into temporary
// tables, page by page so that memory stays flat, and compares them with
// the warehouse in Postgres. On a live company, a conversation changed in
// the last moments shows up as changed until the next pass applies its
// event.
func (s *Syncer) Check(ctx context.Context) ([]saas.Diff, error) {
	var diffs []saas.Diff
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		for _, t := range Tables() {
			if _, err := tx.Exec(ctx, `CREATE TEMP TABLE `+pgx.Identifier{"check_" + t}.Sanitize()+
				` (id text NOT NULL, data jsonb NOT NULL) ON COMMIT DROP`); err != nil {
				return fmt.Errorf("create temporary table: %w", err)
			}
		}
		copyRows := func(table string, items []json.RawMessage) error {
			rows := make([][]any, 0, len(items))
			for _, it := range items {
				r, err := newRow(it, s.now())
				if err != nil {
					return err
				}
				rows = append(rows, []any{r.id, []byte(it)})
			}
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"check_" + table}, []string{"id", "data"}, pgx.CopyFromRows(rows))
			return err
		}
		for i := range objects {
			obj := &objects[i]
			err := s.api.all(ctx, s.firstPage(obj.Path, nil), func(items []json.RawMessage) error {
				if err := copyRows(obj.Table, items); err != nil {
					return err
				}
				if obj.Table != "conversations" {
					return nil
				}
				for _, it := range items {
					r, _ := newRow(it, s.now())
					for _, child := range []string{"messages", "comments"} {
						u := s.firstPage("/conversations/"+url.PathEscape(r.id)+"/"+child, nil)
						if err := s.api.all(ctx, u, func(c []json.RawMessage) error { return copyRows(child, c) }); err != nil {
							return fmt.Errorf("list the %s of conversation %s: %w", child, r.id, err)
						}
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("check front.%s: list from Front: %w", obj.Table, err)
			}
		}
		for _, t := range Tables() {
			d := saas.Diff{Object: t}
			table := pgx.Identifier{"front", t}.Sanitize()
			c := pgx.Identifier{"check_" + t}.Sanitize()
			err := tx.QueryRow(ctx, `SELECT
				(SELECT count(DISTINCT id) FROM `+c+`),
				(SELECT count(*) FROM `+table+` WHERE NOT deleted),
				array(SELECT DISTINCT c.id FROM `+c+` c LEFT JOIN `+table+` t ON t.id = c.id AND NOT t.deleted
					WHERE t.id IS NULL ORDER BY 1),
				array(SELECT t.id FROM `+table+` t LEFT JOIN `+c+` c ON c.id = t.id
					WHERE NOT t.deleted AND c.id IS NULL ORDER BY 1),
				array(SELECT DISTINCT c.id FROM `+c+` c JOIN `+table+` t ON t.id = c.id
					WHERE NOT t.deleted AND t.data <> c.data ORDER BY 1)`).
				Scan(&d.Source, &d.Warehouse, &d.Missing, &d.Extra, &d.Changed)
			if err != nil {
				return fmt.Errorf("check front.%s: compare: %w", t, err)
			}
			diffs = append(diffs, d)
		}
		return nil
	})
	return diffs, err
}
