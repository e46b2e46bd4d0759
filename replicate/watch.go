package replicate

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// WatchConfig configures the Watcher.
type WatchConfig struct {
	// Interval between passes. Default 5s. Column changes do not wait for
	// it: the DDL log trigger applies them inside replication itself.
	Interval time.Duration
	Log      *slog.Logger
	// Registerer receives the watcher's metrics; nil registers none.
	Registerer prometheus.Registerer
	// AnalystsGroup is granted SELECT on tables the watcher adds (see
	// Config.AnalystsGroup). Default: the warehouse database's analysts group.
	AnalystsGroup string
}

// Watcher is the part of schema drift that cannot run inside the apply
// worker: adding tables created on the source to --all replications (that
// needs ALTER SUBSCRIPTION ... REFRESH PUBLICATION, which no trigger may
// run), and logging reported drift and health changes. herd up and herd
// replicate watch run it.
type Watcher struct {
	wh  *pgxpool.Pool
	cfg WatchConfig

	lastDrift map[string]int64  // highest drift id logged, per replication
	health    map[string]string // last health logged, per replication
	refused   map[string]string // new tables refused, with the reason logged

	passes, added, errors prometheus.Counter
}

// NewWatcher returns a watcher for the replications on the warehouse wh.
func NewWatcher(wh *pgxpool.Pool, cfg WatchConfig) (*Watcher, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := validGroup(cfg.AnalystsGroup); err != nil {
		return nil, err
	}
	w := &Watcher{wh: wh, cfg: cfg, lastDrift: map[string]int64{}, health: map[string]string{}, refused: map[string]string{},
		passes: prometheus.NewCounter(prometheus.CounterOpts{Name: "herd_replicate_watch_passes_total", Help: "Passes of the replication watcher."}),
		added:  prometheus.NewCounter(prometheus.CounterOpts{Name: "herd_replicate_watch_tables_added_total", Help: "Tables created on the source that the watcher added to --all replications."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "herd_replicate_watch_errors_total", Help: "Watcher passes that failed."}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{w.passes, w.added, w.errors} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register replicate watcher metrics: %w", err)
			}
		}
	}
	return w, nil
}

