package queries

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// runAsBody streams the query's rows through a cursor and returns the
// first ones as record text, while they number at most max_rows and their
// text at most max_bytes in all: herd never receives more than that,
// however large a value is. The first row that does not fit ends the
// rows returned. It ends with one row holding minus the total count.
// Every operator and function is named with its schema: the function
// runs with the session's search_path, whose "$user" is the saver's
// schema.
const runAsBody = `
DECLARE
	rec  record;
	t    text;
	i    bigint := 0;
	size bigint := 0;
	over boolean := false;
BEGIN
	FOR rec IN EXECUTE q LOOP
		i := i OPERATOR(pg_catalog.+) 1;
		IF NOT over AND i OPERATOR(pg_catalog.<=) max_rows THEN
			t := rec::pg_catalog.text;
			size := size OPERATOR(pg_catalog.+) pg_catalog.octet_length(t);
			IF size OPERATOR(pg_catalog.>) max_bytes THEN
				over := true;
			ELSE
				n := i;
				r := t;
				RETURN NEXT;
			END IF;
		END IF;
	END LOOP;
	n := OPERATOR(pg_catalog.-) i;
	r := NULL;
	RETURN NEXT;
END`

// executeAs runs r.SQL with the privileges of role, the query's saver.
//
// SET ROLE alone would not do: the SQL (or a function it calls that the
// saver wrote) could call set_config('role', ...) and be herd again, since
// a session may always return to its session user. Postgres refuses every
// change of role inside a SECURITY DEFINER function, so the query runs
// inside one owned by role, created for this run in a transaction that is
// rolled back (nobody else ever sees the function, nor can change it), and
// read-only from before the function runs. Column names come from Postgres
// describing the statement as role, which parses it without running
// anything.
//
// The run has a connection of its own, taken out of the pool and closed
// after: what role's SQL leaves in the session outlives the rollback
// (PREPARE, and so a statement replacing one of pgx's cached ones that
// herd would then execute as itself; session advisory locks, LISTEN,
// cursors WITH HOLD, temporary objects), and DISCARD ALL does not undo
// everything (a prepared statement can be deallocated and made again
// under a name herd uses before DISCARD runs). Only closing does.
func (s *Store) executeAs(ctx context.Context, r *Run, role string) error {
	conn, err := dedicatedConn(ctx, s.db)
	if err != nil {
		return fmt.Errorf("connect to run as %s: %w", role, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		conn.Close(cctx) //nolint:errcheck // the connection is gone either way
	}()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	var exists, super bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1),
			(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)`, role).Scan(&exists, &super); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("role %s, which saved this query, no longer exists; save it again (herd queries save --as ROLE)", role)
	}
	ident := pgx.Identifier{role}.Sanitize()
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", r.timeout.Milliseconds())); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+ident); err != nil {
		return fmt.Errorf("act as %s: %w", role, err)
	}
	sd, err := tx.Conn().PgConn().Prepare(ctx, "", r.SQL, nil)
	if err != nil {
		return pgMessage(err)
	}
	for _, f := range sd.Fields {
		r.Columns = append(r.Columns, f.Name)
	}
	if _, err := tx.Exec(ctx, "RESET ROLE"); err != nil {
		return err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	fn := pgx.Identifier{"herd", "run_as_" + hex.EncodeToString(b)}.Sanitize()
	stmts := []string{
		"CREATE FUNCTION " + fn + "(q text, max_rows bigint, max_bytes bigint) RETURNS TABLE (n bigint, r text) LANGUAGE plpgsql SECURITY DEFINER AS $herd$" + runAsBody + "$herd$",
	}
	if !super {
		// A non-superuser may give an object to role only where role
		// may create; the grant is rolled back with the function.
		stmts = append(stmts, "GRANT CREATE ON SCHEMA herd TO "+ident)
	}
	stmts = append(stmts, "ALTER FUNCTION "+fn+"(text, bigint, bigint) OWNER TO "+ident, "SET TRANSACTION READ ONLY")
	for _, q := range stmts {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("prepare to run as %s: %w", role, err)
		}
	}
	rows, _ := tx.Query(ctx, "SELECT n, r FROM "+fn+"($1, $2, $3)", r.SQL, int64(s.cfg.MaxRows), int64(s.cfg.MaxBytes))
	var n int64
	var text *string
	_, err = pgx.ForEachRow(rows, []any{&n, &text}, func() error {
		if n < 0 {
			r.RowCount = -n
			r.Truncated = r.RowCount > int64(len(r.Rows))
			return nil
		}
		if text == nil {
			return errors.New("a row came back without its values")
		}
		vals, err := parseRecord(*text, len(r.Columns))
		if err != nil {
			return err
		}
		r.Rows = append(r.Rows, vals)
		return nil
	})
	if err != nil {
		return pgMessage(err)
	}
	return nil
}

// dedicatedConn takes a connection out of the pool for good: the caller
// closes it, and the pool opens another when it needs one.
func dedicatedConn(ctx context.Context, db *pgxpool.Pool) (*pgx.Conn, error) {
	c, err := db.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return c.Hijack(), nil
}

func pgMessage(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return errors.New(pe.Message)
	}
	return err
}

// parseRecord splits Postgres's text form of a row (record_out: "(a,,\"b c\")")
// into ncols values, nil for NULL. record_out quotes a value that is empty
// or holds a special character, doubling quotes and backslashes inside.
func parseRecord(s string, ncols int) ([]*string, error) {
	if len(s) < 2 || s[0] != '(' || s[len(s)-1] != ')' {
		return nil, fmt.Errorf("row %.40q: not a record", s)
	}
	body := s[1 : len(s)-1]
	vals := make([]*string, 0, ncols)
	if ncols == 0 {
		return vals, nil
	}
	i := 0
	for {
		var v strings.Builder
		quoted, null := false, true
		for i < len(body) && body[i] != ',' {
			null = false
			if body[i] != '"' {
				v.WriteByte(body[i])
				i++
				continue
			}
			quoted = true
			i++
			for i < len(body) {
				c := body[i]
				if c == '\\' && i+1 < len(body) {
					v.WriteByte(body[i+1])
					i += 2
					continue
				}
				if c == '"' {
					if i+1 < len(body) && body[i+1] == '"' {
						v.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				v.WriteByte(c)
				i++
			}
		}
		if null && !quoted {
			vals = append(vals, nil)
		} else {
			str := v.String()
			vals = append(vals, &str)
		}
		if i >= len(body) {
			break
		}
		i++ // the comma
	}
	if len(vals) != ncols {
		return nil, fmt.Errorf("row has %d values, want %d", len(vals), ncols)
	}
	return vals, nil
}
