package saas

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PassLock is a session advisory lock held for a whole sync pass, on a
// connection of its own.
type PassLock struct {
	conn *pgx.Conn
	key  int64
}

// TryPassLock takes the session advisory lock key on a dedicated
// connection, opened with db's settings but outside db's pool. A pass holds
// its lock for minutes or hours while writing through db: held on a pooled
// connection, it would take one of the few connections herd up shares among
// its listeners, rollups and every other connector, and a pass needing a
// second one could wait forever. It returns nil, nil when another session
// holds the lock. Release closes the connection, which drops the lock even
// if the unlock cannot be sent.
func TryPassLock(ctx context.Context, db *pgxpool.Pool, key int64) (*PassLock, error) {
	conn, err := pgx.ConnectConfig(ctx, db.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connect to the warehouse for the sync lock: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("take the sync advisory lock: %w", err)
	}
	if !ok {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, nil
	}
	return &PassLock{conn: conn, key: key}, nil
}

// Release drops the lock and closes its connection.
func (l *PassLock) Release() {
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", l.key)
	_ = l.conn.Close(ctx)
}
