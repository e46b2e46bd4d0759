package console

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/analysts"
	"github.com/herdhq/herd/replicate"
	"github.com/herdhq/herd/rollups"
	"github.com/herdhq/herd/warehouse"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
)

// The operator endpoints run with herd's own privileges: they are for
// members of herd_admin only (auth(true, ...)).

type traceAccepted struct {
	At        time.Time `json:"at"`
	StreamSeq *int64    `json:"stream_seq"`
	Source    string    `json:"source"`
}

type traceLake struct {
	File      string `json:"file"`
	Partition string `json:"partition"`
}

type traceRejected struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	Source string    `json:"source"`
}

// trace finds one messageId: in the message-id ledger (source, day,
// stream sequence), its row in herd.events, its lake file, or its reject.
func (s *Server) trace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || len(id) > 512 {
		writeError(w, http.StatusBadRequest, "a messageId is 1 to 512 characters")
		return
	}
	ctx := r.Context()
	out := map[string]any{"messageId": id, "accepted": nil, "row": nil, "lake": nil, "rejected": nil}
	var sourceID int64
	var source string
	var day time.Time
	var seq *int64
	// The ledger's key is (source_id, message_id): one index probe per source.
	err := s.cfg.DB.QueryRow(ctx, `SELECT m.source_id, s.name, m.day, m.stream_seq FROM herd.message_ids m JOIN herd.sources s ON s.id = m.source_id
		WHERE m.source_id = ANY (SELECT id FROM herd.sources) AND m.message_id = $1 ORDER BY m.day DESC LIMIT 1`, id).Scan(&sourceID, &source, &day, &seq)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		s.fail(w, r, err)
		return
	}
	if err == nil {
		var row []byte
		var ts, received time.Time
		var rowSeq *int64
		err := s.cfg.DB.QueryRow(ctx, `SELECT to_jsonb(e), e."timestamp", e.received_at, e.stream_seq FROM herd.events e
			WHERE e.source_id = $1 AND e.message_id = $2
			  AND e."timestamp" >= ($3::date)::timestamp AT TIME ZONE 'UTC' AND e."timestamp" < ($3::date + 1)::timestamp AT TIME ZONE 'UTC'
			LIMIT 1`, sourceID, id, day).Scan(&row, &ts, &received, &rowSeq)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			s.fail(w, r, err)
			return
		}
		if seq == nil {
			seq = rowSeq
		}
		acc := traceAccepted{StreamSeq: seq, Source: source}
		if err == nil {
			out["row"] = json.RawMessage(row)
			acc.At = received.UTC()
			if s.cfg.Locate != nil && seq != nil {
				file, part, lerr := s.cfg.Locate(ctx, sourceID, ts, uint64(*seq))
				switch {
				case lerr == nil:
					out["lake"] = traceLake{File: file, Partition: part}
				case errors.Is(lerr, fs.ErrNotExist):
					out["lake_note"] = "not in the lake yet: the archiver writes a partition's events within minutes"
				default:
					out["lake_note"] = "could not read the lake: " + lerr.Error()
				}
			}
		}
		if acc.At.IsZero() && s.cfg.JS != nil && seq != nil {
			if st, err := s.cfg.JS.Stream(ctx, s.cfg.Stream.Name); err == nil {
				if m, err := st.GetMsg(ctx, uint64(*seq)); err == nil {
					acc.At = m.Time.UTC()
				}
			}
		}
		out["accepted"] = acc
	}
	var rej traceRejected
	err = s.cfg.DB.QueryRow(ctx, `SELECT r.received_at, r.reason, coalesce(s.name, '') FROM herd.rejects r
		LEFT JOIN herd.sources s ON s.id = r.source_id WHERE r.message_id = $1 ORDER BY r.id DESC LIMIT 1`, id).Scan(&rej.At, &rej.Reason, &rej.Source)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		s.fail(w, r, err)
		return
	}
	if err == nil {
		rej.At = rej.At.UTC()
		out["rejected"] = rej
	}
	writeJSON(w, http.StatusOK, out)
}

type minuteCount struct {
	Minute time.Time `json:"minute"`
	Source string    `json:"source"`
	Events int64     `json:"events"`
}

type consumerLag struct {
	Name       string   `json:"name"`
	Pending    uint64   `json:"pending"`
	AckPending int      `json:"ack_pending"`
	LagSeconds *float64 `json:"lag_seconds"`
}

type streamState struct {
	Messages  uint64        `json:"messages"`
	Bytes     uint64        `json:"bytes"`
	Consumers []consumerLag `json:"consumers"`
}

