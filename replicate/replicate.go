// Package replicate loads an application's Postgres database into the
// warehouse, either by native logical replication (a publication on the
// source, a subscription on the warehouse, orchestrated with pgx) or, for
// servers that cannot publish, through postgres_fdw foreign tables.
//
// It checks the source before touching it (Preflight), creates everything
// (Add), keeps the warehouse in step with schema changes on the source
// (the DDL log trigger and Watcher), reports health (Status, Collector),
// compares the two sides (Check), and recovers lost slots or broken tables
// (Resync). In FDW mode, Refresh re-imports foreign tables after a source
// migration and rebuilds the views that depend on them.
package replicate

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/herdhq/herd/schemas"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Modes of Config.Mode.
const (
	ModeLogical = "logical"
	ModeFDW     = "fdw"
)

// Config describes one replication from a source database into the
// warehouse. The zero value plus SourceURL and a table choice works.
type Config struct {
	// Name names the publication, subscription, slot and FDW server. One
	// source database is one name. Default "herd".
	Name string
	// SourceURL is the app database, as herd reaches it.
	SourceURL string
	// SourceURLFromWarehouse is the app database as the warehouse server
	// reaches it (the subscription connects from there), when that differs,
	// for example across Docker networks. Default SourceURL.
	SourceURLFromWarehouse string
	// Tables to replicate, "table" or "schema.table". Unqualified names are
	// resolved with the source's search_path.
	Tables []string
	// All replicates every ordinary and partitioned table of the source's
	// non-system schemas, and tables created later (the watcher adds them).
	All bool
	// IntoSchema: in logical mode Postgres matches tables by their
	// schema-qualified name, so target tables keep their source schema; a
	// different IntoSchema is refused. In FDW mode it is the schema the
	// foreign tables are imported into (default "app").
	IntoSchema string
	// Mode is ModeLogical (default) or ModeFDW.
	Mode string
	// Progress receives initial-copy progress lines. Default io.Discard.
	Progress io.Writer
	// ProgressEvery is how often progress is printed. Default 2s.
	ProgressEvery time.Duration
	// CopyTimeout bounds the wait for the initial copy. Default: none
	// (the context decides).
	CopyTimeout time.Duration
	// Log receives what herd did. Default: discard.
	Log *slog.Logger
	// AnalystsGroup is the role analysts are members of; it gets USAGE on
	// the target schemas and SELECT on the tables herd creates or imports
	// (created NOLOGIN when missing). Default: the warehouse database's
	// analysts group, analysts.GroupName(database), as herd analysts add
	// uses.
	AnalystsGroup string
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "herd"
	}
	if c.Mode == "" {
		c.Mode = ModeLogical
	}
	if c.SourceURLFromWarehouse == "" {
		c.SourceURLFromWarehouse = c.SourceURL
	}
	if c.Mode == ModeFDW && c.IntoSchema == "" {
		c.IntoSchema = "app"
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 2 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

var nameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`)

func (c Config) validate() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("replication name %q: want lower-case letters, digits and _ (it names a replication slot)", c.Name)
	}
	if c.SourceURL == "" {
		return fmt.Errorf("no source: set --from postgres://user@app-db:5432/app")
	}
	if c.Mode != ModeLogical && c.Mode != ModeFDW {
		return fmt.Errorf("mode %q: want %q or %q", c.Mode, ModeLogical, ModeFDW)
	}
	if c.All == (len(c.Tables) > 0) {
		return fmt.Errorf("choose the tables: --tables a,b or --all (not both)")
	}
	return validGroup(c.AnalystsGroup)
}

// quote quotes a possibly schema-qualified name given as parts.
func quote(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// literal quotes a string as an SQL literal, for the few statements
// (CREATE SUBSCRIPTION ... CONNECTION, OPTIONS) that take no parameters.
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// ensureSchema applies replicate's own migrations (0100-0199) so that Add
// works on a warehouse where 'herd migrate' has not run yet. They are
// written to be applied more than once.
func ensureSchema(ctx context.Context, wh *pgxpool.Pool) error {
	ms, err := schemas.Migrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Version < 100 || m.Version > 199 {
			continue
		}
		if _, err := wh.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("apply migration %04d_%s to the warehouse: %w", m.Version, m.Name, err)
		}
	}
	return upgradeApplyDDL(ctx, wh)
}

// Subscription is herd's record of one replication.
type Subscription struct {
	Name       string
	Mode       string
	SourceURL  string
	IntoSchema string
	Tables     []string
	All        bool
}

// Subscriptions lists the replications recorded on the warehouse.
func Subscriptions(ctx context.Context, wh *pgxpool.Pool) ([]Subscription, error) {
	if err := ensureSchema(ctx, wh); err != nil {
		return nil, err
	}
	rows, _ := wh.Query(ctx, `SELECT name, mode, source_url, into_schema, tables, all_tables
		FROM herd.replicate_subscriptions ORDER BY name`)
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscription, error) {
		var s Subscription
		err := r.Scan(&s.Name, &s.Mode, &s.SourceURL, &s.IntoSchema, &s.Tables, &s.All)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("read herd.replicate_subscriptions: %w", err)
	}
	return subs, nil
}

// subscription returns the record called name, or the only one when name
// is empty.
func subscription(ctx context.Context, wh *pgxpool.Pool, name string) (Subscription, error) {
	subs, err := Subscriptions(ctx, wh)
	if err != nil {
		return Subscription{}, err
	}
	for _, s := range subs {
		if s.Name == name || (name == "" && len(subs) == 1) {
			return s, nil
		}
	}
	if name == "" {
		return Subscription{}, fmt.Errorf("%d replications on the warehouse: name one (--name)", len(subs))
	}
	return Subscription{}, fmt.Errorf("no replication named %q on the warehouse (run herd replicate add)", name)
}

// connectSource opens one connection to the source with session settings
// that make text output comparable between servers.
func connectSource(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse source URL: %w", err)
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "herd replicate"
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to source %s@%s:%d/%s: %w", cfg.User, cfg.Host, cfg.Port, cfg.Database, err)
	}
	return conn, nil
}
