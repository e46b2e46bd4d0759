package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats.go"
)

// EraseSubject is the NATS subject on which a running archiver takes
// erase requests (RequestErase): "<prefix>.archive.erase". It is outside
// the stream's subjects.
func EraseSubject(sc stream.Config) string {
	sc.Defaults()
	return sc.Prefix + ".archive.erase"
}

// EraseRequest names the events to erase: those whose user id or anonymous
// id is one of IDs, in the given sources (empty: every source).
type EraseRequest struct {
	IDs     []string `json:"ids"`
	Sources []int64  `json:"sources,omitempty"`
}

// eraseReply is an archiver's answer to an EraseRequest.
type eraseReply struct {
	Lake      string      `json:"lake"`
	Files     int         `json:"files"`
	Rewritten int         `json:"rewritten"`
	Removed   int64       `json:"removed"`
	Hours     []hourCount `json:"hours,omitempty"`
	Error     string      `json:"error,omitempty"`
}

type hourCount struct {
	Source int64     `json:"source"`
	Hour   time.Time `json:"hour"`
	Rows   int64     `json:"rows"`
}

// MatchIDs selects the events whose user id or anonymous id is one of ids.
func MatchIDs(ids []string) func(e *herd.Event) bool {
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return func(e *herd.Event) bool {
		return (e.UserID != "" && set[e.UserID]) || (e.AnonymousID != "" && set[e.AnonymousID])
	}
}

// ErrNoArchiver is RequestErase's error when no archiver listens on the
// erase subject: none runs, and the lake may be erased directly (Erase).
var ErrNoArchiver = errors.New("no archiver answers erase requests")

// RequestErase asks the running archiver to erase the events of req from
// its lake, between its own writes, and returns what it removed and the
// lake it erased (its String). timeout bounds the whole erasure: the
// archiver reads every file of the selected sources.
func RequestErase(ctx context.Context, nc *nats.Conn, sc stream.Config, req EraseRequest, timeout time.Duration) (EraseResult, string, error) {
	res := EraseResult{ByHour: map[HourKey]int64{}}
	b, err := json.Marshal(req)
	if err != nil {
		return res, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, EraseSubject(sc), b)
	if errors.Is(err, nats.ErrNoResponders) {
		return res, "", ErrNoArchiver
	}
	if err != nil {
		return res, "", fmt.Errorf("ask the archiver to erase (subject %s): %w; the archiver may still be erasing: run the same request again once it is done", EraseSubject(sc), err)
	}
	var rep eraseReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return res, "", fmt.Errorf("read the archiver's erase reply: %w", err)
	}
	res.Files, res.Rewritten, res.Removed = rep.Files, rep.Rewritten, rep.Removed
	for _, h := range rep.Hours {
		res.ByHour[HourKey{SourceID: h.Source, Hour: h.Hour.UTC()}] += h.Rows
	}
	if rep.Error != "" {
		return res, rep.Lake, fmt.Errorf("the archiver's erasure of %s failed: %s", rep.Lake, rep.Error)
	}
	return res, rep.Lake, nil
}

// serveErase runs an erase request inside Run's loop, so that nothing the
// archiver holds in memory goes stale behind its back: its open files are
// stored first (the person's buffered events are erased with the rest),
// then the lake is erased, then every partition's state is forgotten and
// read again from the rewritten manifests on its next use.
func (a *Archiver) serveErase(ctx context.Context, m *nats.Msg) error {
	var req EraseRequest
	rep := eraseReply{Lake: a.lake.String()}
	respond := func() {
		b, _ := json.Marshal(rep)
		if err := m.Respond(b); err != nil {
			a.log.Warn("answer an erase request", "err", err)
		}
	}
	if err := json.Unmarshal(m.Data, &req); err != nil || len(req.IDs) == 0 || slices.Contains(req.IDs, "") {
		rep.Error = "malformed erase request: want JSON {\"ids\": [non-empty ids], \"sources\": [ids]}"
		respond()
		return nil
	}
	start := time.Now()
	if err := a.flushAll(ctx); err != nil {
		return err // the archiver stops; the requester times out and retries
	}
	a.parts = map[partition]*partState{}
	res, err := erase(ctx, a.lake, EraseOptions{
		Sources: req.Sources, Match: MatchIDs(req.IDs),
		// Keep what the archiver holds (fetched, not yet handled) from
		// redelivery while a long erasure runs.
		Progress: func(EraseProgress) { a.touch(time.Now()) },
	}, a.cfg.Stream.Name, a.log)
	rep.Files, rep.Rewritten, rep.Removed = res.Files, res.Rewritten, res.Removed
	for k, n := range res.ByHour {
		rep.Hours = append(rep.Hours, hourCount{Source: k.SourceID, Hour: k.Hour, Rows: n})
	}
	if err != nil {
		rep.Error = err.Error()
		a.m.errors.WithLabelValues(opErase).Inc()
	}
	a.m.erased.Add(float64(res.Removed))
	a.log.Info("erased a person's events from the lake on request", "files", res.Files, "rewritten", res.Rewritten,
		"rows_removed", res.Removed, "took", time.Since(start).Round(time.Millisecond), "err", err)
	respond()
	return nil
}
