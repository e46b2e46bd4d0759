package archive

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// GapsName is the lake-level file listing the ranges of stream sequences
// whose events the archiver may have missed (the stream trimmed them
// before it had them), until a repair fills them.
const GapsName = "_gaps.json"

// GapList is the content of GapsName.
type GapList struct {
	Stream  string            `json:"stream"`
	Ranges  []stream.SeqRange `json:"ranges"`
	Updated time.Time         `json:"updated"`
}

// ReadGaps returns the lake's unrepaired gaps.
func ReadGaps(ctx context.Context, lake Lake) (GapList, error) {
	var g GapList
	b, err := lake.Get(ctx, GapsName)
	if errors.Is(err, fs.ErrNotExist) {
		return g, nil
	}
	if err != nil {
		return g, err
	}
	if err := json.Unmarshal(b, &g); err != nil {
		return g, fmt.Errorf("parse %s: %w", GapsName, err)
	}
	return g, nil
}

func writeGaps(ctx context.Context, lake Lake, g GapList) error {
	if len(g.Ranges) == 0 {
		return lake.Delete(ctx, GapsName)
	}
	g.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(g, "", " ")
	if err != nil {
		return err
	}
	return lake.Put(ctx, GapsName, b)
}

// takeGaps moves the gaps Trim recorded for the archiver's consumer into
// the lake (GapsName): from there a repair fills them, whether or not this
// process has Postgres. It returns how many ranges it took.
func (a *Archiver) takeGaps(ctx context.Context) (int, error) {
	rs, done, err := stream.TakeGaps(ctx, a.js, a.cfg.Stream, a.cfg.Consumer)
	if err != nil || len(rs) == 0 {
		return 0, err
	}
	g, err := ReadGaps(ctx, a.lake)
	if err != nil {
		return 0, err
	}
	g.Stream = a.cfg.Stream.Name
	g.Ranges = stream.MergeRanges(append(g.Ranges, rs...), 0)
	if err := writeGaps(ctx, a.lake, g); err != nil {
		return 0, err
	}
	for _, r := range rs {
		a.m.gaps.Inc()
		a.log.Error("the stream trimmed events before the archiver had them; the lake has a gap until it is repaired from the stream or herd.events",
			"first_seq", r.First, "last_seq", r.Last, "recorded_in", GapsName, "repair", "herd up repairs it; else herd archive repair --database-url")
	}
	return len(rs), done(ctx)
}

// RepairOptions configures Repair.
type RepairOptions struct {
	Stream stream.Config
	// Window is the archiver's Config.Window: it places an event in its
	// hour's directory or its month's bucket.
	Window time.Duration
	// CloseAfter: a repaired partition that closed (its span ended this
	// long ago) is compacted again at once. Zero: DefaultCloseAfter;
	// negative: not compacted (the archiver does it on its schedule).
	CloseAfter time.Duration
	// ChunkSeqs bounds the stream sequences repaired at once (memory);
	// default 20,000.
	ChunkSeqs uint64
	Log       *slog.Logger
}

// RepairResult says what a repair did.
type RepairResult struct {
	Ranges int
	// Rows added to the lake, by where they were found.
	FromStream, FromPostgres int64
	Partitions               int // partitions that got rows
}

// repairer fills gaps; the archiver sets the hooks so that it never writes
// a partition behind the back of its own state.
type repairer struct {
	lake Lake
	js   jetstream.JetStream
	db   *pgxpool.Pool
	opt  RepairOptions
	m    *metrics
	// before runs before a partition is changed; after, once it was.
	before func(context.Context, partition) error
	after  func(partition)
}

