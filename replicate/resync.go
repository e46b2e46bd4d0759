package replicate

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ResyncConfig says what to copy again.
type ResyncConfig struct {
	Name   string   // replication; may be empty when there is only one
	Tables []string // "schema.table" or "table" (schema public)
	// All recreates the subscription and its slot and copies every table
	// again: the way back from a lost slot.
	All           bool
	Progress      io.Writer
	ProgressEvery time.Duration
	Log           *slog.Logger
}

// Resync copies tables again from the source. With All it drops the
// subscription and its slot (which may be lost), empties every target table
// and creates the subscription again; otherwise it takes each table out of
// the publication, empties it on the warehouse and puts it back, so that
// Postgres copies it afresh while the other tables keep streaming.
func Resync(ctx context.Context, wh *pgxpool.Pool, cfg ResyncConfig) error {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.All == (len(cfg.Tables) > 0) {
		return fmt.Errorf("resync: name the tables, or --all (not both)")
	}
	sub, err := subscription(ctx, wh, cfg.Name)
	if err != nil {
		return err
	}
	if sub.Mode != ModeLogical {
		return fmt.Errorf("replication %s is in FDW mode: use herd replicate refresh", sub.Name)
	}
	src, err := connectSource(ctx, sub.SourceURL)
	if err != nil {
		return err
	}
	defer src.Close(context.WithoutCancel(ctx))
	if cfg.All {
		return resyncAll(ctx, wh, src, sub, cfg)
	}
	st, err := status(ctx, wh, sub)
	if err != nil {
		return err
	}
	if st.Health == HealthSlotLost {
		return fmt.Errorf("the slot of %s is lost (%s): only herd replicate resync --all can recover", sub.Name, st.Problem)
	}
	return resyncTables(ctx, wh, src, sub, cfg)
}