type reasonCount struct {
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// pipelineCache is how long a pipeline answer is reused: the per-minute
// counts read a day of events.
const pipelineCache = 10 * time.Second

// pipeline reports events per minute per source over the last 24 hours,
// the stream's depth and each consumer's lag, and rejects by reason.
func (s *Server) pipeline(w http.ResponseWriter, r *http.Request) {
	s.pipeMu.Lock()
	defer s.pipeMu.Unlock()
	if s.pipeCached != nil && time.Since(s.pipeAt) < pipelineCache {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(s.pipeCached)
		return
	}
	ctx := r.Context()
	perMinute := []minuteCount{}
	// The lower bound on "timestamp" lets Postgres skip old partitions; an
	// event received today with a much older event time is left out.
	rows, _ := s.cfg.DB.Query(ctx, `SELECT date_trunc('minute', e.received_at), coalesce(s.name, e.source_id::text), count(*)
		FROM herd.events e LEFT JOIN herd.sources s ON s.id = e.source_id
		WHERE e."timestamp" >= now() - interval '36 hours' AND e.received_at >= now() - interval '24 hours'
		GROUP BY 1, 2 ORDER BY 1, 2`)
	var m minuteCount
	if _, err := pgx.ForEachRow(rows, []any{&m.Minute, &m.Source, &m.Events}, func() error {
		m.Minute = m.Minute.UTC()
		perMinute = append(perMinute, m)
		return nil
	}); err != nil {
		s.fail(w, r, err)
		return
	}
	rejects := []reasonCount{}
	rows, _ = s.cfg.DB.Query(ctx, `SELECT reason, count(*) FROM herd.rejects WHERE received_at >= now() - interval '24 hours'
		GROUP BY reason ORDER BY 2 DESC, 1 LIMIT 100`)
	var rc reasonCount
	if _, err := pgx.ForEachRow(rows, []any{&rc.Reason, &rc.Count}, func() error {
		rejects = append(rejects, rc)
		return nil
	}); err != nil {
		s.fail(w, r, err)
		return
	}
	out := map[string]any{"per_minute": perMinute, "rejects": rejects, "stream": nil}
	if s.cfg.JS != nil {
		st, err := s.streamState(ctx)
		if err != nil {
			out["stream_error"] = err.Error()
		} else {
			out["stream"] = st
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.pipeCached, s.pipeAt = b, time.Now()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

func (s *Server) streamState(ctx context.Context) (*streamState, error) {
	st, err := s.cfg.JS.Stream(ctx, s.cfg.Stream.Name)
	if err != nil {
		return nil, err
	}
	info := st.CachedInfo()
	out := &streamState{Messages: info.State.Msgs, Bytes: info.State.Bytes, Consumers: []consumerLag{}}
	lister := st.ListConsumers(ctx)
	var infos []*jetstream.ConsumerInfo
	for ci := range lister.Info() {
		infos = append(infos, ci)
	}
	if err := lister.Err(); err != nil {
		return nil, err
	}
	now := time.Now()
	for _, ci := range infos {
		c := consumerLag{Name: ci.Name, Pending: ci.NumPending, AckPending: ci.NumAckPending}
		if ci.NumPending == 0 && ci.NumAckPending == 0 {
			zero := 0.0
			c.LagSeconds = &zero
		} else if m, err := st.GetMsg(ctx, ci.AckFloor.Stream+1); err == nil {
			// The oldest message it has not acknowledged.
			lag := now.Sub(m.Time).Seconds()
			c.LagSeconds = &lag
		}
		out.Consumers = append(out.Consumers, c)
	}
	sort.Slice(out.Consumers, func(i, j int) bool { return out.Consumers[i].Name < out.Consumers[j].Name })
	return out, nil
}

type rollupRun struct {
	Status     string    `json:"status"`
	Action     string    `json:"action"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS float64   `json:"duration_ms"`
	Error      *string   `json:"error"`
}

type rollupNode struct {
	Name      string     `json:"name"`
	Kind      string     `json:"kind"`
	Every     string     `json:"every"`
	DependsOn []string   `json:"depends_on"`
	LastRun   *rollupRun `json:"last_run"`
	BlockedBy *string    `json:"blocked_by"`
}

// rollups reports the rollup graph: each rollup's dependencies, latest
// run, and the failed rollup upstream that keeps it from refreshing.
func (s *Server) rollups(w http.ResponseWriter, r *http.Request) {
	sts, err := rollups.Statuses(r.Context(), s.cfg.DB)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	deps, err := rollups.Dependencies(r.Context(), s.cfg.DB)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	byName := map[string]rollups.Status{}
	for _, st := range sts {
		byName[st.Name] = st
	}
	blocked := map[string]*string{}
	var cause func(name string, seen map[string]bool) *string
	cause = func(name string, seen map[string]bool) *string {
		if c, ok := blocked[name]; ok {
			return c
		}
		if seen[name] {
			return nil
		}
		seen[name] = true
		var c *string
		for _, d := range deps[name] {
			if byName[d].LastStatus == "error" {
				n := d
				c = &n
				break
			}
			if up := cause(d, seen); up != nil {
				c = up
				break
			}
		}
		blocked[name] = c
		return c
	}
	out := make([]rollupNode, 0, len(sts))
	for _, st := range sts {
		n := rollupNode{Name: st.Name, Kind: string(st.Kind), DependsOn: deps[st.Name], BlockedBy: cause(st.Name, map[string]bool{})}
		if st.Every > 0 {
			n.Every = st.Every.String()
		}
		if n.DependsOn == nil {
			n.DependsOn = []string{}
		}
		if st.LastStatus != "" {
			lr := &rollupRun{Status: st.LastStatus, Action: st.LastAction, StartedAt: st.LastStarted.UTC(),
				DurationMS: float64(st.LastDuration.Microseconds()) / 1000}
			if st.LastError != "" {
				e := st.LastError
				lr.Error = &e
			}
			n.LastRun = lr
		}
		out = append(out, n)
	}
	writeJSON(w, http.StatusOK, map[string]any{"rollups": out})
}

// usage reports size per schema and query time per role (herd usage).
func (s *Server) usage(w http.ResponseWriter, r *http.Request) {
	u, err := analysts.Report(r.Context(), s.cfg.DB)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	type schemaSize struct {
		Name  string `json:"name"`
		Owner string `json:"owner"`
		Bytes int64  `json:"bytes"`
	}
	type roleTime struct {
		Role    string  `json:"role"`
		Calls   int64   `json:"calls"`
		TotalMS float64 `json:"total_ms"`
		MeanMS  float64 `json:"mean_ms"`
	}
	schemas := make([]schemaSize, 0, len(u.Schemas))
	for _, x := range u.Schemas {
		schemas = append(schemas, schemaSize{Name: x.Schema, Owner: x.Owner, Bytes: x.Bytes})
	}
	roles := make([]roleTime, 0, len(u.Queries))
	for _, x := range u.Queries {
		roles = append(roles, roleTime{Role: x.Role, Calls: x.Calls, TotalMS: x.TotalMS, MeanMS: x.MeanMS})
	}
	writeJSON(w, http.StatusOK, map[string]any{"schemas": schemas, "roles": roles, "note": u.Note})
}

// loaders reports logical replication and every SaaS connector's
// <schema>.sync_state.
func (s *Server) loaders(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	type repl struct {
		Name       string  `json:"name"`
		Mode       string  `json:"mode"`
		Enabled    bool    `json:"enabled"`
		Health     string  `json:"health"`
		LagBytes   int64   `json:"lag_bytes"`
		LagSeconds float64 `json:"lag_seconds"`
		Problem    string  `json:"problem,omitempty"`
		Fix        string  `json:"fix,omitempty"`
	}
	out := map[string]any{"replication": []repl{}, "saas": []any{}}
	sts, err := replicate.Status(ctx, s.cfg.DB, "")
	if err != nil {
		out["replication_error"] = err.Error()
	}
	rs := []repl{}
	for _, st := range sts {
		rs = append(rs, repl{Name: st.Name, Mode: st.Mode, Enabled: st.Enabled, Health: st.Health, LagBytes: st.LagBytes,
			LagSeconds: st.LagSeconds, Problem: st.Problem, Fix: st.Fix})
	}
	out["replication"] = rs
	saas, err := s.syncStates(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out["saas"] = saas
	writeJSON(w, http.StatusOK, out)
}

type saasState struct {
	Name       string            `json:"name"`
	LastSync   *time.Time        `json:"last_sync"`
	LagSeconds *float64          `json:"lag_seconds"`
	State      []json.RawMessage `json:"state"`
}

// syncStates reads every table named sync_state: one per connector
// schema (stripe, and those added later with the same table).
func (s *Server) syncStates(ctx context.Context) ([]saasState, error) {
	rows, _ := s.cfg.DB.Query(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = 'sync_state' AND c.relkind IN ('r', 'p', 'v') ORDER BY 1`)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := []saasState{}
	for _, n := range names {
		st := saasState{Name: n, State: []json.RawMessage{}}
		rows, _ := s.cfg.DB.Query(ctx, "SELECT to_jsonb(t) FROM "+pgx.Identifier{n, "sync_state"}.Sanitize()+" t LIMIT 1000")
		var j []byte
		_, err := pgx.ForEachRow(rows, []any{&j}, func() error {
			st.State = append(st.State, json.RawMessage(append([]byte(nil), j...)))
			var f struct {
				LastSuccessAt *time.Time `json:"last_success_at"`
				SyncedUntil   *time.Time `json:"synced_until"`
			}
			_ = json.Unmarshal(j, &f)
			last := f.LastSuccessAt
			if last == nil {
				last = f.SyncedUntil
			}
			if last != nil && (st.LastSync == nil || last.Before(*st.LastSync)) {
				// The connector is as fresh as its stalest object.
				t := last.UTC()
				st.LastSync = &t
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if st.LastSync != nil {
			lag := time.Since(*st.LastSync).Seconds()
			st.LagSeconds = &lag
		}
		out = append(out, st)
	}
	return out, nil
}

type sourceJSON struct {
	ID             int64     `json:"id"`
	Name           string    `json:"name"`
	Kind           string    `json:"kind"`
	AllowedOrigins []string  `json:"allowed_origins"`
	Revoked        bool      `json:"revoked"`
	RateLimit      *float64  `json:"rate_limit"`
	CreatedAt      time.Time `json:"created_at"`
	WriteKey       string    `json:"write_key,omitempty"`
}

func toSourceJSON(src herd.Source) sourceJSON {
	o := src.AllowedOrigins
	if o == nil {
		o = []string{}
	}
	return sourceJSON{ID: src.ID, Name: src.Name, Kind: src.Kind, AllowedOrigins: o, Revoked: src.Revoked, RateLimit: src.RateLimit, CreatedAt: src.CreatedAt.UTC()}
}

// listSources lists the sources without their write keys (a key is shown
// once, when the source is created).
func (s *Server) listSources(w http.ResponseWriter, r *http.Request) {
	srcs, err := warehouse.Sources(r.Context(), s.cfg.DB)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]sourceJSON, 0, len(srcs))
	for _, src := range srcs {
		out = append(out, toSourceJSON(src))
	}
	writeJSON(w, http.StatusOK, map[string]any{"sources": out})
}

func sourceError(err error) error {
	if errors.Is(err, herd.ErrInvalid) {
		return errorf(http.StatusBadRequest, "%s", err.Error())
	}
	if errors.Is(err, herd.ErrNotFound) {
		return errorf(http.StatusNotFound, "%s", err.Error())
	}
	return err
}

const maxSources = 1000

func (s *Server) createSource(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name           string   `json:"name"`
		Kind           string   `json:"kind"`
		AllowedOrigins []string `json:"allowed_origins"`
	}
	if err := readJSON(w, r, 16<<10, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 100 {
		writeError(w, http.StatusBadRequest, "a source needs a name of 1 to 100 characters")
		return
	}
	if len(req.AllowedOrigins) > 100 {
		writeError(w, http.StatusBadRequest, "at most 100 allowed origins")
		return
	}
	var n int
	if err := s.cfg.DB.QueryRow(r.Context(), "SELECT count(*) FROM herd.sources").Scan(&n); err != nil {
		s.fail(w, r, err)
		return
	}
	if n >= maxSources {
		writeError(w, http.StatusConflict, "herd has 1000 sources, the most the console creates: revoke and reuse one")
		return
	}
	src, err := warehouse.CreateSource(r.Context(), s.cfg.DB, herd.Source{Name: req.Name, Kind: req.Kind, AllowedOrigins: req.AllowedOrigins})
	if err != nil {
		s.fail(w, r, sourceError(err))
		return
	}
	s.log.Info("source created in the console", "source", src.Name, "by", sessionOf(r).user)
	j := toSourceJSON(src)
	j.WriteKey = src.WriteKey
	writeJSON(w, http.StatusCreated, j)
}

func (s *Server) revokeSource(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := warehouse.RevokeSource(r.Context(), s.cfg.DB, name); err != nil {
		s.fail(w, r, sourceError(err))
		return
	}
	s.log.Info("source revoked in the console", "source", name, "by", sessionOf(r).user)
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "revoked": true})
}

func (s *Server) sourceLimits(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req struct {
		RateLimit *float64 `json:"rate_limit"`
	}
	if err := readJSON(w, r, 1<<10, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.RateLimit != nil && (*req.RateLimit < 0 || *req.RateLimit > 1e9) {
		writeError(w, http.StatusBadRequest, "rate_limit: events per second, 0 (unlimited) to 1e9, or null for the collector's default")
		return
	}
	if err := warehouse.SetRateLimit(r.Context(), s.cfg.DB, name, req.RateLimit); err != nil {
		s.fail(w, r, sourceError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "rate_limit": req.RateLimit})
}
