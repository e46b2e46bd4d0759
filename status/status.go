// Package status gathers what an operator asks first about a running
// pipeline: how full the stream is, how far each consumer lags, when an event
// was last committed, and what was received and refused recently.
package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// TopReasons is how many reject reasons a report lists.
const TopReasons = 5

// Window is the recent period the report counts events and rejects over.
const Window = time.Hour

// Report is a snapshot of the pipeline.
type Report struct {
	At        time.Time
	Stream    StreamState
	Consumers []ConsumerState
	// LastReceived and LastLoaded are the newest received_at and loaded_at
	// in herd.events; zero when it is empty.
	LastReceived, LastLoaded time.Time
	Sources                  []SourceCounts
	Rejects                  Rejects
	// LastCheck is the newest herd check run (herd.check_runs); nil when
	// none has run.
	LastCheck *CheckRun
	// Connectors are the SaaS sources' sync states, one per object, from
	// every schema holding a sync_state table of the connectors' shape.
	Connectors []ConnectorState
}

// ConnectorState is one object of one SaaS connector (<schema>.sync_state).
type ConnectorState struct {
	Source, Object, Phase string
	// SyncedUntil: every change the source made before it is in the
	// warehouse; zero before the first incremental pass.
	SyncedUntil, LastSuccess time.Time
	LastError                string
}

// Lag is how stale the object can be at now: the age of SyncedUntil.
func (c ConnectorState) Lag(now time.Time) (time.Duration, bool) {
	if c.SyncedUntil.IsZero() {
		return 0, false
	}
	return now.Sub(c.SyncedUntil), true
}

// CheckRun is one stored herd check: how many source-hours it compared
// and how many differed, or why it failed.
type CheckRun struct {
	Finished     time.Time
	Since, Until time.Time
	Hours        int
	Differences  int
	Accepted     int64
	Events       int64
	Lake         *int64 // nil: the lake was not compared
	Error        string
}

// StreamState is the JetStream stream's depth against its limits.
type StreamState struct {
	Name               string
	Msgs, Bytes        uint64
	MaxBytes, MaxMsgs  int64 // -1: unlimited
	FirstSeq, LastSeq  uint64
	Consumers          int
	OldestMessageStamp time.Time
}

// ConsumerState is one consumer's backlog: Pending messages not yet
// delivered, AckPending delivered but not yet acknowledged.
type ConsumerState struct {
	Name                    string
	Filters                 []string
	Pending                 uint64
	AckPending, Redelivered int
	AckFloor, DeliveredSeq  uint64
	LastActive              time.Time // last delivery; zero if never
	Waiting                 int       // pull requests waiting
}

// SourceCounts is one source's events.
type SourceCounts struct {
	ID         int64
	Name       string
	LastWindow int64 // received within Window
	Total      int64
}

// Rejects counts refusals received within Window.
type Rejects struct {
	Total int64
	Top   []ReasonCount // the most frequent reasons, most first
}

// ReasonCount is a reject reason with the values that vary (numbers,
// quoted input) replaced, so that similar refusals count together.
type ReasonCount struct {
	Reason string
	Count  int64
}

// Gather reads the stream and consumers from JetStream and the counts from
// the warehouse. Either being unreachable is an error.
func Gather(ctx context.Context, db *pgxpool.Pool, js jetstream.JetStream, sc stream.Config, now time.Time) (*Report, error) {
	sc.Defaults()
	r := &Report{At: now}
	if err := r.gatherStream(ctx, js, sc); err != nil {
		return nil, err
	}
	if err := r.gatherWarehouse(ctx, db, now); err != nil {
		return nil, err
	}
	if err := r.gatherConnectors(ctx, db); err != nil {
		return nil, err
	}
	return r, nil
}

// gatherConnectors reads every <schema>.sync_state that has the columns
// the saas package's connectors keep (object, phase, synced_until,
// last_success_at, last_error).
func (r *Report) gatherConnectors(ctx context.Context, db *pgxpool.Pool) error {
	rows, err := db.Query(ctx, `SELECT table_schema FROM information_schema.columns
		WHERE table_name = 'sync_state' AND column_name IN ('object', 'phase', 'synced_until', 'last_success_at', 'last_error')
		GROUP BY table_schema HAVING count(*) = 5 ORDER BY table_schema`)
	if err != nil {
		return fmt.Errorf("find connectors' sync states: %w", err)
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("find connectors' sync states: %w", err)
	}
	for _, schema := range schemas {
		rows, err := db.Query(ctx, `SELECT object, phase, synced_until, last_success_at, coalesce(last_error, '')
			FROM `+pgx.Identifier{schema, "sync_state"}.Sanitize()+` ORDER BY object`)
		if err != nil {
			return fmt.Errorf("read %s.sync_state: %w", schema, err)
		}
		states, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ConnectorState, error) {
			c := ConnectorState{Source: schema}
			var until, success *time.Time
			err := row.Scan(&c.Object, &c.Phase, &until, &success, &c.LastError)
			if until != nil {
				c.SyncedUntil = *until
			}
			if success != nil {
				c.LastSuccess = *success
			}
			return c, err
		})
		if err != nil {
			return fmt.Errorf("read %s.sync_state: %w", schema, err)
		}
		r.Connectors = append(r.Connectors, states...)
	}
	return nil
}

