package intercom

import (
	"context"
	"fmt"
	"net/url"

	"github.com/herdhq/herd/saas"
	"github.com/jackc/pgx/v5"
)

// Check implements saas.Connector: for each object it lists everything
// Intercom holds and compares it with the table, in Postgres, through a
// temporary table. For conversation parts it fetches every conversation,
// one request each: the only way to see parts. On a live workspace an
// object changed in the last moments shows as Changed until the next pass.
// The contacts, conversations and tickets that differ (the others are listed whole
// on every pass) are queued in intercom.refetch: the next pass fetches them
// again and replaces their rows, which an incremental pass, fetching only
// what Intercom reports changed, would not.
func (s *Syncer) Check(ctx context.Context) ([]saas.Diff, error) {
	var diffs []saas.Diff
	for i := range objects {
		obj := &objects[i]
		ds, err := s.checkObject(ctx, obj)
		if err != nil && unavailable(obj, err) {
			continue // not offered to this workspace (tickets): nothing to compare
		}
		diffs = append(diffs, ds...)
		if err != nil {
			return diffs, err
		}
	}
	return diffs, nil
}

func (s *Syncer) checkObject(ctx context.Context, obj *object) ([]saas.Diff, error) {
	var diffs []saas.Diff
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE intercom_check (id text NOT NULL, data jsonb NOT NULL) ON COMMIT DROP;
			CREATE TEMP TABLE intercom_check_parts (id text NOT NULL, conversation_id text NOT NULL, data jsonb NOT NULL) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("create temporary tables: %w", err)
		}
		for p, err := range s.pages(ctx, obj, "") {
			if err != nil {
				return fmt.Errorf("list from Intercom: %w", err)
			}
			rows := make([][]any, 0, len(p.items))
			var parts [][]any
			for _, it := range p.items {
				id, _, err := idAndUpdated(it)
				if err != nil {
					return err
				}
				if !obj.Parts {
					rows = append(rows, []any{id, []byte(it)})
					continue
				}
				// A conversation is compared as GET returns it (what herd
				// stores), not as the list summarises it.
				b, err := s.api.do(ctx, "GET", obj.GetPath+url.PathEscape(id), nil, nil)
				if isNotFound(err) {
					continue // deleted since it was listed
				}
				if err != nil {
					return err
				}
				c, err := parseConversation(b)
				if err != nil {
					return err
				}
				rows = append(rows, []any{id, c.data})
				for _, part := range c.parts {
					pid, _, err := idAndUpdated(part)
					if err != nil {
						return err
					}
					parts = append(parts, []any{pid, id, []byte(part)})
				}
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"intercom_check"}, []string{"id", "data"}, pgx.CopyFromRows(rows)); err != nil {
				return fmt.Errorf("copy the listing: %w", err)
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"intercom_check_parts"}, []string{"id", "conversation_id", "data"}, pgx.CopyFromRows(parts)); err != nil {
				return fmt.Errorf("copy the parts: %w", err)
			}
		}
		d, err := compare(ctx, tx, obj.Table, "intercom_check")
		if err != nil {
			return err
		}
		diffs = append(diffs, d)
		queue := append(append(append([]string{}, d.Missing...), d.Extra...), d.Changed...)
		if obj.Parts {
			d, err := compare(ctx, tx, "conversation_parts", "intercom_check_parts")
			if err != nil {
				return err
			}
			diffs = append(diffs, d)
			// A part that differs is mended by fetching its conversation.
			ids := append(append(append([]string{}, d.Missing...), d.Extra...), d.Changed...)
			if len(ids) > 0 {
				rows, _ := tx.Query(ctx, `SELECT conversation_id FROM intercom_check_parts WHERE id = ANY($1)
					UNION SELECT conversation_id FROM intercom.conversation_parts WHERE id = ANY($1)`, ids)
				conv, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					return fmt.Errorf("conversations of differing parts: %w", err)
				}
				queue = append(queue, conv...)
			}
		}
		// Objects listed whole on every pass mend themselves; the others
		// are fetched again by the next pass (repair).
		if obj.SearchPath != "" && len(queue) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO intercom.refetch (object, id) SELECT DISTINCT $1, unnest($2::text[])
				ON CONFLICT (object, id) DO UPDATE SET queued_at = now()`, obj.Table, queue); err != nil {
				return fmt.Errorf("queue differing rows in intercom.refetch: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return diffs, fmt.Errorf("check intercom.%s: %w", obj.Table, err)
	}
	return diffs, nil
}

// compare diffs a temporary table of what Intercom holds with a table.
func compare(ctx context.Context, tx pgx.Tx, name, tmp string) (saas.Diff, error) {
	d := saas.Diff{Object: name}
	t, c := table(name), pgx.Identifier{tmp}.Sanitize()
	err := tx.QueryRow(ctx, `SELECT
		(SELECT count(DISTINCT id) FROM `+c+`),
		(SELECT count(*) FROM `+t+` WHERE NOT deleted),
		array(SELECT DISTINCT c.id FROM `+c+` c LEFT JOIN `+t+` t ON t.id = c.id AND NOT t.deleted
			WHERE t.id IS NULL ORDER BY 1),
		array(SELECT t.id FROM `+t+` t LEFT JOIN `+c+` c ON c.id = t.id
			WHERE NOT t.deleted AND c.id IS NULL ORDER BY 1),
		array(SELECT DISTINCT c.id FROM `+c+` c JOIN `+t+` t ON t.id = c.id
			WHERE NOT t.deleted AND t.data <> c.data ORDER BY 1)`).
		Scan(&d.Source, &d.Warehouse, &d.Missing, &d.Extra, &d.Changed)
	if err != nil {
		return d, fmt.Errorf("compare intercom.%s: %w", name, err)
	}
	return d, nil
}