// Repair fills the lake's recorded gaps (GapsName): for each range of
// stream sequences, the events the stream still holds (provenance
// "stream"), otherwise those herd.events holds (provenance "postgres"),
// that the lake's partitions lack, go into a file of their own in each
// partition. A filled range is removed from the list. Run it while no
// archiver writes the lake (herd up and `herd archive --database-url`
// repair on their own). js may be nil (Postgres only).
//
// It refuses (*ErrArchiverRunning) while an archiver's lease on the lake is
// fresh.
func Repair(ctx context.Context, lake Lake, js jetstream.JetStream, db *pgxpool.Pool, opt RepairOptions) (RepairResult, error) {
	if err := refuseBesideArchiver(ctx, lake, "repair"); err != nil {
		return RepairResult{}, err
	}
	r := &repairer{lake: lake, js: js, db: db, opt: opt, m: newMetrics(nil)}
	return r.run(ctx)
}

func (r *repairer) run(ctx context.Context) (RepairResult, error) {
	var res RepairResult
	r.opt.Stream.Defaults()
	if r.opt.Window <= 0 {
		r.opt.Window = DefaultWindow
	}
	if r.opt.CloseAfter == 0 {
		r.opt.CloseAfter = DefaultCloseAfter
	}
	if r.opt.ChunkSeqs == 0 {
		r.opt.ChunkSeqs = 20_000
	}
	if r.opt.Log == nil {
		r.opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	g, err := ReadGaps(ctx, r.lake)
	if err != nil || len(g.Ranges) == 0 {
		return res, err
	}
	touched := map[partition]bool{}
	for len(g.Ranges) > 0 {
		rg := g.Ranges[0]
		for lo := rg.First; lo <= rg.Last; lo += r.opt.ChunkSeqs {
			hi := min(rg.Last, lo+r.opt.ChunkSeqs-1)
			if err := r.chunk(ctx, stream.SeqRange{First: lo, Last: hi}, &res, touched); err != nil {
				return res, err
			}
			if hi == rg.Last {
				break
			}
		}
		g.Ranges = g.Ranges[1:]
		if err := writeGaps(ctx, r.lake, g); err != nil {
			return res, err
		}
		res.Ranges++
		r.opt.Log.Info("repaired a gap of the lake", "first_seq", rg.First, "last_seq", rg.Last,
			"from_stream", res.FromStream, "from_postgres", res.FromPostgres)
	}
	res.Partitions = len(touched)
	if r.opt.CloseAfter > 0 && r.after == nil {
		for p := range touched {
			if !p.end().After(time.Now().Add(-r.opt.CloseAfter)) {
				if _, err := compactPartition(ctx, r.lake, p, r.opt.Stream.Name, r.db, r.opt.Log); err != nil {
					return res, err
				}
			}
		}
	}
	return res, nil
}

// chunk repairs one range of sequences.
func (r *repairer) chunk(ctx context.Context, rg stream.SeqRange, res *RepairResult, touched map[partition]bool) error {
	cands := map[partition]map[string]record{}
	add := func(p partition, rec record) {
		m := cands[p]
		if m == nil {
			m = map[string]record{}
			cands[p] = m
		}
		if _, ok := m[rec.MessageID]; !ok {
			m[rec.MessageID] = rec
		}
	}
	if r.js != nil {
		if err := r.fromStream(ctx, rg, add); err != nil {
			return err
		}
	}
	if r.db != nil {
		if err := r.fromPostgres(ctx, rg, add); err != nil {
			return err
		}
	}
	if r.db != nil {
		if err := r.dropErased(ctx, cands); err != nil {
			return err
		}
	}
	parts := make([]partition, 0, len(cands))
	for p := range cands {
		parts = append(parts, p)
	}
	slices.SortFunc(parts, func(a, b partition) int { return a.hour.Compare(b.hour) })
	for _, p := range parts {
		if r.before != nil {
			if err := r.before(ctx, p); err != nil {
				return err
			}
		}
		man, err := openPartition(ctx, r.lake, p, r.opt.Stream.Name, r.opt.Log)
		if err != nil {
			return err
		}
		have, err := readPartition(ctx, r.lake, p, man)
		if err != nil {
			return err
		}
		for i := range have {
			delete(cands[p], have[i].MessageID)
		}
		if len(cands[p]) == 0 {
			continue
		}
		recs := make([]record, 0, len(cands[p]))
		for _, rec := range cands[p] {
			recs = append(recs, rec)
		}
		slices.SortFunc(recs, func(a, b record) int {
			return cmp.Or(cmp.Compare(a.StreamSeq, b.StreamSeq), cmp.Compare(a.MessageID, b.MessageID))
		})
		entry, err := addFile(ctx, r.lake, p, man, recs, r.opt.Stream.Name, "r")
		if err != nil {
			return err
		}
		var fromStream, fromPG int64
		for i := range recs {
			if val(recs[i].Provenance) == ProvStream {
				fromStream++
			} else {
				fromPG++
			}
		}
		res.FromStream += fromStream
		res.FromPostgres += fromPG
		r.m.repaired.WithLabelValues(ProvStream).Add(float64(fromStream))
		r.m.repaired.WithLabelValues(ProvPostgres).Add(float64(fromPG))
		touched[p] = true
		if r.after != nil {
			r.after(p)
		}
		r.opt.Log.Warn("filled a gap of the lake", "file", p.prefix()+entry.Name, "from_stream", fromStream, "from_postgres", fromPG)
	}
	return nil
}

// dropErased removes from the candidates the events a privacy request
// erased (herd.privacy_erased) and those of suppressed people
// (herd.suppressions): the stream may still hold them, and a repair must
// not bring back what a deletion removed.
func (r *repairer) dropErased(ctx context.Context, cands map[partition]map[string]record) error {
	var (
		srcs []int64
		ids  []string
		keys []string
	)
	for _, m := range cands {
		for id, rec := range m {
			srcs, ids = append(srcs, rec.SourceID), append(ids, id)
			if u := val(rec.UserID); u != "" {
				keys = append(keys, stream.SuppressKey(stream.SuppressUserID, u))
			}
			if a := val(rec.AnonymousID); a != "" {
				keys = append(keys, stream.SuppressKey(stream.SuppressAnonymousID, a))
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	type key struct {
		src int64
		id  string
	}
	erased := map[key]bool{}
	rows, err := r.db.Query(ctx, `SELECT e.source_id, e.message_id FROM herd.privacy_erased e
		JOIN unnest($1::bigint[], $2::text[]) AS c(source_id, message_id) USING (source_id, message_id)`, srcs, ids)
	if err != nil {
		return fmt.Errorf("read herd.privacy_erased for the repair: %w", err)
	}
	var k key
	if _, err := pgx.ForEachRow(rows, []any{&k.src, &k.id}, func() error { erased[k] = true; return nil }); err != nil {
		return fmt.Errorf("read herd.privacy_erased for the repair: %w", err)
	}
	suppressed := map[string]bool{}
	if len(keys) > 0 {
		rows, err := r.db.Query(ctx, `SELECT key FROM herd.suppressions WHERE key = ANY($1)`, keys)
		if err != nil {
			return fmt.Errorf("read herd.suppressions for the repair: %w", err)
		}
		var sk string
		if _, err := pgx.ForEachRow(rows, []any{&sk}, func() error { suppressed[sk] = true; return nil }); err != nil {
			return fmt.Errorf("read herd.suppressions for the repair: %w", err)
		}
	}
	var nErased, nSuppressed int
	for _, m := range cands {
		for id, rec := range m {
			switch {
			case erased[key{rec.SourceID, id}]:
				nErased++
			case len(suppressed) > 0 && (suppressed[stream.SuppressKey(stream.SuppressUserID, val(rec.UserID))] ||
				suppressed[stream.SuppressKey(stream.SuppressAnonymousID, val(rec.AnonymousID))]):
				nSuppressed++
			default:
				continue
			}
			delete(m, id)
		}
	}
	if nErased+nSuppressed > 0 {
		r.m.repairSkip.WithLabelValues("erased").Add(float64(nErased))
		r.m.repairSkip.WithLabelValues("suppressed").Add(float64(nSuppressed))
		r.opt.Log.Info("gap repair left out events a privacy request removed", "erased", nErased, "suppressed", nSuppressed)
	}
	return nil
}

// fromStream reads the events the stream still holds in the range.
func (r *repairer) fromStream(ctx context.Context, rg stream.SeqRange, add func(partition, record)) error {
	s, err := r.js.Stream(ctx, r.opt.Stream.Name)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", r.opt.Stream.Name, err)
	}
	for seq := rg.First; seq <= rg.Last; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(r.opt.Stream.EventsFilter()))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read stream %s from sequence %d: %w", r.opt.Stream.Name, seq, err)
		}
		if m.Sequence > rg.Last {
			return nil
		}
		_ = stream.Entries(m.Data, func(_ int, data []byte) bool {
			var ev herd.Event
			if err := stream.DecodeEvent(data, &ev); err != nil || ev.MessageID == "" || ev.Timestamp.IsZero() {
				return true // not an event: the writer keeps it in herd.rejects
			}
			add(partitionOf(&ev, m.Time, r.opt.Window), toRecord(&ev, m.Sequence, ProvStream))
			return true
		})
		seq = m.Sequence + 1
	}
	return nil
}