func (r *Report) gatherStream(ctx context.Context, js jetstream.JetStream, sc stream.Config) error {
	s, err := js.Stream(ctx, sc.Name)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("stream %s does not exist: check --stream, or start herd first", sc.Name)
		}
		return fmt.Errorf("read stream %s: %w", sc.Name, err)
	}
	info := s.CachedInfo()
	r.Stream = StreamState{
		Name: info.Config.Name, Msgs: info.State.Msgs, Bytes: info.State.Bytes,
		MaxBytes: info.Config.MaxBytes, MaxMsgs: info.Config.MaxMsgs,
		FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq, Consumers: info.State.Consumers,
		OldestMessageStamp: info.State.FirstTime,
	}
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		c := ConsumerState{
			Name: ci.Name, Pending: ci.NumPending, AckPending: ci.NumAckPending, Redelivered: ci.NumRedelivered,
			AckFloor: ci.AckFloor.Stream, DeliveredSeq: ci.Delivered.Stream, Waiting: ci.NumWaiting,
		}
		if ci.Delivered.Last != nil {
			c.LastActive = *ci.Delivered.Last
		}
		c.Filters = append(c.Filters, ci.Config.FilterSubjects...)
		if ci.Config.FilterSubject != "" {
			c.Filters = append(c.Filters, ci.Config.FilterSubject)
		}
		r.Consumers = append(r.Consumers, c)
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("list consumers of %s: %w", sc.Name, err)
	}
	sort.Slice(r.Consumers, func(i, j int) bool { return r.Consumers[i].Name < r.Consumers[j].Name })
	return nil
}

// reasonClass folds the parts of a reason that vary with the input: quoted
// strings and numbers (sizes, depths, timestamps).
const reasonClass = `regexp_replace(regexp_replace(reason, '"([^"\\]|\\.)*"', '"…"', 'g'), '[0-9]+', 'N', 'g')`

func (r *Report) gatherWarehouse(ctx context.Context, db *pgxpool.Pool, now time.Time) error {
	since := now.Add(-Window)
	// One pass over herd.events: per source, the total, the recent count and
	// the newest times.
	rows, err := db.Query(ctx, `
		SELECT s.id, s.name, coalesce(e.recent, 0), coalesce(e.total, 0), e.last_received, e.last_loaded
		FROM herd.sources s
		FULL JOIN (
			SELECT source_id, count(*) FILTER (WHERE received_at >= $1) AS recent, count(*) AS total,
			       max(received_at) AS last_received, max(loaded_at) AS last_loaded
			FROM herd.events GROUP BY source_id
		) e ON e.source_id = s.id
		ORDER BY coalesce(e.total, 0) DESC, s.name`, since)
	if err != nil {
		return fmt.Errorf("count events per source: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id         *int64
			name       *string
			sc         SourceCounts
			recv, load *time.Time
		)
		if err := rows.Scan(&id, &name, &sc.LastWindow, &sc.Total, &recv, &load); err != nil {
			return fmt.Errorf("count events per source: %w", err)
		}
		if id != nil {
			sc.ID = *id
		}
		if name != nil {
			sc.Name = *name
		} else {
			sc.Name = "(unknown source)"
		}
		if recv != nil && recv.After(r.LastReceived) {
			r.LastReceived = *recv
		}
		if load != nil && load.After(r.LastLoaded) {
			r.LastLoaded = *load
		}
		r.Sources = append(r.Sources, sc)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("count events per source: %w", err)
	}

	if err := db.QueryRow(ctx, `SELECT count(*) FROM herd.rejects WHERE received_at >= $1`, since).Scan(&r.Rejects.Total); err != nil {
		return fmt.Errorf("count rejects: %w", err)
	}
	var c CheckRun
	var cerr *string
	err = db.QueryRow(ctx, `SELECT finished_at, since, until, hours, differences, accepted, events, lake, error
		FROM herd.check_runs ORDER BY id DESC LIMIT 1`).Scan(&c.Finished, &c.Since, &c.Until, &c.Hours, &c.Differences, &c.Accepted, &c.Events, &c.Lake, &cerr)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("read the last herd check: %w", err)
	default:
		if cerr != nil {
			c.Error = *cerr
		}
		r.LastCheck = &c
	}
	rows, err = db.Query(ctx, `SELECT `+reasonClass+` AS class, count(*) FROM herd.rejects
		WHERE received_at >= $1 GROUP BY class ORDER BY count(*) DESC, class LIMIT $2`, since, TopReasons)
	if err != nil {
		return fmt.Errorf("count rejects by reason: %w", err)
	}
	r.Rejects.Top, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (ReasonCount, error) {
		var rc ReasonCount
		err := row.Scan(&rc.Reason, &rc.Count)
		return rc, err
	})
	if err != nil {
		return fmt.Errorf("count rejects by reason: %w", err)
	}
	return nil
}

