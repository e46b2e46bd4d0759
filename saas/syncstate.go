package saas

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Execer is what a pool, a connection and a transaction have in common
// for a statement without rows.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// SetSyncState writes the given columns of object's row in
// <schema>.sync_state, creating the row when missing, and stamps its
// updated_at. Column and schema names come from the connector, never from
// input.
func SetSyncState(ctx context.Context, q Execer, schema, object string, cols map[string]any) error {
	names := []string{"object"}
	vals := []string{"$1"}
	sets := []string{"updated_at = now()"}
	args := []any{object}
	for c, v := range cols {
		id := pgx.Identifier{c}.Sanitize()
		args = append(args, v)
		names = append(names, id)
		vals = append(vals, fmt.Sprintf("$%d", len(args)))
		sets = append(sets, id+" = EXCLUDED."+id)
	}
	table := pgx.Identifier{schema, "sync_state"}.Sanitize()
	_, err := q.Exec(ctx, `INSERT INTO `+table+` (`+strings.Join(names, ", ")+`) VALUES (`+strings.Join(vals, ", ")+`)
		ON CONFLICT (object) DO UPDATE SET `+strings.Join(sets, ", "), args...)
	if err != nil {
		return fmt.Errorf("update %s.sync_state for %s: %w", schema, object, err)
	}
	return nil
}

// DBNow reads the warehouse's clock, the one sync_state's times are in.
func DBNow(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (time.Time, error) {
	var t time.Time
	if err := q.QueryRow(ctx, "SELECT now()").Scan(&t); err != nil {
		return t, fmt.Errorf("read the warehouse clock: %w", err)
	}
	return t, nil
}