// Run makes a pass every Interval until ctx ends. A failed pass is logged
// and retried at the next tick: the source may be down for a while.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		if err := w.Once(ctx); err != nil && ctx.Err() == nil {
			w.errors.Inc()
			w.cfg.Log.Warn("replicate watch", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once makes one pass over every logical replication.
func (w *Watcher) Once(ctx context.Context) error {
	w.passes.Inc()
	subs, err := Subscriptions(ctx, w.wh)
	if err != nil {
		return err
	}
	var errs []string
	for _, s := range subs {
		if s.Mode != ModeLogical {
			continue
		}
		if err := w.pass(ctx, s); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", s.Name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (w *Watcher) pass(ctx context.Context, s Subscription) error {
	if s.All {
		if err := w.addNewTables(ctx, s); err != nil {
			return err
		}
	} else {
		// Tables created on the source that this replication does not list.
		_, err := w.wh.Exec(ctx, `UPDATE herd.replicate_drift SET state = 'reported',
				detail = 'created on the source; not replicated, this replication lists its tables',
				fix = format('replicate it with its own publication: herd replicate add --name NEW --tables %s (or use --all)', table_name)
			WHERE subscription = $1 AND kind = 'new_table' AND state = 'pending'`, s.Name)
		if err != nil {
			return fmt.Errorf("update herd.replicate_drift: %w", err)
		}
	}
	rows, _ := w.wh.Query(ctx, `SELECT id, table_name, detail, fix FROM herd.replicate_drift
		WHERE subscription = $1 AND state = 'reported' AND id > $2 ORDER BY id`, s.Name, w.lastDrift[s.Name])
	var id int64
	var table, detail, fix string
	_, err := pgx.ForEachRow(rows, []any{&id, &table, &detail, &fix}, func() error {
		w.cfg.Log.Warn("replicate: schema drift needs a decision", "name", s.Name, "table", table, "change", detail, "fix", fix)
		w.lastDrift[s.Name] = id
		return nil
	})
	if err != nil {
		return fmt.Errorf("read herd.replicate_drift: %w", err)
	}
	st, err := status(ctx, w.wh, s)
	if err != nil {
		return err
	}
	if st.Health != w.health[s.Name] {
		if st.Health == HealthOK {
			w.cfg.Log.Info("replicate: healthy", "name", s.Name)
		} else {
			w.cfg.Log.Warn("replicate: "+st.Health, "name", s.Name, "problem", st.Problem, "fix", st.Fix)
		}
		w.health[s.Name] = st.Health
	}
	return nil
}

// addNewTables adds tables of the source that are not yet published to an
// --all replication, when they pass the pre-flight; the others are reported
// once with the fix.
func (w *Watcher) addNewTables(ctx context.Context, s Subscription) error {
	src, err := connectSource(ctx, s.SourceURL)
	if err != nil {
		return err
	}
	defer src.Close(context.WithoutCancel(ctx))
	rows, _ := src.Query(ctx, `SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p' AND `+systemSchemaFilter+`
		  AND NOT EXISTS (SELECT FROM pg_publication_tables p WHERE p.pubname = $1
		                  AND p.schemaname = n.nspname AND p.tablename = c.relname)
		ORDER BY n.nspname, c.relname`, s.Name)
	oids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
	if err != nil {
		return fmt.Errorf("list new source tables: %w", err)
	}
	if len(oids) == 0 {
		return nil
	}
	tables, err := readTables(ctx, src, oids)
	if err != nil {
		return err
	}
	var super bool
	var version int
	var user string
	if err := src.QueryRow(ctx, "SELECT rolsuper, current_setting('server_version_num')::int, current_user FROM pg_roles WHERE rolname = current_user").Scan(&super, &version, &user); err != nil {
		return fmt.Errorf("read source role: %w", err)
	}
	var ok []table
	for _, t := range tables {
		var reasons, fixes []string
		for _, p := range preflightTable(t, super, user, version) {
			if p.Fatal {
				reasons, fixes = append(reasons, p.Message), append(fixes, p.Fix)
			}
		}
		if len(reasons) == 0 {
			ok = append(ok, t)
			continue
		}
		reason := strings.Join(reasons, "; ")
		if w.refused[t.String()] == reason {
			continue
		}
		w.refused[t.String()] = reason
		w.cfg.Log.Warn("replicate: new source table not added", "name", s.Name, "table", t.String(), "reason", reason, "fix", strings.Join(fixes, " "))
		_, err := w.wh.Exec(ctx, `INSERT INTO herd.replicate_drift (subscription, table_name, kind, detail, fix, state)
			VALUES ($1, format('%I.%I', $2::text, $3::text), 'new_table', $4, $5, 'reported')`,
			s.Name, t.Schema, t.Name, "not added: "+reason, strings.Join(fixes, " "))
		if err != nil {
			return fmt.Errorf("record drift for %s: %w", t, err)
		}
	}
	if len(ok) == 0 {
		return nil
	}
	err = pgx.BeginFunc(ctx, w.wh, func(tx pgx.Tx) error { return createTargets(ctx, tx, w.cfg.Log, w.cfg.AnalystsGroup, ok) })
	if err != nil {
		return err
	}
	var names, plain, schemas, rels []string
	for _, t := range ok {
		names = append(names, t.qualified())
		plain = append(plain, t.String())
		schemas, rels = append(schemas, t.Schema), append(rels, t.Name)
	}
	if _, err := src.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", quote(s.Name), strings.Join(names, ", "))); err != nil {
		return fmt.Errorf("add %v to publication %s: %w", plain, s.Name, err)
	}
	// Copies the new tables' existing rows, then streams them.
	if _, err := w.wh.Exec(ctx, fmt.Sprintf("ALTER SUBSCRIPTION %s REFRESH PUBLICATION WITH (copy_data = true)", quote(s.Name))); err != nil {
		return fmt.Errorf("refresh subscription %s for %v: %w", s.Name, plain, err)
	}
	_, err = w.wh.Exec(ctx, `UPDATE herd.replicate_drift SET state = 'applied', detail = 'created on the source; added to the replication'
		WHERE subscription = $1 AND kind = 'new_table' AND state = 'pending'
		  AND table_name IN (SELECT format('%I.%I', s, n) FROM unnest($2::text[], $3::text[]) u(s, n))`, s.Name, schemas, rels)
	if err != nil {
		return fmt.Errorf("update herd.replicate_drift: %w", err)
	}
	_, err = w.wh.Exec(ctx, `UPDATE herd.replicate_subscriptions SET tables = tables || $2::text[] WHERE name = $1`, s.Name, plain)
	if err != nil {
		return fmt.Errorf("update herd.replicate_subscriptions: %w", err)
	}
	w.added.Add(float64(len(ok)))
	w.cfg.Log.Info("replicate: added new source tables", "name", s.Name, "tables", plain)
	return nil
}
