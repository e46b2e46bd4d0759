package replicate

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// With --all, a table created on the source later is added by the watcher
// (copied, then streamed); one without a primary key is refused with the
// fix. The Prometheus collector shows the tables and lag.
func TestWatchAddsNewTablesAndMetrics(t *testing.T) {
	t.Parallel()
	p := newPair(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	exec(t, p.src, `CREATE TABLE first (id int PRIMARY KEY); INSERT INTO first SELECT generate_series(1, 10)`)
	group := uniqueGroup()
	if err := Add(ctx, p.wh, Config{SourceURL: p.srcURL, All: true, AnalystsGroup: group}); err != nil {
		t.Fatalf("add --all: %v", err)
	}
	exec(t, p.src, `CREATE TABLE later (id int PRIMARY KEY, v text); INSERT INTO later SELECT g, 'v' || g FROM generate_series(1, 50) g;
		CREATE TABLE nokey (a int)`)

	reg := prometheus.NewRegistry()
	w, err := NewWatcher(p.wh, WatchConfig{Registerer: reg, AnalystsGroup: group})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Once(ctx); err != nil {
		t.Fatalf("watch: %v", err)
	}
	if err := waitCopied(ctx, p.wh, "herd", nil, &syncBuffer{}, time.Second); err != nil {
		t.Fatal(err)
	}
	exec(t, p.src, "INSERT INTO later VALUES (51, 'streamed')")
	requireEqual(t, p, "herd", 2)
	if n := queryInt(t, p.wh, "SELECT count(*) FROM later"); n != 51 {
		t.Errorf("warehouse has %d rows of the new table, want 51", n)
	}
	if n, err := countAs(t, p.wh, group, "public.later"); err != nil || n != 51 {
		t.Errorf("a member of the analysts group reads %d rows of the new table: %v; want 51", n, err)
	}
	sts, err := Status(ctx, p.wh, "herd")
	if err != nil {
		t.Fatal(err)
	}
	var refused string
	for _, d := range sts[0].Drift {
		if d.Table == "public.nokey" && d.State == "reported" {
			refused = d.Detail + " | " + d.Fix
		}
	}
	if !strings.Contains(refused, `ALTER TABLE "public"."nokey" ADD COLUMN id`) {
		t.Errorf("nokey not reported with its fix; drift: %+v", sts[0].Drift)
	}

	reg.MustRegister(NewCollector(p.wh, nil))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]*dto.Metric{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.Metric
	}
	if ms := got["herd_replicate_table_ready"]; len(ms) != 3 { // first, later, the DDL log
		t.Errorf("herd_replicate_table_ready has %d series, want 3", len(ms))
	}
	for _, name := range []string{"herd_replicate_lag_bytes", "herd_replicate_healthy", "herd_replicate_slot_lost", "herd_replicate_apply_errors_total", "herd_replicate_watch_tables_added_total"} {
		if len(got[name]) == 0 {
			t.Errorf("metric %s missing", name)
		}
	}
	if ms := got["herd_replicate_watch_tables_added_total"]; len(ms) == 1 && ms[0].GetCounter().GetValue() != 1 {
		t.Errorf("tables added = %v, want 1", ms[0].GetCounter().GetValue())
	}
	if ms := got["herd_replicate_slot_lost"]; len(ms) == 1 && ms[0].GetGauge().GetValue() != 0 {
		t.Error("slot reported lost on a healthy replication")
	}
}
