package queries

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// scheduleLockKey is the advisory lock of the saved-query schedule ("herdqrun"
// in ASCII), apart from the rollups' so neither waits for the other.
const scheduleLockKey int64 = 0x686572647172756e

// RunScheduled runs the saved queries that are due (RunDue) every tick
// until ctx ends. It is a loop of its own, not a job of the rollup
// scheduler, so a slow saved query never delays a rollup; each run still
// has the store's statement timeout. Of several herd processes on one
// warehouse only one runs the due queries at a time (a session advisory
// lock).
func (s *Store) RunScheduled(ctx context.Context, tick time.Duration) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		s.runScheduledOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Store) runScheduledOnce(ctx context.Context) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("saved query schedule: connect", "error", err)
		}
		return
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", scheduleLockKey).Scan(&got); err != nil {
		if ctx.Err() == nil {
			s.log.Error("saved query schedule: lock", "error", err)
		}
		return
	}
	if !got {
		pid, user, app := lockHolder(ctx, conn.Conn(), scheduleLockKey)
		s.log.Warn("saved query schedule: another session holds the schedule's advisory lock; skipping this tick",
			"holder_pid", pid, "holder_user", user, "holder_application", app,
			"hint", "another herd process runs the due queries; otherwise end that session: SELECT pg_terminate_backend(holder_pid)")
		return
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", scheduleLockKey) //nolint:errcheck
	if err := s.RunDue(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("saved queries failed", "error", err)
	}
}

// lockHolder names the session holding the session advisory lock key:
// its pid, role and application_name (0 and empty when none is seen).
func lockHolder(ctx context.Context, conn *pgx.Conn, key int64) (pid int32, user, app string) {
	_ = conn.QueryRow(ctx, `SELECT l.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, '')
		FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.classid = ($1::bigint >> 32)::bigint::oid AND l.objid = ($1::bigint & 4294967295)::oid
		  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
		LIMIT 1`, key).Scan(&pid, &user, &app)
	return pid, user, app
}
