package saas

import (
	"context"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestPassLockLeavesThePoolFree: a pass lock is held on a connection of its
// own, so a pool of one connection still serves the pass's queries; a
// second taker is told the lock is busy, and gets it once released.
func TestPassLockLeavesThePoolFree(t *testing.T) {
	ctx := context.Background()
	db, err := pgxpool.New(ctx, pgtest.New(t)+"&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := TryPassLock(ctx, db, 42)
	if err != nil || l == nil {
		t.Fatalf("TryPassLock = %v, %v; want the lock", l, err)
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var one int
	if err := db.QueryRow(qctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("the pool's only connection is taken while the lock is held: %v", err)
	}
	again, err := TryPassLock(ctx, db, 42)
	if err != nil || again != nil {
		t.Fatalf("second TryPassLock = %v, %v; want nil, nil (busy)", again, err)
	}
	l.Release()
	again, err = TryPassLock(ctx, db, 42)
	if err != nil || again == nil {
		t.Fatalf("TryPassLock after Release = %v, %v; want the lock", again, err)
	}
	again.Release()
}
