package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/bench/internal/load"
)

// Report is everything a run measured; Figures is the summary the table shows.
type Report struct {
	Started time.Time         `json:"started"`
	TookS   float64           `json:"took_s"`
	Options map[string]any    `json:"options"`
	Machine Machine           `json:"machine"`
	Figures []Figure          `json:"figures"`
	Backlog Backlog           `json:"backlog"`
	Phases  map[string]*Phase `json:"phases"`
	Check   Check             `json:"check"`
	Memory  Memory            `json:"memory"`
	// VacuumBetweenS is the time spent vacuuming between phases (autovacuum
	// is off in the benchmark's cluster).
	VacuumBetweenS float64  `json:"vacuum_between_phases_s"`
	Profiles       []string `json:"profiles,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs     int    `json:"cpus"`
	Go       string `json:"go"`
	Postgres string `json:"postgres"`
}

// Backlog is the drain and its ceiling.
type Backlog struct {
	Events        int     `json:"events"`
	FrameEvents   int     `json:"events_per_message"`
	StreamBytes   uint64  `json:"stream_bytes"`
	PublishS      float64 `json:"publish_s"`
	PublishPerSec float64 `json:"publish_per_s"`
	FromStartS    float64 `json:"drain_from_process_start_s"`
	// DrainS runs from the first committed batch to the last row.
	DrainS float64 `json:"drain_s"`
	// RowsPerSec is the writer's steady state: the rate between the
	// moments the fractions SteadyFrom and SteadyTo of the backlog were
	// committed. WholeRowsPerSec is over DrainS.
	RowsPerSec      float64 `json:"drain_rows_per_s"`
	SteadyFrom      float64 `json:"drain_steady_from"`
	SteadyTo        float64 `json:"drain_steady_to"`
	WholeRowsPerSec float64 `json:"drain_whole_rows_per_s"`
	// Batches, MeanBatch and MeanCommitMs are the writer's, over the drain.
	Batches      int64   `json:"drain_batches"`
	MeanBatch    float64 `json:"drain_mean_batch_events"`
	MeanCommitMs float64 `json:"drain_mean_commit_ms"`
	// ArchiverYielding is the share of the drain (sampled every 200 ms) in
	// which herd up's archiver stood aside for the writer.
	ArchiverYielding float64 `json:"drain_archiver_yielding_share"`
	// Series is [seconds since the first committed batch, rows] every 250 ms.
	Series         [][2]float64 `json:"drain_series"`
	CopyS          float64      `json:"raw_copy_s"`
	CopyRowsPerSec float64      `json:"raw_copy_rows_per_s"`
}

// Phase is one measured stretch: the load (when there was any) and what the
// process under test and Postgres used meanwhile.
type Phase struct {
	Events             int64   `json:"events"`
	WallS              float64 `json:"wall_s"`
	CPUSeconds         float64 `json:"cpu_s"`
	Cores              float64 `json:"cores"`
	PeakRSSMB          float64 `json:"peak_rss_mb"`
	PostgresCPUSeconds float64 `json:"postgres_cpu_s"`
	PostgresCores      float64 `json:"postgres_cores"`
	LoadgenCPUSeconds  float64 `json:"loadgen_cpu_s,omitempty"`
	// FrameEvents is the collector's mean events per stream message over
	// the phase (herd_collector_frame_events).
	FrameEvents float64      `json:"mean_events_per_stream_message,omitempty"`
	Load        *load.Result `json:"load,omitempty"`
}

// merged is two phases of the same load taken together.
type merged struct {
	Events            int64
	WallS, LoadS      float64
	CPUSeconds        float64
	PostgresCPUSecond float64
}

func merge(ps ...*Phase) merged {
	var m merged
	for _, p := range ps {
		if p == nil {
			continue
		}
		m.Events += p.Events
		m.WallS += p.WallS
		m.CPUSeconds += p.CPUSeconds
		m.PostgresCPUSecond += p.PostgresCPUSeconds
		if p.Load != nil {
			m.LoadS += p.Load.ElapsedS
		}
	}
	return m
}

func latency(p *Phase) *load.Summary {
	if p == nil || p.Load == nil {
		return nil
	}
	return &p.Load.Latency
}

// Check compares what herd accepted with what Postgres holds at the end.
type Check struct {
	Accepted int64 `json:"accepted"`
	Rows     int64 `json:"rows"`
	Distinct int64 `json:"distinct_message_ids"`
}

// Figure is one row of the table.
type Figure struct {
	Key       string  `json:"key"`
	Name      string  `json:"name"`
	Value     float64 `json:"value"`
	Unit      string  `json:"unit"`
	Reference string  `json:"reference,omitempty"` // what Ratio divides by
	RefValue  float64 `json:"reference_value,omitempty"`
	Ratio     float64 `json:"ratio,omitempty"`
	Target    string  `json:"target,omitempty"`
	TargetMet *bool   `json:"target_met,omitempty"`
}

func newReport(o Options) *Report {
	return &Report{
		Started: time.Now().UTC(),
		Options: map[string]any{
			"backlog": o.Backlog, "phase_s": o.Phase.Seconds(), "rates": o.Rates,
			"single_conns": o.SingleConns, "batch_conns": o.BatchConns, "open_conns": o.OpenConns,
			"batch_size": o.BatchSize, "naive_pg_conns": o.NaiveConns, "writers": o.Writers, "batch_events": o.BatchEvents,
			"batch_wait_ms": o.BatchWait.Seconds() * 1000,
		},
		Machine: Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()},
		Phases:  map[string]*Phase{},
	}
}

// target is a bound a figure is compared with.
type target struct {
	atLeast bool
	v       float64
}

func (r *Report) add(key, name string, v float64, unit, ref string, refV float64, t *target) {
	f := Figure{Key: key, Name: name, Value: v, Unit: unit, Reference: ref, RefValue: refV}
	if refV > 0 {
		f.Ratio = v / refV
	}
	if t != nil {
		op := "≤"
		met := v <= t.v
		if t.atLeast {
			op, met = "≥", v >= t.v
		}
		f.Target = op + " " + num(t.v) + " " + unit
		if unit == "×" || unit == "%" {
			f.Target = op + " " + num(t.v) + unit
		}
		f.TargetMet = &met
	}
	r.Figures = append(r.Figures, f)
}

func atLeast(v float64) *target { return &target{atLeast: true, v: v} }
func atMost(v float64) *target  { return &target{v: v} }

// finish turns the phases into the table's figures.
func (r *Report) finish() {
	r.TookS = time.Since(r.Started).Seconds()
	ph := r.Phases
	rate := func(name string) float64 {
		if p := ph[name]; p != nil && p.Load != nil {
			return p.Load.EventsPerSec
		}
		return 0
	}
	bs := "?"
	if p := ph["batch"]; p != nil && p.Load != nil {
		bs = strconv.Itoa(p.Load.Batch)
	}
	for _, c := range []struct {
		name, label string
		target      float64
	}{
		{"single", "closed loop, 1-event requests", 30000},
		{"batch", "closed loop, " + bs + "-event batches", 60000},
	} {
		herdR, naiveR := rate(c.name), rate("naive_"+c.name)
		r.add(c.name+"_events_per_s", c.label+": accepted", herdR, "events/s", "naive, same load", naiveR, atLeast(c.target))
		if c.name == "single" && naiveR > 0 {
			r.add("single_vs_naive", c.label+": herd ÷ naive", herdR/naiveR, "×", "", 0, atLeast(10))
		}
		if l := latency(ph[c.name]); l != nil {
			nl := latency(ph["naive_"+c.name])
			if nl == nil {
				nl = &load.Summary{}
			}
			r.add(c.name+"_reply_p50_ms", c.label+": reply p50", l.P50, "ms", "naive, same load", nl.P50, nil)
			r.add(c.name+"_reply_p99_ms", c.label+": reply p99", l.P99, "ms", "naive, same load", nl.P99, nil)
		}
		if p := ph[c.name]; p != nil && p.FrameEvents > 0 {
			r.add(c.name+"_events_per_message", c.label+": events per stream message (collector's frames)", p.FrameEvents, "events", "", 0, nil)
		}
		off := merge(ph[c.name+noEnrich+"_a"], ph[c.name+noEnrich+"_b"])
		if off.WallS == 0 {
			continue
		}
		offR := float64(off.Events) / off.WallS
		if off.LoadS > 0 {
			offR = float64(off.Events) / off.LoadS
		}
		r.add(c.name+"_noenrich_events_per_s", c.label+", herd up --enrich=false: accepted", offR, "events/s", "", 0, nil)
		if offR > 0 {
			r.add(c.name+"_enrich_on_off", c.label+": enrichment on ÷ off", 100*herdR/offR, "%", "", 0, atLeast(85))
		}
		if p := ph[c.name]; p != nil && p.Events > 0 && off.Events > 0 {
			r.add(c.name+"_noenrich_cpu_us_per_event", c.label+", herd up --enrich=false: CPU per event", 1e6*off.CPUSeconds/float64(off.Events), "µs",
				"enrichment on", 1e6*p.CPUSeconds/float64(p.Events), nil)
		}
	}
	bl := r.Backlog
	r.add("drain_rows_per_s", fmt.Sprintf("backlog drain of %s events into Postgres, steady state (%.0f–%.0f%% of rows)", num(float64(bl.Events)), 100*bl.SteadyFrom, 100*bl.SteadyTo),
		bl.RowsPerSec, "rows/s", "raw COPY, same rows", bl.CopyRowsPerSec, nil)
	if bl.CopyRowsPerSec > 0 {
		r.add("drain_vs_copy", "backlog drain ÷ raw COPY", 100*bl.RowsPerSec/bl.CopyRowsPerSec, "%", "", 0, atLeast(80))
	}
	r.add("drain_whole_rows_per_s", fmt.Sprintf("backlog drain, first batch to last row (%d batches, mean %s events, %.1f ms to commit)",
		bl.Batches, num(bl.MeanBatch), bl.MeanCommitMs), bl.WholeRowsPerSec, "rows/s", "", 0, nil)
	r.add("drain_archiver_yielding", "backlog drain: share of it with the archiver standing aside for the writer", 100*bl.ArchiverYielding, "%", "", 0, nil)
	r.add("copy_rows_per_s", "ceiling: raw COPY, "+num(float64(bl.Events))+" rows", bl.CopyRowsPerSec, "rows/s", "", 0, nil)
	r.add("publish_per_s", fmt.Sprintf("JetStream: backlog published (async, frames of %d events)", bl.FrameEvents), bl.PublishPerSec, "events/s", "", 0, nil)
	// herd up's CPU per event and peak RSS in every phase it ran, with
	// the targets of a small server: ≤ 35 µs per single event, ≤ 15 µs per
	// event in batches, ≤ 250 MB at any load.
	for _, name := range []string{"single", "batch", "drain"} {
		if p := ph[name]; p != nil {
			r.cpuFigures(name, p, atMost(herdRSSTarget))
		}
	}
	for _, name := range []string{"single_noenrich_a", "batch_noenrich_a", "single_noenrich_b", "batch_noenrich_b"} {
		if p := ph[name]; p != nil {
			r.add(name+"_peak_rss_mb", name+": herd up peak RSS", p.PeakRSSMB, "MB", "", 0, atMost(herdRSSTarget))
		}
	}
	r.memoryFigures(ph)
	for _, key := range sortedOpen(ph) {
		p := ph[key]
		l := p.Load
		lbl := "open loop " + num(l.OfferedRate) + "/s: "
		is := func(x float64) bool { return l.OfferedRate == x }
		var p99t, r2rt *target
		if is(10000) {
			p99t, r2rt = atMost(10), atMost(100)
		}
		r.add(key+"_events_per_s", lbl+"accepted", l.EventsPerSec, "events/s", "offered", l.OfferedRate, nil)
		// naive's latencies at the same rate, where the run took them
		var nref string
		var nl load.Summary
		if n := ph["naive_"+key]; n != nil && n.Load != nil {
			nref, nl = "naive, same rate", n.Load.Latency
		}
		r.add(key+"_reply_p50_ms", lbl+"reply p50", l.Latency.P50, "ms", nref, nl.P50, nil)
		if p99t != nil {
			r.add(key+"_reply_p99_ms", lbl+"reply p99", l.Latency.P99, "ms", tgtRef(p99t), tgtVal(p99t), p99t)
		} else {
			r.add(key+"_reply_p99_ms", lbl+"reply p99", l.Latency.P99, "ms", nref, nl.P99, nil)
		}
		r.add(key+"_reply_p999_ms", lbl+"reply p99.9", l.Latency.P999, "ms", nref, nl.P999, nil)
		if p.FrameEvents > 0 {
			r.add(key+"_events_per_message", lbl+"events per stream message", p.FrameEvents, "events", "", 0, nil)
		}
		if l.ReplyToRow != nil {
			r.add(key+"_row_p50_ms", lbl+"reply-to-row p50", l.ReplyToRow.P50, "ms", "", 0, nil)
			r.add(key+"_row_p99_ms", lbl+"reply-to-row p99 ("+strconv.Itoa(l.ReplyToRow.Count)+" sampled)", l.ReplyToRow.P99, "ms", tgtRef(r2rt), tgtVal(r2rt), r2rt)
		}
		r.cpuFigures(key, p, atMost(herdRSSTarget))
	}
	for key, p := range ph {
		if !strings.HasPrefix(key, "split") || p.Load == nil {
			continue
		}
		l := p.Load
		lbl := "collector alone (herd collect), open loop " + num(l.OfferedRate) + "/s: "
		r.add(key+"_events_per_s", lbl+"accepted", l.EventsPerSec, "events/s", "offered", l.OfferedRate, nil)
		r.add(key+"_reply_p99_ms", lbl+"reply p99", l.Latency.P99, "ms", "", 0, nil)
		if l.ReplyToRow != nil {
			r.add(key+"_row_p99_ms", lbl+"reply-to-row p99", l.ReplyToRow.P99, "ms", "", 0, nil)
		}
		var rsst *target
		if l.OfferedRate == 20000 {
			rsst = atMost(150)
		}
		r.cpuFigures(key, p, rsst)
		if w := ph[key+"_writer_nats"]; w != nil {
			r.cpuFigures(key+"_writer_nats", w, nil)
		}
	}
	for _, name := range []string{"naive_single", "naive_batch"} {
		if p := ph[name]; p != nil {
			r.cpuFigures(name, p, nil)
		}
	}
	r.add("lost_events", "accepted events missing from Postgres at the end", float64(r.Check.Accepted-r.Check.Distinct), "events", "", 0, atMost(0))
	r.add("duplicate_rows", "rows in Postgres beyond one per event at the end", float64(r.Check.Rows-r.Check.Distinct), "rows", "", 0, atMost(0))
}

// herdRSSTarget is herd up's peak resident memory at any offered load, in
// MB; herdIdleTarget its resident memory idle.
const (
	herdRSSTarget  = 250
	herdIdleTarget = 60
)

// cpuTargets are herd up's CPU per event targets, by phase: half of what
// it used when they were set.
var cpuTargets = map[string]*target{"single": atMost(35), "batch": atMost(15)}

// memoryFigures adds herd up's largest peak over every phase, its idle
// resident memory and the phase under a cgroup memory limit.
func (r *Report) memoryFigures(ph map[string]*Phase) {
	peak, where := 0.0, ""
	for name, p := range ph {
		// herd up's phases only: not naive's, herd collect's, or raw_copy
		// (herdbench's own process).
		if strings.HasPrefix(name, "naive") || strings.HasPrefix(name, "split") || name == "raw_copy" || strings.HasSuffix(name, "_writer_nats") {
			continue
		}
		if p.PeakRSSMB > peak {
			peak, where = p.PeakRSSMB, name
		}
	}
	r.add("herd_peak_rss_mb", "herd up peak RSS, largest of every phase ("+where+")", peak, "MB", "", 0, atMost(herdRSSTarget))
	r.add("herd_idle_rss_mb", "herd up idle RSS (5 s after start)", r.Memory.IdleRSSMB, "MB", "", 0, atMost(herdIdleTarget))
	c := r.Memory.Cgroup
	if c == nil {
		return
	}
	r.add("cgroup_oom_kills", fmt.Sprintf("cgroup MemoryMax=%.0fM, batch closed loop at %s events/s: OOM kills", c.LimitMB, num(c.EventsPerS)), float64(c.OOMKills), "kills", "", 0, atMost(0))
	r.add("cgroup_peak_mb", "cgroup MemoryMax: peak memory of herd up's cgroup", c.PeakMB, "MB", "", 0, atMost(c.LimitMB))
	alive := 0.0
	if !c.Survived {
		alive = 1
	}
	r.add("cgroup_died", "cgroup MemoryMax: herd up died (1) or survived (0)", alive, "", "", 0, atMost(0))
}

func tgtRef(t *target) string {
	if t == nil {
		return ""
	}
	return "target"
}

func tgtVal(t *target) float64 {
	if t == nil {
		return 0
	}
	return t.v
}

// cpuFigures adds what the process under test used in a phase.
func (r *Report) cpuFigures(name string, p *Phase, rss *target) {
	who := "herd up"
	switch {
	case strings.HasPrefix(name, "naive"):
		who = "naive"
	case strings.HasSuffix(name, "_writer_nats"):
		who = "herd up (NATS, writer, archiver)"
	case strings.HasPrefix(name, "split"):
		who = "herd collect"
	}
	r.add(name+"_cores", name+": "+who+" CPU (Postgres beside it: "+fmt.Sprintf("%.2f", p.PostgresCores)+" cores)", p.Cores, "cores", "", 0, nil)
	if p.Events > 0 {
		r.add(name+"_cpu_us_per_event", name+": "+who+" CPU per event", 1e6*p.CPUSeconds/float64(p.Events), "µs", "", 0, cpuTargets[name])
	}
	r.add(name+"_peak_rss_mb", name+": "+who+" peak RSS", p.PeakRSSMB, "MB", tgtRef(rss), tgtVal(rss), rss)
}

func sortedOpen(ph map[string]*Phase) []string {
	var keys []string
	for k, p := range ph {
		if strings.HasPrefix(k, "open") && p.Load != nil {
			keys = append(keys, k)
		}
	}
	// by offered rate
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && ph[keys[j]].Load.OfferedRate < ph[keys[j-1]].Load.OfferedRate; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// num formats a figure for people: thousands separated, few decimals.
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	a := math.Abs(v)
	switch {
	case a >= 1000:
		s := strconv.FormatInt(int64(math.Round(a)), 10)
		var b strings.Builder
		if v < 0 {
			b.WriteByte('-')
		}
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a == 0:
		return "0"
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// Markdown writes the figures as one table.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "herd benchmark, %s, %d CPUs, %s; backlog %s events, %.0f s per phase, run took %.0f s\n\n",
		r.Started.Format(time.RFC3339), r.Machine.CPUs, pgShort(r.Machine.Postgres), num(float64(r.Backlog.Events)), r.Options["phase_s"], r.TookS)
	b.WriteString("| figure | value | compared with | ratio | target |\n|---|---:|---|---:|---|\n")
	for _, f := range r.Figures {
		ref, ratio := "", ""
		if f.Reference != "" {
			ref = f.Reference + " " + num(f.RefValue) + " " + f.Unit
		}
		if f.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f×", f.Ratio)
		}
		tgt := f.Target
		if f.TargetMet != nil {
			if *f.TargetMet {
				tgt += " ✓"
			} else {
				tgt += " ✗"
			}
		}
		val := num(f.Value) + " " + f.Unit
		if f.Unit == "×" || f.Unit == "%" {
			val = num(f.Value) + f.Unit
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", f.Name, val, ref, ratio, tgt)
	}
	if r.Memory.Skipped != "" {
		fmt.Fprintf(&b, "\nThe phase under a cgroup memory limit of %d MB did not run: %s.\n", cgroupLimit>>20, r.Memory.Skipped)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func pgShort(v string) string {
	f := strings.Fields(v)
	if len(f) >= 2 {
		return f[0] + " " + f[1]
	}
	return v
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the report to %s: %w", path, err)
	}
	return nil
}
