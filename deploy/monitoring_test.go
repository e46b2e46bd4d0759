package deploy

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

const (
	rulesFile     = "prometheus/herd-rules.yml"
	dashboardFile = "grafana/herd.json"
)

// query is one PromQL expression of the monitoring files and where it is.
type query struct {
	where, expr string
}

// ruleQueries loads the alerting rules with Prometheus's own rule parser,
// which also parses every expression and template, and returns them.
func ruleQueries(t *testing.T) []query {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.LegacyValidation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatal(joinErrors(errs))
	}
	var qs []query
	for _, g := range groups.Groups {
		if len(g.Rules) == 0 {
			t.Errorf("%s: group %s has no rules", rulesFile, g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("%s: group %s holds a recording rule %s; this file is for alerts", rulesFile, g.Name, r.Record)
				continue
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: alert %s has no %s annotation: say what is wrong and what to do", rulesFile, r.Alert, a)
				}
			}
			if r.Labels["severity"] == "" {
				t.Errorf("%s: alert %s has no severity label", rulesFile, r.Alert)
			}
			qs = append(qs, query{where: "alert " + r.Alert, expr: r.Expr})
		}
	}
	return qs
}

func joinErrors(errs []error) string {
	s := make([]string, len(errs))
	for i, e := range errs {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// grafanaVars are the dashboard variables Grafana fills before a query
// reaches Prometheus, with a value that parses.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// dashboardQueries returns every panel target of the dashboard, rows'
// panels included.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title       string  `json:"title"`
		Type        string  `json:"type"`
		Description string  `json:"description"`
		Panels      []panel `json:"panels"`
		Targets     []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var d struct {
		Title  string  `json:"title"`
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("%s: no title or uid", dashboardFile)
	}
	var qs []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
			}
			if strings.TrimSpace(p.Description) == "" {
				t.Errorf("%s: panel %q has no description saying what it shows", dashboardFile, p.Title)
			}
			for _, tg := range p.Targets {
				qs = append(qs, query{where: fmt.Sprintf("panel %q", p.Title), expr: grafanaVars.Replace(tg.Expr)})
			}
		}
	}
	walk(d.Panels)
	return qs
}

// metricNames parses expr and returns the metric names its selectors read.
func metricNames(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			names = append(names, "{"+vs.String()+"} (a selector without a metric name)")
			return nil
		}
		names = append(names, name)
		return nil
	})
	return names, nil
}

// exportedNames turns what herd registered and gathered into the names a
// query may use: a histogram's _bucket, _sum and _count series, a
// summary's _sum and _count.
func exportedNames(described map[string]bool, gathered []*dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for n := range described {
		names[n] = true
	}
	for _, mf := range gathered {
		n := mf.GetName()
		names[n] = true
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[n+"_sum"], names[n+"_count"] = true, true
		}
	}
	return names
}

// unexported returns a line for every metric a query reads that herd does
// not export.
func unexported(qs []query, exported map[string]bool) []string {
	var bad []string
	for _, q := range qs {
		names, err := metricNames(q.expr)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %s: %v", q.where, q.expr, err))
			continue
		}
		if len(names) == 0 {
			bad = append(bad, fmt.Sprintf("%s: %s reads no metric", q.where, q.expr))
		}
		for _, n := range names {
			if !exported[n] {
				bad = append(bad, fmt.Sprintf("%s reads %s, which herd does not export", q.where, n))
			}
		}
	}
	return bad
}

// usedMetrics returns the metric names the rules and the dashboard read,
// histogram series under their histogram's name.
func usedMetrics(t *testing.T, qs []query) []string {
	t.Helper()
	set := map[string]bool{}
	for _, q := range qs {
		names, err := metricNames(q.expr)
		if err != nil {
			t.Fatalf("%s: %v", q.where, err)
		}
		for _, n := range names {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if strings.HasSuffix(n, "_seconds"+suf) {
					n = strings.TrimSuffix(n, suf)
				}
			}
			set[n] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func monitoringQueries(t *testing.T) []query {
	t.Helper()
	return append(ruleQueries(t), dashboardQueries(t)...)
}

// TestMonitoringFilesUseExportedMetrics parses the alerting rules with
// Prometheus's rule parser and every PromQL query of the rules and the
// dashboard with its PromQL parser, and checks each metric they read
// against what herd's components register and export when they run: a
// renamed or misspelt metric fails here, not silently in Grafana.
func TestMonitoringFilesUseExportedMetrics(t *testing.T) {
	qs := monitoringQueries(t)
	if len(qs) < 20 {
		t.Fatalf("%d queries in the rules and dashboard; the files were not read", len(qs))
	}
	rig := startRig(t)
	rig.smallLoad(t)
	exported := exportedNames(rig.rec.described(), rig.gather(t))

	// The check itself must be able to fail: a query on a name herd does
	// not export is reported.
	if bad := unexported([]query{{"self-check", `rate(herd_collector_no_such_thing_total[5m]) + herd_writer_rows_total`}}, exported); len(bad) != 1 || !strings.Contains(bad[0], "herd_collector_no_such_thing_total") {
		t.Fatalf("a made-up metric name was not reported: %v", bad)
	}
	for _, b := range unexported(qs, exported) {
		t.Error(b)
	}
	// Every name the files use is one herd's own packages declare.
	for _, n := range usedMetrics(t, qs) {
		if !strings.HasPrefix(n, "herd_") {
			t.Errorf("%s: not a herd metric; the files monitor herd", n)
		}
	}
	if !slices.Contains(usedMetrics(t, qs), "herd_archive_buffered_events") {
		t.Error("the dashboard does not show herd_archive_buffered_events")
	}
}
