package harness

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgcluster"
)

// TestRunTiny runs the whole benchmark at toy size: it proves that every
// piece (build, cluster, backlog, drain, COPY, load phases, baseline, report)
// works, not how fast anything is.
func TestRunTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("builds herd and starts Postgres")
	}
	if _, err := pgcluster.FindBinDir(); err != nil {
		t.Skipf("no PostgreSQL server binaries: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var logs bytes.Buffer
	dir := t.TempDir()
	rep, err := Run(ctx, Options{
		WorkDir: filepath.Join(dir, "work"), Backlog: 500, Phase: 700 * time.Millisecond,
		Rates: []float64{300}, SingleConns: 4, BatchConns: 2, OpenConns: 8, BatchSize: 10, NaiveConns: 2,
		ProfileDir: filepath.Join(dir, "prof"),
		Log:        testLogger(t, &logs),
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	if rep.Check.Rows != rep.Check.Accepted || rep.Check.Distinct != rep.Check.Rows {
		t.Errorf("accepted %d events; Postgres holds %d rows, %d distinct", rep.Check.Accepted, rep.Check.Rows, rep.Check.Distinct)
	}
	for _, key := range []string{"single_events_per_s", "batch_events_per_s", "single_reply_p99_ms", "batch_reply_p50_ms", "single_enrich_on_off", "batch_noenrich_events_per_s", "drain_rows_per_s", "copy_rows_per_s", "open300_row_p99_ms", "split300_peak_rss_mb"} {
		var found bool
		for _, f := range rep.Figures {
			if f.Key == key {
				found = true
				if f.Value <= 0 {
					t.Errorf("figure %s is %v", key, f.Value)
				}
			}
		}
		if !found {
			t.Errorf("no figure %s", key)
		}
	}
	if p := rep.Phases["naive_single"]; p == nil || p.Load == nil || p.Load.Events == 0 {
		t.Errorf("the naive baseline accepted nothing: %+v", p)
	}
	if len(rep.Profiles) == 0 {
		t.Error("no CPU profiles written")
	}
	var md bytes.Buffer
	if err := rep.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| figure | value |") {
		t.Errorf("table missing its header:\n%s", md.String())
	}
	if err := rep.WriteJSON(filepath.Join(dir, "report.json")); err != nil {
		t.Fatal(err)
	}
}