// pgColumns are herd.events' columns in the order of pgScan.
const pgColumns = `message_id, source_id, type, event, anonymous_id, user_id, group_id, previous_id,
	"timestamp", original_timestamp, sent_at, received_at, context::text, properties::text, traits::text,
	url, path, referrer, title, search, utm_source, utm_medium, utm_campaign, utm_term, utm_content,
	host(ip), country, region, city, user_agent, browser, browser_version, os, device_type, is_bot,
	session_id, library_name, library_version, stream_seq, referrer_host, referrer_class, gclid, fbclid,
	os_version, bot_reason, asn, as_org`

func pgScan(r *record) []any {
	return []any{&r.MessageID, &r.SourceID, &r.Type, &r.Event, &r.AnonymousID, &r.UserID, &r.GroupID, &r.PreviousID,
		&r.Timestamp, &r.OriginalTimestamp, &r.SentAt, &r.ReceivedAt, &r.Context, &r.Properties, &r.Traits,
		&r.URL, &r.Path, &r.Referrer, &r.Title, &r.Search, &r.UTMSource, &r.UTMMedium, &r.UTMCampaign, &r.UTMTerm, &r.UTMContent,
		&r.IP, &r.Country, &r.Region, &r.City, &r.UserAgent, &r.Browser, &r.BrowserVersion, &r.OS, &r.DeviceType, &r.IsBot,
		&r.SessionID, &r.LibraryName, &r.LibraryVersion, &r.StreamSeq, &r.ReferrerHost, &r.ReferrerClass, &r.GCLID, &r.FBCLID,
		&r.OSVersion, &r.BotReason, &r.ASN, &r.ASOrg}
}

