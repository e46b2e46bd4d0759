package replicate

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// CheckResult compares one table on both sides.
type CheckResult struct {
	Table                  string
	SourceRows, TargetRows int64
	SourceSum, TargetSum   string // sum of a 60-bit hash of every row's text form
	Columns                int    // columns compared (those both sides have)
	Equal                  bool
}

// sessionSettings make the text form of values identical on both servers.
const sessionSettings = `SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';
	SET extra_float_digits = 1; SET bytea_output = 'hex'`

// Check compares row counts and checksums of every replicated table, source
// against warehouse. In logical mode it first waits (up to wait) until
// everything committed on the source before the check has been applied, so
// that a quiet source compares equal.
func Check(ctx context.Context, wh *pgxpool.Pool, name string, wait time.Duration) ([]CheckResult, error) {
	sub, err := subscription(ctx, wh, name)
	if err != nil {
		return nil, err
	}
	if sub.Mode != ModeLogical {
		return nil, fmt.Errorf("replication %s is in FDW mode: its tables are read live from the source, there is nothing to compare", sub.Name)
	}
	src, err := connectSource(ctx, sub.SourceURL)
	if err != nil {
		return nil, err
	}
	defer src.Close(context.WithoutCancel(ctx))
	if err := WaitApplied(ctx, wh, src, sub.Name, wait); err != nil {
		return nil, err
	}
	whConn, err := wh.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the warehouse: %w", err)
	}
	defer whConn.Release()
	for _, c := range []*pgx.Conn{src, whConn.Conn()} {
		if _, err := c.Exec(ctx, sessionSettings); err != nil {
			return nil, fmt.Errorf("set session for checksums: %w", err)
		}
	}
	defer whConn.Exec(context.WithoutCancel(ctx), "RESET ALL") //nolint:errcheck
	tables, err := subscriptionTables(ctx, wh, sub.Name)
	if err != nil {
		return nil, err
	}
	var out []CheckResult
	for _, t := range tables {
		if strings.HasPrefix(t.Table, "herd_replicate.") {
			continue
		}
		r, err := checkTable(ctx, src, whConn.Conn(), t.Table)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

func checkTable(ctx context.Context, src, wh *pgx.Conn, name string) (CheckResult, error) {
	r := CheckResult{Table: name}
	q := quoteQualified(name)
	colsOf := func(c *pgx.Conn) ([]string, error) {
		rows, _ := c.Query(ctx, `SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass
			AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, q)
		return pgx.CollectRows(rows, pgx.RowTo[string])
	}
	srcCols, err := colsOf(src)
	if err != nil {
		return r, fmt.Errorf("read columns of %s on the source: %w", name, err)
	}
	whCols, err := colsOf(wh)
	if err != nil {
		return r, fmt.Errorf("read columns of %s on the warehouse: %w", name, err)
	}
	var cols []string
	for _, c := range srcCols {
		if contains(whCols, c) {
			cols = append(cols, quote(c))
		}
	}
	r.Columns = len(cols)
	// An order-independent checksum: the sum of a 60-bit slice of each
	// row's md5, so neither side has to sort.
	sum := fmt.Sprintf(`SELECT count(*), coalesce(sum(('x' || left(md5(ROW(%s)::text), 15))::bit(60)::bigint), 0)::text FROM %s`,
		strings.Join(cols, ", "), q)
	type res struct {
		n   int64
		sum string
		err error
	}
	srcRes := make(chan res, 1)
	go func() {
		var x res
		x.err = src.QueryRow(ctx, sum).Scan(&x.n, &x.sum)
		srcRes <- x
	}()
	var w res
	w.err = wh.QueryRow(ctx, sum).Scan(&w.n, &w.sum)
	s := <-srcRes
	if s.err != nil {
		return r, fmt.Errorf("checksum %s on the source: %w", name, s.err)
	}
	if w.err != nil {
		return r, fmt.Errorf("checksum %s on the warehouse: %w", name, w.err)
	}
	r.SourceRows, r.SourceSum, r.TargetRows, r.TargetSum = s.n, s.sum, w.n, w.sum
	r.Equal = s.n == w.n && s.sum == w.sum
	return r, nil
}

// WaitApplied writes a marker row into the replicated DDL log on the source
// and waits until the warehouse has applied it. Transactions are applied in
// commit order, so everything committed on the source before the call is
// then on the warehouse.
func WaitApplied(ctx context.Context, wh *pgxpool.Pool, src *pgx.Conn, name string, wait time.Duration) error {
	var id int64
	err := src.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s (command_tag, schema_name, table_name)
		VALUES ('MARK', '', '') RETURNING id`, ddlLogTable(name))).Scan(&id)
	if err != nil {
		return fmt.Errorf("write a marker into the source's DDL log %s: %w", ddlLogTable(name), err)
	}
	deadline := time.Now().Add(wait)
	for {
		var done bool
		if err := wh.QueryRow(ctx, fmt.Sprintf("SELECT EXISTS (SELECT FROM %s WHERE id = $1)", ddlLogTable(name)), id).Scan(&done); err != nil {
			return fmt.Errorf("look for the marker in the warehouse's DDL log: %w", err)
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the warehouse has not applied the source's changes within %s (see herd replicate status)", wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