// Write prints the report for a terminal.
func (r *Report) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s := r.Stream
	fmt.Fprintf(tw, "stream %s\n", s.Name)
	fmt.Fprintf(tw, "  depth\t%d messages, %s of %s (%s)\n", s.Msgs, bytesString(int64(s.Bytes)), limitString(s.MaxBytes), percent(int64(s.Bytes), s.MaxBytes))
	if s.Msgs > 0 && !s.OldestMessageStamp.IsZero() {
		fmt.Fprintf(tw, "  oldest\t%s ago\n", since(r.At, s.OldestMessageStamp))
	}
	fmt.Fprintf(tw, "\nconsumers\n")
	if len(r.Consumers) == 0 {
		fmt.Fprintf(tw, "  none: nothing reads the stream (is a writer running?)\n")
	} else {
		fmt.Fprintf(tw, "  NAME\tPENDING\tACK PENDING\tREDELIVERED\tLAST DELIVERY\n")
		for _, c := range r.Consumers {
			last := "never"
			if !c.LastActive.IsZero() {
				last = since(r.At, c.LastActive) + " ago"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\n", c.Name, c.Pending, c.AckPending, c.Redelivered, last)
		}
	}
	fmt.Fprintf(tw, "\nwarehouse\n")
	if r.LastLoaded.IsZero() {
		fmt.Fprintf(tw, "  last commit\tnone: herd.events is empty\n")
	} else {
		fmt.Fprintf(tw, "  last commit\t%s (%s ago), event received %s\n", r.LastLoaded.UTC().Format(time.RFC3339), since(r.At, r.LastLoaded), r.LastReceived.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "\nevents by source\n  SOURCE\tLAST %s\tTOTAL\n", strings.ToUpper(hours(Window)))
	for _, sc := range r.Sources {
		fmt.Fprintf(tw, "  %s\t%d\t%d\n", sc.Name, sc.LastWindow, sc.Total)
	}
	fmt.Fprintf(tw, "\nrejects in the last %s: %d\n", hours(Window), r.Rejects.Total)
	for _, rc := range r.Rejects.Top {
		fmt.Fprintf(tw, "  %d\t%s\n", rc.Count, truncate(rc.Reason, 120))
	}
	if len(r.Connectors) > 0 {
		fmt.Fprintf(tw, "\nconnectors\n  SOURCE\tOBJECT\tPHASE\tLAG\tLAST SUCCESS\tLAST ERROR\n")
		for _, c := range r.Connectors {
			lag, last := "-", "never"
			if !c.SyncedUntil.IsZero() {
				lag = since(r.At, c.SyncedUntil)
			}
			if !c.LastSuccess.IsZero() {
				last = since(r.At, c.LastSuccess) + " ago"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", c.Source, c.Object, c.Phase, lag, last, truncate(c.LastError, 80))
		}
	}
	fmt.Fprintf(tw, "\nlast check\n")
	switch c := r.LastCheck; {
	case c == nil:
		fmt.Fprintf(tw, "  none yet (herd up runs one every 10 minutes; or run herd check)\n")
	case c.Error != "":
		fmt.Fprintf(tw, "  failed %s ago: %s\n", since(r.At, c.Finished), truncate(c.Error, 200))
	default:
		verdict := "stores agree"
		if c.Differences > 0 {
			verdict = fmt.Sprintf("%d of %d hours differ (run herd check for them)", c.Differences, c.Hours)
		}
		lake := "not compared"
		if c.Lake != nil {
			lake = fmt.Sprint(*c.Lake)
		}
		fmt.Fprintf(tw, "  %s ago, hours %s .. %s UTC: %s; accepted %d, postgres %d, lake %s\n", since(r.At, c.Finished),
			c.Since.UTC().Format("2006-01-02 15:00"), c.Until.UTC().Format("2006-01-02 15:00"), verdict, c.Accepted, c.Events, lake)
	}
	return tw.Flush()
}

func hours(d time.Duration) string {
	if d == time.Hour {
		return "hour"
	}
	return d.String()
}

func since(now, t time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func limitString(max int64) string {
	if max <= 0 {
		return "unlimited"
	}
	return bytesString(max)
}

func percent(n, max int64) string {
	if max <= 0 {
		return "no limit"
	}
	return fmt.Sprintf("%.1f%% full", 100*float64(n)/float64(max))
}

func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func truncate(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