// fromPostgres reads herd.events' rows of the range.
func (r *repairer) fromPostgres(ctx context.Context, rg stream.SeqRange, add func(partition, record)) error {
	rows, err := r.db.Query(ctx, `SELECT `+pgColumns+` FROM herd.events
		WHERE stream_seq BETWEEN $1 AND $2 ORDER BY stream_seq`, int64(rg.First), int64(rg.Last))
	if err != nil {
		return fmt.Errorf("read herd.events of stream sequences %d-%d: %w", rg.First, rg.Last, err)
	}
	defer rows.Close()
	for rows.Next() {
		var rec record
		if err := rows.Scan(pgScan(&rec)...); err != nil {
			return fmt.Errorf("read herd.events of stream sequences %d-%d: %w", rg.First, rg.Last, err)
		}
		rec.Timestamp, rec.ReceivedAt = rec.Timestamp.UTC(), rec.ReceivedAt.UTC()
		rec.OriginalTimestamp, rec.SentAt = utcPtr(rec.OriginalTimestamp), utcPtr(rec.SentAt)
		rec.Provenance = opt(ProvPostgres)
		// The stream's own time of the message is gone with it; the
		// collector's receive time is within moments of it.
		ev := herd.Event{SourceID: rec.SourceID, Timestamp: rec.Timestamp}
		add(partitionOf(&ev, rec.ReceivedAt, r.opt.Window), rec)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read herd.events of stream sequences %d-%d: %w", rg.First, rg.Last, err)
	}
	return nil
}

