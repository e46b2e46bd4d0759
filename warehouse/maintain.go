package warehouse

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Partitions creates the partitions of herd.events for today and the next
// ahead days, and, when retention is positive, drops those wholly older than
// retention. It returns the number dropped.
func Partitions(ctx context.Context, db *pgxpool.Pool, now time.Time, ahead int, retention time.Duration) (int, error) {
	today := now.UTC().Truncate(24 * time.Hour)
	for i := 0; i <= ahead; i++ {
		d := today.AddDate(0, 0, i)
		if _, err := db.Exec(ctx, "SELECT herd.ensure_partition($1::date)", d); err != nil {
			return 0, fmt.Errorf("create partition %s: %w", d.Format("2006-01-02"), err)
		}
	}
	if retention <= 0 {
		return 0, nil
	}
	cutoff := now.Add(-retention).UTC().Truncate(24 * time.Hour)
	var n int
	if err := db.QueryRow(ctx, "SELECT herd.drop_partitions_before($1::date)", cutoff).Scan(&n); err != nil {
		return 0, fmt.Errorf("drop partitions before %s: %w", cutoff.Format("2006-01-02"), err)
	}
	return n, nil
}

// Maintain runs Partitions now and every hour until ctx ends.
func Maintain(ctx context.Context, db *pgxpool.Pool, ahead int, retention time.Duration, log *slog.Logger, dropped func()) error {
	for {
		n, err := Partitions(ctx, db, time.Now(), ahead, retention)
		if err != nil && ctx.Err() == nil {
			log.Warn("partition upkeep", "err", err)
		}
		if n > 0 {
			log.Info("dropped partitions past retention", "count", n, "retention", retention)
			if dropped != nil {
				dropped()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Hour):
		}
	}
}
