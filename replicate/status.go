package replicate

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Health values of SubscriptionStatus.Health.
const (
	HealthOK       = "ok"
	HealthSlotLost = "slot lost"
	HealthStuck    = "stuck"
	HealthDisabled = "disabled"
	HealthWarning  = "warning"
	HealthUnknown  = "unknown"
)

// SubscriptionStatus is the state of one replication.
type SubscriptionStatus struct {
	Name    string
	Mode    string
	Enabled bool
	// WorkerPID is the warehouse's apply worker, 0 when none runs.
	WorkerPID int
	// LagBytes is WAL the source has written that the subscription has not
	// confirmed; -1 when unknown (source unreachable).
	LagBytes int64
	// LagSeconds is the source's replay lag of the subscription's WAL
	// sender (0 when it has caught up), -1 when no sender runs. While the
	// subscription is behind it is at least the time since the warehouse
	// last replied: a stuck apply worker (a lock, a slow trigger) confirms
	// nothing, and the sender's replay lag keeps its last, small, value.
	LagSeconds float64
	Slot       string
	// WALStatus is pg_replication_slots.wal_status: reserved, extended,
	// unreserved (WAL about to be removed) or lost.
	WALStatus string
	// SafeWALSize is how many more bytes of WAL the source may write before
	// the slot is lost; nil when max_slot_wal_keep_size is unlimited.
	SafeWALSize *int64
	SlotActive  bool
	ApplyErrors int64 // pg_stat_subscription_stats, PostgreSQL 15+
	SyncErrors  int64
	LastError   string // from the warehouse's server log, when readable
	Health      string
	Problem     string // what is wrong, when Health is not ok
	Fix         string
	Tables      []tableState
	Drift       []Drift

	stalled bool // errors, lag, and the slot did not advance
}

// Drift is one schema change that herd reported instead of applying, or is
// about to apply.
type Drift struct {
	At     time.Time
	Table  string
	Kind   string
	Detail string
	Fix    string
	State  string
}

// Status reports every replication on the warehouse (or only name).
func Status(ctx context.Context, wh *pgxpool.Pool, name string) ([]SubscriptionStatus, error) {
	subs, err := Subscriptions(ctx, wh)
	if err != nil {
		return nil, err
	}
	var out []SubscriptionStatus
	for _, s := range subs {
		if name != "" && s.Name != name {
			continue
		}
		st, err := status(ctx, wh, s)
		if err != nil {
			return out, err
		}
		out = append(out, st)
	}
	if name != "" && len(out) == 0 {
		return nil, fmt.Errorf("no replication named %q on the warehouse", name)
	}
	return out, nil
}

