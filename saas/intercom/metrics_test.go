package intercom

import (
	"context"
	"math"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func testCounter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// After a pass, every table has a sync_state row in the incremental phase
// with synced_until, and the lag and the newest change's age are exported.
func TestLagReported(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.seed(20, 5)
	h.fake.ticketsOn = true // before any request: no lock needed
	h.fake.addTicket()
	h.sync()
	rows, _ := h.db.Query(context.Background(), `SELECT object FROM intercom.sync_state WHERE phase = 'incremental' AND synced_until IS NOT NULL AND last_error IS NULL`)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(objects) {
		t.Errorf("sync_state rows up to date: %v, want one per table (%d)", got, len(objects))
	}
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			for _, l := range m.GetLabel() {
				if l.GetName() == "object" || l.GetName() == "code" {
					values[mf.GetName()+"/"+l.GetValue()] = v
				}
			}
			values[mf.GetName()] += v
		}
	}
	for _, name := range []string{"herd_saas_lag_seconds", "herd_saas_newest_change_age_seconds"} {
		if v, ok := values[name]; !ok || math.IsNaN(v) || v < 0 {
			t.Errorf("%s = %v (exported %v), want a finite age", name, v, ok)
		}
	}
	if values["herd_intercom_rows_written_total/conversation_parts"] == 0 || values["herd_intercom_api_requests_total/200"] == 0 {
		t.Errorf("rows written or requests not counted: %v", values)
	}
}
