package rollups

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Scheduler refreshes due rollups every Config.Tick and then runs the extra
// jobs added to it (scheduled saved queries). Each tick runs under the
// rollup lock, so with several herd processes only one does the work.
type Scheduler struct {
	db   *pgxpool.Pool
	log  *slog.Logger
	cfg  Config
	jobs []job
}

type job struct {
	name string
	fn   func(ctx context.Context) error
}

// NewScheduler returns a scheduler; start it with Run.
func NewScheduler(db *pgxpool.Pool, log *slog.Logger, cfg Config) *Scheduler {
	return &Scheduler{db: db, log: log, cfg: cfg.withDefaults()}
}

// Add registers fn to be called on every tick after the rollups, under the
// same lock. fn decides for itself what is due. Call Add before Run.
func (s *Scheduler) Add(name string, fn func(ctx context.Context) error) {
	s.jobs = append(s.jobs, job{name: name, fn: fn})
}

// Run ticks until ctx is done, then returns nil. Failures are logged and
// retried on a later tick: a broken rollup or an unreachable database must
// not stop herd up.
func (s *Scheduler) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		s.Tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick does one round: refresh what is due, then run the jobs.
func (s *Scheduler) Tick(ctx context.Context) {
	err := withLock(ctx, s.db, func(conn *pgx.Conn) error {
		if _, err := refresh(ctx, conn, s.log, s.cfg, time.Now(), false); err != nil && ctx.Err() == nil {
			s.log.Error("rollup refresh pass failed", "error", err)
		}
		for _, j := range s.jobs {
			if err := j.fn(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("scheduled job failed", "job", j.name, "error", err)
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrBusy):
		s.log.Debug("rollup scheduler: another process holds the lock; skipping this tick")
	case err != nil && ctx.Err() == nil:
		s.log.Error("rollup scheduler tick failed", "error", err)
	}
}
