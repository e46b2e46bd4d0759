package check

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

const hourFormat = "2006-01-02 15:00"

// Write prints the differing hours, one a line, then the notes and a
// summary.
func (r *Result) Write(w io.Writer) error {
	fmt.Fprintf(w, "herd check: %d source(s), event hours %s .. %s UTC, %s\n", r.Sources,
		r.Since.Format(hourFormat), r.Until.Format(hourFormat), r.floorLine())
	if r.Differences > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SOURCE\tHOUR (UTC)\tACCEPTED\tPOSTGRES\tLAKE\tREJECTS\t")
		for _, h := range r.Hours {
			if !h.Differs() {
				continue
			}
			name := h.Name
			if name == "" {
				name = "#" + strconv.FormatInt(h.Source, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", name, h.Hour.Format(hourFormat), count(h.Accepted), h.Events, count(h.Lake), h.Rejects, h.what())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	lake := "not compared"
	if r.LakeCompared {
		lake = strconv.FormatInt(r.Lake, 10)
	}
	verdict := "stores agree"
	if r.Differences > 0 {
		verdict = fmt.Sprintf("%d of %d hours differ", r.Differences, len(r.Hours))
	}
	_, err := fmt.Fprintf(w, "%s: accepted %d, postgres %d, lake %s, rejects %d over %d source-hours\n",
		verdict, r.Accepted, r.Events, lake, r.Rejects, len(r.Hours))
	return err
}

func (r *Result) floorLine() string {
	if r.Floor == NoFloor {
		return "every event (no stream floor)"
	}
	s := fmt.Sprintf("events up to stream sequence %d (writer acked %d", r.Floor, r.WriterFloor)
	if r.LakeCompared {
		s += fmt.Sprintf(", archiver %d", r.LakeFloor)
	}
	s += ")"
	if r.StreamLast > r.Floor {
		s += fmt.Sprintf("; %d later messages in flight, left for the next check", r.StreamLast-r.Floor)
	}
	return s
}

func count(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}

// what says in words how the hour differs.
func (h Hour) what() string {
	ref, of := h.Accepted, "accepted"
	if ref < 0 {
		ref, of = h.Events, "postgres"
	}
	s := ""
	add := func(store string, n int64) {
		switch {
		case n < ref:
			s += fmt.Sprintf("%s misses %d; ", store, ref-n)
		case n > ref:
			s += fmt.Sprintf("%s has %d more than %s; ", store, n-ref, of)
		}
	}
	if of == "accepted" {
		add("postgres", h.Events)
	}
	if h.Lake >= 0 && h.LakeOpen && h.Lake > ref {
		// Copies compaction will drop: not a difference by themselves.
	} else if h.Lake >= 0 {
		add("lake", h.Lake)
	}
	if len(s) > 2 {
		s = s[:len(s)-2]
	}
	return s
}

// maxStoredHours bounds the differing hours a stored run keeps.
const maxStoredHours = 100

// keepRuns is how many runs herd.check_runs keeps.
const keepRuns = 1000

type storedHour struct {
	Source   int64  `json:"source"`
	Name     string `json:"name"`
	Hour     string `json:"hour"`
	Accepted int64  `json:"accepted"`
	Events   int64  `json:"postgres"`
	Lake     int64  `json:"lake"`
	Rejects  int64  `json:"rejects"`
}

// Record stores the run in herd.check_runs (runErr a run that failed) and
// deletes all but the newest keepRuns runs.
func Record(ctx context.Context, db *pgxpool.Pool, r *Result, runErr error) error {
	report := struct {
		Differing []storedHour `json:"differing"`
		Truncated int          `json:"truncated,omitempty"`
		Notes     []string     `json:"notes,omitempty"`
	}{Differing: []storedHour{}}
	var errText *string
	if runErr != nil {
		s := runErr.Error()
		errText = &s
	}
	if r == nil {
		r = &Result{Started: time.Now(), Finished: time.Now()}
	}
	for _, h := range r.Hours {
		if !h.Differs() {
			continue
		}
		if len(report.Differing) == maxStoredHours {
			report.Truncated++
			continue
		}
		report.Differing = append(report.Differing, storedHour{h.Source, h.Name, h.Hour.Format(time.RFC3339), h.Accepted, h.Events, h.Lake, h.Rejects})
	}
	report.Notes = r.Notes
	b, err := json.Marshal(report)
	if err != nil {
		return err
	}
	var lake *int64
	if r.LakeCompared {
		lake = &r.Lake
	}
	floor := int64(-1)
	if r.Floor != NoFloor {
		floor = int64(r.Floor)
	}
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO herd.check_runs (started_at, finished_at, since, until, stream_floor, hours, differences, accepted, events, lake, rejects, report, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			r.Started, r.Finished, r.Since, r.Until, floor, len(r.Hours), r.Differences, r.Accepted, r.Events, lake, r.Rejects, b, errText); err != nil {
			return fmt.Errorf("record the check in herd.check_runs: %w", err)
		}
		_, err := tx.Exec(ctx, `DELETE FROM herd.check_runs WHERE id <= (SELECT id FROM herd.check_runs ORDER BY id DESC OFFSET $1 LIMIT 1)`, keepRuns)
		return err
	})
}

// Metrics are the last run's result, for alerting.
type Metrics struct {
	differences prometheus.Gauge
	lastRun     prometheus.Gauge
	duration    prometheus.Gauge
	events      *prometheus.GaugeVec
	runs        *prometheus.CounterVec
}

// NewMetrics registers the check's metrics on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		differences: prometheus.NewGauge(prometheus.GaugeOpts{Name: "herd_check_differences",
			Help: "Source-hours on which the last completed herd check found the stores (accepted, herd.events, lake) disagreeing; alert when above 0."}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{Name: "herd_check_last_run_timestamp_seconds",
			Help: "When the last herd check completed (Unix time); alert when it stops advancing."}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{Name: "herd_check_duration_seconds",
			Help: "How long the last completed herd check took."}),
		events: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "herd_check_events",
			Help: "Events each store held over the last check's hours (store: accepted, postgres, lake, rejects)."}, []string{"store"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herd_check_runs_total",
			Help: "herd check runs by result: equal, differ, failed."}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.differences, m.lastRun, m.duration, m.events, m.runs)
	}
	return m
}

