package queries

import (
	"context"
	"time"
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
		s.log.Debug("saved query schedule: another process runs the due queries; skipping this tick")
		return
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", scheduleLockKey) //nolint:errcheck
	if err := s.RunDue(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("saved queries failed", "error", err)
	}
}
