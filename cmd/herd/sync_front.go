package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/herdhq/herd/internal/secrets"
	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/saas/front"
	"github.com/herdhq/herd/saas/front/fronthook"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// frontFlags configure the Front connector. The API token comes from
// $FRONT_API_TOKEN or a 0600 file, never from a flag that ps would show.
type frontFlags struct {
	tokenFile string
	apiBase   string
	rate      float64
	lookback  time.Duration
	interval  time.Duration
}

func (f *frontFlags) bind(fs *flag.FlagSet, up bool) {
	p := ""
	if up {
		// herd up has many flags: Front's carry its name.
		p = "front-"
		fs.DurationVar(&f.interval, "front-interval", time.Minute, "time between Front sync passes")
	}
	fs.StringVar(&f.tokenFile, p+"token-file", "", "file (mode 0600) holding the Front API token; default $FRONT_API_TOKEN")
	fs.Float64Var(&f.rate, p+"rate", 0.8, "Front API requests per second at most (Front allows 50/min on Starter, 100 on Professional, 200 on Enterprise, per company)")
	fs.DurationVar(&f.lookback, p+"lookback", 5*time.Minute, "how far before the cursor each pass reads Front's events feed again, for events that appear late")
	fs.StringVar(&f.apiBase, "front-api-base", front.DefaultAPIBase, "Front API base URL (tests and proxies point it elsewhere; the token is sent only there)")
}

func (f *frontFlags) missing() string {
	if f.tokenFile != "" || os.Getenv("FRONT_API_TOKEN") != "" {
		return ""
	}
	return "$FRONT_API_TOKEN or --token-file (in herd up: --front-token-file)"
}

func (f *frontFlags) every() time.Duration { return f.interval }

func (f *frontFlags) open(db *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) (saas.Connector, error) {
	token := os.Getenv("FRONT_API_TOKEN")
	if f.tokenFile != "" {
		t, err := secrets.Read(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("Front token file: %w", err)
		}
		token = t
	}
	return front.New(front.Config{
		Token:    token,
		APIBase:  f.apiBase,
		Limits:   saas.Limits{RequestsPerSecond: f.rate},
		Lookback: f.lookback,
	}, db, log, reg)
}

func init() {
	registerConnector(&connector{
		name:  "front",
		title: "Front",
		syncHelp: `The first run backfills teams, teammates, inboxes, tags, accounts, contacts
and conversations, each conversation with every message and comment, into
tables under the front schema, logging progress per object; interrupted, it
resumes at the page it had reached. Later passes read Front's events feed
from a cursor kept in front.sync_state (less --lookback) and refetch each
conversation an event names, whole; contacts updated since the last pass are
read too, and accounts and contacts are listed whole every hour to find the
ones deleted or merged away.

The token is an API token from Front's Settings > Developers, with read
access: $FRONT_API_TOKEN, or --token-file naming a file of mode 0600.`,
		checkHelp: `Lists every object in Front, every message and comment of every conversation
included, and compares it with its table: counts, ids Front has that the
warehouse lacks (missing), ids the warehouse has that Front no longer lists
(extra), and objects whose stored copy differs (changed). This reads the
whole company: at Front's rate limits, expect minutes for thousands of
conversations.`,
		newFlags:   func() connectorFlags { return &frontFlags{} },
		webhookEnv: "FRONT_APP_SECRET",
		verifier: func(secrets []string) func([]byte, func(string) string, time.Time) (string, error) {
			v := &fronthook.Verifier{Secrets: secrets, Tolerance: fronthook.DefaultTolerance}
			return v.Verify
		},
		handshake: func(secrets []string) func([]byte, func(string) string, time.Time) ([]byte, bool) {
			v := &fronthook.Verifier{Secrets: secrets, Tolerance: fronthook.DefaultTolerance}
			return v.Handshake
		},
	})
}