func resyncAll(ctx context.Context, wh *pgxpool.Pool, src *pgx.Conn, sub Subscription, cfg ResyncConfig) error {
	var subOID uint32
	var slot *string
	// Reconnect as the old subscription did (its URL may be the one the
	// warehouse server reaches the source by).
	conninfo := sub.SourceURL
	err := wh.QueryRow(ctx, `SELECT oid, subslotname, subconninfo FROM pg_subscription WHERE subname = $1
		AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, sub.Name).Scan(&subOID, &slot, &conninfo)
	switch {
	case err == pgx.ErrNoRows:
		// Already gone: recreate below.
	case err != nil:
		return fmt.Errorf("read subscription %s: %w", sub.Name, err)
	default:
		// Detach the slot first: dropping a subscription whose slot is lost
		// or unreachable would fail trying to drop it on the source.
		for _, q := range []string{
			fmt.Sprintf("ALTER SUBSCRIPTION %s DISABLE", quote(sub.Name)),
			fmt.Sprintf("ALTER SUBSCRIPTION %s SET (slot_name = NONE)", quote(sub.Name)),
			fmt.Sprintf("DROP SUBSCRIPTION %s", quote(sub.Name)),
		} {
			if _, err := wh.Exec(ctx, q); err != nil {
				return fmt.Errorf("resync %s: %s: %w", sub.Name, q, err)
			}
		}
	}
	// The slot and any table-sync slots left by the old subscription.
	slotName := sub.Name
	if slot != nil {
		slotName = *slot
	}
	if err := dropSlots(ctx, src, slotName, subOID); err != nil {
		return err
	}
	tables, err := publishedTables(ctx, src, sub.Name)
	if err != nil {
		return err
	}
	if len(tables) > 0 {
		q := "TRUNCATE " + strings.Join(tables, ", ")
		if _, err := wh.Exec(ctx, q); err != nil {
			return fmt.Errorf("empty the warehouse tables before copying them again: %w", err)
		}
	}
	fmt.Fprintf(cfg.Progress, "resync %s: subscription and slot recreated, copying %d tables again\n", sub.Name, len(tables)-1)
	cfg.Log.Info("replicate: resync all", "name", sub.Name, "tables", len(tables)-1)
	q := fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (copy_data = true)",
		quote(sub.Name), literal(conninfo), quote(sub.Name))
	if _, err := wh.Exec(ctx, q); err != nil {
		return fmt.Errorf("create subscription %s again: %w", sub.Name, err)
	}
	return waitCopied(ctx, wh, sub.Name, nil, cfg.Progress, cfg.ProgressEvery)
}

// dropSlots drops the subscription's slot on the source and the table-sync
// slots Postgres names pg_<subscription oid>_sync_<relid>_<system id>.
func dropSlots(ctx context.Context, src *pgx.Conn, slot string, subOID uint32) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows, _ := src.Query(ctx, `SELECT slot_name::text, active FROM pg_replication_slots
			WHERE slot_name = $1 OR ($2::oid <> 0 AND slot_name LIKE 'pg\_' || $2::oid::text || '\_sync\_%')`, slot, subOID)
		type sl struct {
			name   string
			active bool
		}
		slots, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sl, error) {
			var s sl
			err := r.Scan(&s.name, &s.active)
			return s, err
		})
		if err != nil {
			return fmt.Errorf("list replication slots on the source: %w", err)
		}
		busy := false
		for _, s := range slots {
			if s.active {
				// The disabled subscription's WAL sender needs a moment to exit.
				busy = true
				continue
			}
			if _, err := src.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.name); err != nil {
				return fmt.Errorf("drop replication slot %s on the source: %w", s.name, err)
			}
		}
		if !busy {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replication slot %s on the source stays active; end its WAL sender: SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s", slot, literal(slot))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// publishedTables lists the publication's tables, quoted.
func publishedTables(ctx context.Context, src *pgx.Conn, pub string) ([]string, error) {
	rows, _ := src.Query(ctx, "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2", pub)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var s, t string
		err := r.Scan(&s, &t)
		return quote(s, t), err
	})
	if err != nil {
		return nil, fmt.Errorf("list the tables of publication %s on the source: %w", pub, err)
	}
	return out, nil
}

func resyncTables(ctx context.Context, wh *pgxpool.Pool, src *pgx.Conn, sub Subscription, cfg ResyncConfig) error {
	oids, err := resolveTables(ctx, src, cfg.Tables, false)
	if err != nil {
		return err
	}
	tables, err := readTables(ctx, src, oids)
	if err != nil {
		return err
	}
	var names []string
	for _, t := range tables {
		names = append(names, t.qualified())
	}
	list := strings.Join(names, ", ")
	refresh := func(copyData bool) error {
		q := fmt.Sprintf("ALTER SUBSCRIPTION %s REFRESH PUBLICATION WITH (copy_data = %t)", quote(sub.Name), copyData)
		if _, err := wh.Exec(ctx, q); err != nil {
			return fmt.Errorf("resync: refresh subscription %s: %w", sub.Name, err)
		}
		return nil
	}
	// Out of the publication and the subscription: the apply worker skips
	// their changes from now on, which also unblocks it when one of these
	// tables is what it was failing on.
	if _, err := src.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s DROP TABLE %s", quote(sub.Name), list)); err != nil {
		return fmt.Errorf("resync: take %s out of publication %s: %w", list, sub.Name, err)
	}
	if err := refresh(false); err != nil {
		return err
	}
	if _, err := wh.Exec(ctx, "TRUNCATE "+list); err != nil {
		return fmt.Errorf("resync: empty %s on the warehouse: %w", list, err)
	}
	if _, err := src.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", quote(sub.Name), list)); err != nil {
		return fmt.Errorf("resync: put %s back into publication %s: %w", list, sub.Name, err)
	}
	if err := refresh(true); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Progress, "resync %s: copying %s again\n", sub.Name, list)
	cfg.Log.Info("replicate: resync tables", "name", sub.Name, "tables", list)
	est := map[string]int64{}
	for _, t := range tables {
		est[t.String()] = t.Rows
	}
	return waitCopied(ctx, wh, sub.Name, est, cfg.Progress, cfg.ProgressEvery)
}
