package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/herdhq/herd/internal/secrets"
	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/saas/intercom"
	"github.com/herdhq/herd/saas/intercom/intercomhook"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// intercomFlags configure the Intercom connector. The access token comes
// from $INTERCOM_ACCESS_TOKEN or a 0600 file, never from a flag's value.
type intercomFlags struct {
	tokenFile string
	apiBase   string
	rate      float64
	interval  time.Duration
	lookback  time.Duration
	sweep     time.Duration
	parallel  int
}

func (f *intercomFlags) bind(fs *flag.FlagSet, up bool) {
	prefix := ""
	if up {
		// herd up has many flags: Intercom's carry its name.
		prefix = "intercom-"
		fs.DurationVar(&f.interval, "intercom-interval", time.Minute, "time between Intercom sync passes")
	}
	fs.StringVar(&f.tokenFile, prefix+"token-file", "", "file (mode 0600) holding the Intercom access token (default: $INTERCOM_ACCESS_TOKEN)")
	fs.Float64Var(&f.rate, prefix+"rate", 20, "Intercom API requests per second at most")
	fs.DurationVar(&f.lookback, prefix+"lookback", 10*time.Minute, "how far before the last pass each incremental pass searches again")
	fs.DurationVar(&f.sweep, prefix+"sweep-every", 0, "how often every contact and conversation is listed to find deleted and merged ones; 0: every pass (at most once a minute) while a listing costs under a tenth of --rate, else as often as that tenth allows (100,000 contacts: 667 requests, every 5.6 min at 20/s)")
	fs.IntVar(&f.parallel, prefix+"concurrency", 4, "conversations fetched from Intercom at once")
	fs.StringVar(&f.apiBase, "intercom-api-base", intercom.DefaultAPIBase, "Intercom API base URL (https://api.eu.intercom.io or api.au.intercom.io for those regions; tests point it at a fake)")
}

func (f *intercomFlags) token() (string, error) {
	if f.tokenFile != "" {
		t, err := secrets.Read(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("Intercom token file: %w", err)
		}
		return t, nil
	}
	return os.Getenv("INTERCOM_ACCESS_TOKEN"), nil
}

func (f *intercomFlags) missing() string {
	if f.tokenFile != "" || os.Getenv("INTERCOM_ACCESS_TOKEN") != "" {
		return ""
	}
	return "$INTERCOM_ACCESS_TOKEN or --intercom-token-file"
}

func (f *intercomFlags) every() time.Duration { return f.interval }

func (f *intercomFlags) open(db *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) (saas.Connector, error) {
	tok, err := f.token()
	if err != nil {
		return nil, err
	}
	return intercom.New(intercom.Config{
		Token:       tok,
		APIBase:     f.apiBase,
		Limits:      saas.Limits{RequestsPerSecond: f.rate},
		Lookback:    f.lookback,
		SweepEvery:  f.sweep,
		Concurrency: f.parallel,
	}, db, log, reg)
}

func init() {
	registerConnector(&connector{
		name:  "intercom",
		title: "Intercom",
		syncHelp: `The first run backfills admins, teams, tags, segments, companies, contacts,
tickets (where the workspace has them) and conversations, each conversation fetched whole so that its parts are in
intercom.conversation_parts (at most 500 a conversation: the API returns no
more; parts_total holds the real count), logging progress per object (rows,
rate, ETA).
An interrupted backfill resumes at the page it had reached. Later passes
search contacts and conversations by updated_at from the last pass less
--lookback (contacts from the start of that day: their search compares
days), list the small objects and companies whole, and list every contact
and conversation id to mark deleted the ones Intercom no longer has (deleted,
or leads merged into users): by default every pass, at most once a minute,
while that listing costs under a tenth of --rate, less often for larger
workspaces (--sweep-every sets a fixed interval). The state is in intercom.sync_state.`,
		checkHelp: `Lists every object in Intercom and compares it with its table: counts, ids
Intercom has that the warehouse lacks (missing), ids the warehouse has that
Intercom no longer lists (extra), and objects whose stored copy differs
(changed). Conversation parts are compared too, which costs one request per
conversation. The contacts, conversations and tickets that differ are queued in
intercom.refetch; the next pass (herd sync intercom --once, or herd up's
loop) fetches them again and replaces their rows.`,
		repairHint: "the differing contacts, conversations and tickets are queued in intercom.refetch: run 'herd sync intercom --once' to fetch them again and replace their rows, then check again",
		newFlags:   func() connectorFlags { return &intercomFlags{} },
		webhookEnv: "INTERCOM_CLIENT_SECRET",
		verifier: func(secrets []string) func([]byte, func(string) string, time.Time) (string, error) {
			v := &intercomhook.Verifier{Secrets: secrets, Tolerance: intercomhook.DefaultTolerance}
			return v.Verify
		},
	})
}