func status(ctx context.Context, wh *pgxpool.Pool, s Subscription) (SubscriptionStatus, error) {
	st := SubscriptionStatus{Name: s.Name, Mode: s.Mode, LagBytes: -1, LagSeconds: -1, Health: HealthOK}
	if s.Mode == ModeFDW {
		src, err := connectSource(ctx, s.SourceURL)
		if err != nil {
			st.Health, st.Problem = HealthUnknown, err.Error()
		} else {
			src.Close(ctx)
		}
		return st, nil
	}
	var whVersion int
	if err := wh.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&whVersion); err != nil {
		return st, fmt.Errorf("read warehouse version: %w", err)
	}
	stats := "0::bigint, 0::bigint"
	statsJoin := ""
	if whVersion >= 150000 {
		stats = "coalesce(ss.apply_error_count, 0), coalesce(ss.sync_error_count, 0)"
		statsJoin = "LEFT JOIN pg_stat_subscription_stats ss ON ss.subid = s.oid"
	}
	var pid *int
	var slot *string
	var oid uint32
	err := wh.QueryRow(ctx, `SELECT s.oid, s.subenabled, s.subslotname, (SELECT st.pid FROM pg_stat_subscription st
			WHERE st.subid = s.oid AND st.relid IS NULL AND st.pid IS NOT NULL LIMIT 1), `+stats+`
		FROM pg_subscription s `+statsJoin+`
		WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, s.Name).Scan(
		&oid, &st.Enabled, &slot, &pid, &st.ApplyErrors, &st.SyncErrors)
	if err == pgx.ErrNoRows {
		st.Health, st.Problem = HealthStuck, "the subscription is missing on the warehouse"
		st.Fix = "herd replicate resync --all --name " + s.Name
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read subscription %s: %w", s.Name, err)
	}
	if pid != nil {
		st.WorkerPID = *pid
	}
	if slot != nil {
		st.Slot = *slot
	}
	if st.Tables, err = subscriptionTables(ctx, wh, s.Name); err != nil {
		return st, err
	}
	if st.Drift, err = drift(ctx, wh, s.Name); err != nil {
		return st, err
	}
	st.LastError = lastLogError(ctx, wh, fmt.Sprintf("pg_%d", oid))

	slotFound := false
	if src, err := connectSource(ctx, s.SourceURL); err != nil {
		st.Health, st.Problem = HealthUnknown, err.Error()
	} else {
		defer src.Close(context.WithoutCancel(ctx))
		slotFound, err = sourceSlot(ctx, src, &st)
		if err != nil {
			return st, err
		}
		// Errors while behind: see whether the slot still advances. A
		// subscription stuck on one transaction retries it forever and
		// confirms nothing.
		if slotFound && st.ApplyErrors+st.SyncErrors > 0 && st.LagBytes > 0 && st.WALStatus != "lost" {
			st.stalled, err = slotStalled(ctx, src, cmpOr(st.Slot, st.Name), time.Second)
			if err != nil {
				return st, err
			}
		}
	}
	classify(&st, slotFound)
	return st, nil
}

// sourceSlot fills in the slot's health and the lag, read on the source.
func sourceSlot(ctx context.Context, src *pgx.Conn, st *SubscriptionStatus) (bool, error) {
	var version int
	if err := src.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return false, fmt.Errorf("read source version: %w", err)
	}
	walCols := "'', NULL::bigint"
	if version >= 130000 {
		walCols = "coalesce(wal_status, ''), safe_wal_size"
	}
	silent := "interval '0'"
	if version >= 120000 {
		silent = "CASE WHEN pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn) > 0 THEN coalesce(now() - r.reply_time, interval '0') ELSE interval '0' END"
	}
	var lag *int64
	var seconds *float64
	err := src.QueryRow(ctx, `SELECT `+walCols+`, active,
			pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
			(SELECT extract(epoch FROM greatest(coalesce(r.replay_lag, interval '0'), `+silent+`))::float8 FROM pg_stat_replication r WHERE r.pid = s.active_pid)
		FROM pg_replication_slots s WHERE slot_name = $1`, cmpOr(st.Slot, st.Name)).Scan(
		&st.WALStatus, &st.SafeWALSize, &st.SlotActive, &lag, &seconds)
	if err == pgx.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read replication slot %s on the source: %w", st.Slot, err)
	}
	if lag != nil {
		st.LagBytes = *lag
	}
	if seconds != nil {
		st.LagSeconds = *seconds
	}
	return true, nil
}

// classify sets Health, Problem and Fix from the facts gathered.
func classify(st *SubscriptionStatus, slotFound bool) {
	if st.Health == HealthUnknown {
		return
	}
	resyncAll := "herd replicate resync --all --name " + st.Name
	switch {
	case st.WALStatus == "lost":
		st.Health = HealthSlotLost
		st.Problem = "the source removed WAL the subscription still needed (max_slot_wal_keep_size); changes since then cannot be streamed"
		st.Fix = resyncAll
	case !slotFound && st.Slot != "":
		st.Health = HealthSlotLost
		st.Problem = fmt.Sprintf("replication slot %s does not exist on the source", st.Slot)
		st.Fix = resyncAll
	case !st.Enabled:
		st.Health = HealthDisabled
		st.Problem = "the subscription is disabled"
		st.Fix = fmt.Sprintf("ALTER SUBSCRIPTION %s ENABLE;", quote(st.Name))
	case st.WorkerPID == 0 || st.stalled:
		st.Health = HealthStuck
		st.Problem = fmt.Sprintf("no apply worker is streaming (%d apply errors, %d table sync errors so far)", st.ApplyErrors, st.SyncErrors)
		if st.LastError != "" {
			st.Problem += ": " + st.LastError
		}
		st.Fix = "read the error in the warehouse's server log; when one table is at fault: herd replicate resync TABLE --name " + st.Name
	case st.WALStatus == "unreserved":
		st.Health = HealthWarning
		st.Problem = "the slot is behind by more than max_slot_wal_keep_size and will be lost at the next checkpoint"
	}
	for _, t := range st.Tables {
		if st.Health == HealthOK && t.State != "ready" {
			st.Health = HealthWarning
			st.Problem = "initial copy in progress"
		}
	}
}

func drift(ctx context.Context, wh *pgxpool.Pool, name string) ([]Drift, error) {
	rows, _ := wh.Query(ctx, `SELECT at, table_name, kind, detail, fix, state FROM herd.replicate_drift
		WHERE subscription = $1 ORDER BY id`, name)
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Drift, error) {
		var d Drift
		err := r.Scan(&d.At, &d.Table, &d.Kind, &d.Detail, &d.Fix, &d.State)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("read herd.replicate_drift: %w", err)
	}
	return ds, nil
}

// lastLogError returns the last apply error of the subscription whose
// replication origin is origin (pg_<subscription oid>) in the warehouse's
// server log, when the server logs to a file it can read back
// (logging_collector on, and a role allowed to read it).
func lastLogError(ctx context.Context, wh *pgxpool.Pool, origin string) string {
	var text *string
	err := wh.QueryRow(ctx, `SELECT pg_read_file(f, greatest(0, (pg_stat_file(f)).size - 262144), 262144)
		FROM pg_current_logfile() f WHERE f IS NOT NULL`).Scan(&text)
	if err != nil || text == nil {
		return ""
	}
	// An apply error is an ERROR line followed by a CONTEXT line naming
	// the subscription's replication origin and the target relation.
	last, candidate := "", ""
	for _, line := range strings.Split(*text, "\n") {
		switch {
		case strings.Contains(line, "ERROR:"):
			_, msg, _ := strings.Cut(line, "ERROR:")
			candidate = strings.TrimSpace(msg)
		case candidate != "" && strings.Contains(line, "CONTEXT:") && strings.Contains(line, `"`+origin+`"`):
			_, ctxt, _ := strings.Cut(line, "CONTEXT:")
			last = candidate + " (" + strings.TrimSpace(ctxt) + ")"
			candidate = ""
		case strings.Contains(line, "STATEMENT:") || strings.Contains(line, "LOG:"):
			candidate = ""
		}
	}
	return last
}

// slotStalled reports whether the slot's confirmed position stays put for
// the given time.
func slotStalled(ctx context.Context, src *pgx.Conn, slot string, wait time.Duration) (bool, error) {
	read := func() (string, error) {
		var lsn string
		err := src.QueryRow(ctx, "SELECT coalesce(confirmed_flush_lsn::text, '') FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&lsn)
		return lsn, err
	}
	before, err := read()
	if err != nil {
		return false, fmt.Errorf("read slot %s on the source: %w", slot, err)
	}
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-time.After(wait):
	}
	after, err := read()
	if err != nil {
		return false, fmt.Errorf("read slot %s on the source: %w", slot, err)
	}
	return before == after, nil
}