// Observe records a run's result (runErr a run that failed).
func (m *Metrics) Observe(r *Result, runErr error) {
	if runErr != nil || r == nil {
		m.runs.WithLabelValues("failed").Inc()
		return
	}
	result := "equal"
	if r.Differences > 0 {
		result = "differ"
	}
	m.runs.WithLabelValues(result).Inc()
	m.differences.Set(float64(r.Differences))
	m.lastRun.Set(float64(r.Finished.Unix()))
	m.duration.Set(r.Finished.Sub(r.Started).Seconds())
	m.events.WithLabelValues("accepted").Set(float64(r.Accepted))
	m.events.WithLabelValues("postgres").Set(float64(r.Events))
	if r.LakeCompared {
		m.events.WithLabelValues("lake").Set(float64(r.Lake))
	}
	m.events.WithLabelValues("rejects").Set(float64(r.Rejects))
}

// Scheduler runs the check every Every over the last Config.Since, records
// each run and exports it as metrics.
type Scheduler struct {
	DB      *pgxpool.Pool
	JS      jetstream.JetStream
	Lake    LakeCounter
	Config  Config
	Every   time.Duration // default 10 minutes
	Metrics *Metrics
	Log     *slog.Logger
}

// Run checks until ctx ends; a failed check is logged and tried again at
// the next tick.
func (s *Scheduler) Run(ctx context.Context) error {
	every := s.Every
	if every <= 0 {
		every = 10 * time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.once(ctx)
	}
}

func (s *Scheduler) once(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	r, err := Check(cctx, s.DB, s.JS, s.Lake, s.Config)
	if ctx.Err() != nil {
		return
	}
	s.Metrics.Observe(r, err)
	if rerr := Record(cctx, s.DB, r, err); rerr != nil {
		s.Log.Warn("record herd check", "err", rerr)
	}
	switch {
	case err != nil:
		s.Log.Error("herd check failed; it runs again at the next tick", "err", err)
	case r.Differences > 0:
		s.Log.Error("herd check: stores differ; run 'herd check' for the hours", "differences", r.Differences, "hours", len(r.Hours),
			"accepted", r.Accepted, "postgres", r.Events, "lake", r.Lake)
	default:
		s.Log.Info("herd check: stores agree", "hours", len(r.Hours), "accepted", r.Accepted)
	}
}