// RecordGaps adds ranges of stream sequences to the lake's gap list, for
// the next repair to check and fill: what a comparison of the stores (herd
// check) or an operator found missing. Like every write of the lake, it
// belongs to the archiver's process or to a time it is stopped.
func RecordGaps(ctx context.Context, lake Lake, streamName string, rs ...stream.SeqRange) error {
	g, err := ReadGaps(ctx, lake)
	if err != nil {
		return err
	}
	g.Stream = streamName
	g.Ranges = stream.MergeRanges(append(g.Ranges, rs...), 0)
	return writeGaps(ctx, lake, g)
}

// HourGap is an hour whose lake rows differ from herd.events', recorded
// by RecordHourGaps as the range of stream sequences of its rows there.
type HourGap struct {
	Source         int64
	Hour           time.Time
	Events, Lake   int64
	FirstSeq, Last uint64
}

// RecordHourGaps compares, per source and hour whose end is after since,
// the rows of herd.events with the lake's (its manifests), and records in
// the lake's gap list the range of stream sequences of each hour where
// the lake has fewer: the next Repair fills them from the stream or from
// herd.events. These are the hours `herd check` names. sources, when
// given, limits the comparison. It refuses (*ErrArchiverRunning) while an
// archiver's lease is fresh.
func RecordHourGaps(ctx context.Context, lake Lake, db *pgxpool.Pool, streamName string, since time.Time, sources []int64) ([]HourGap, error) {
	if err := refuseBesideArchiver(ctx, lake, "record gaps"); err != nil {
		return nil, err
	}
	counts, err := Counts(ctx, lake, since)
	if err != nil {
		return nil, err
	}
	type key struct {
		src  int64
		hour time.Time
	}
	inLake := map[key]int64{}
	for _, c := range counts {
		if !c.Month {
			inLake[key{c.Source, c.Hour.UTC()}] += c.Rows
		}
	}
	rows, err := db.Query(ctx, `SELECT source_id, date_trunc('hour', "timestamp", 'UTC'), count(*), min(stream_seq), max(stream_seq)
		FROM herd.events WHERE "timestamp" >= $1 AND stream_seq IS NOT NULL AND (coalesce(cardinality($2::bigint[]), 0) = 0 OR source_id = ANY($2))
		GROUP BY 1, 2 ORDER BY 1, 2`, since.Truncate(time.Hour), sources)
	if err != nil {
		return nil, fmt.Errorf("count herd.events per source and hour since %s: %w", since.Format(time.RFC3339), err)
	}
	var (
		gaps   []HourGap
		g      HourGap
		lo, hi int64
		rs     []stream.SeqRange
	)
	if _, err := pgx.ForEachRow(rows, []any{&g.Source, &g.Hour, &g.Events, &lo, &hi}, func() error {
		g.Hour = g.Hour.UTC()
		g.Lake = inLake[key{g.Source, g.Hour}]
		if g.Lake < g.Events {
			g.FirstSeq, g.Last = uint64(lo), uint64(hi)
			gaps = append(gaps, g)
			rs = append(rs, stream.SeqRange{First: uint64(lo), Last: uint64(hi)})
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("count herd.events per source and hour: %w", err)
	}
	if len(rs) == 0 {
		return nil, nil
	}
	return gaps, RecordGaps(ctx, lake, streamName, rs...)
}
