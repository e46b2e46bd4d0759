package writer

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/herdhq/herd"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Row is an event with the stream sequence it came from (0 when it did not
// come from the stream, as in a replay) and its place in that message's
// frame.
type Row struct {
	herd.Event
	Seq uint64
	Pos int
}

// RejectRow is a refusal to store in herd.rejects; Seq and Pos, as in Row,
// make its recording idempotent.
type RejectRow struct {
	herd.Reject
	Seq uint64
	Pos int
}

var eventColumns = []string{
	"message_id", "source_id", "type", "event", "anonymous_id", "user_id", "group_id", "previous_id",
	"timestamp", "original_timestamp", "sent_at", "received_at", "context", "properties", "traits",
	"url", "path", "referrer", "title", "search", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
	"ip", "country", "region", "city", "user_agent", "browser", "browser_version", "os", "device_type", "is_bot",
	"session_id", "library_name", "library_version", "stream_seq",
	"referrer_host", "referrer_class", "gclid", "fbclid", "os_version", "bot_reason", "asn", "as_org",
}

// quotedColumns is eventColumns as a SQL column list.
var quotedColumns = func() string {
	s := ""
	for i, c := range eventColumns {
		if i > 0 {
			s += ", "
		}
		s += pgx.Identifier{c}.Sanitize()
	}
	return s
}()

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func jsonb(b []byte) any {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return []byte(b)
}

func inet(s string) any {
	if s == "" {
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil
	}
	return a
}

func seqValue(s uint64) any {
	if s == 0 {
		return nil
	}
	return int64(s)
}

func asnValue(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}

// CopyColumns are the columns of herd.events the writer COPYs, in the order
// of CopyValues: for a benchmark's COPY of the same rows.
func CopyColumns() []string { return slices.Clone(eventColumns) }

// CopyValues is r as the writer COPYs it into herd.events (CopyColumns).
func CopyValues(r *Row) []any { return values(r) }

func values(r *Row) []any {
	e := &r.Event
	return []any{
		e.MessageID, e.SourceID, e.Type, nullable(e.Event), nullable(e.AnonymousID), nullable(e.UserID), nullable(e.GroupID), nullable(e.PreviousID),
		e.Timestamp, e.OriginalTimestamp, e.SentAt, e.ReceivedAt, jsonb(e.Context), jsonb(e.Properties), jsonb(e.Traits),
		nullable(e.URL), nullable(e.Path), nullable(e.Referrer), nullable(e.Title), nullable(e.Search),
		nullable(e.UTMSource), nullable(e.UTMMedium), nullable(e.UTMCampaign), nullable(e.UTMTerm), nullable(e.UTMContent),
		inet(e.IP), nullable(e.Country), nullable(e.Region), nullable(e.City), nullable(e.UserAgent), nullable(e.Browser),
		nullable(e.BrowserVersion), nullable(e.OS), nullable(e.DeviceType), e.IsBot,
		nullable(e.SessionID), nullable(e.LibraryName), nullable(e.LibraryVersion), seqValue(r.Seq),
		nullable(e.ReferrerHost), nullable(e.ReferrerClass), nullable(e.GCLID), nullable(e.FBCLID),
		nullable(e.OSVersion), nullable(e.BotReason), asnValue(e.ASN), nullable(e.ASOrg),
	}
}

// Store writes events and rejects into the warehouse, idempotently: an event
// whose (source, messageId) was ever stored before is skipped. It is the one
// insert path, shared by the stream writer and by replays.
type Store struct {
	db     *pgxpool.Pool
	window int              // days before today that still get day partitions
	now    func() time.Time // the wall clock the window is measured from
	parts  sync.Map         // day (time.Time) -> struct{}: days known to have a partition

	// Set by the Writer; nil for a Store of its own (replays).
	log       *slog.Logger       // warns when a missing partition is recreated
	recreated prometheus.Counter // herd_writer_batch_failures_total{reason="partition"}
}

// DefaultPartitionWindow is how many days before today still get a day
// partition of their own (Store.SetPartitionWindow).
const DefaultPartitionWindow = 35

// NewStore returns a Store on db.
func NewStore(db *pgxpool.Pool) *Store {
	return &Store{db: db, window: DefaultPartitionWindow, now: time.Now}
}

// SetPartitionWindow sets how many days before today (by the wall clock)
// get a day partition each; an event older than that lands in a coarse
// partition (see schemas/migrations/0005_partition_window.sql), so the
// number of partitions follows the wall clock, not the event times clients
// send. Negative means 0.
func (s *Store) SetPartitionWindow(days int) { s.window = max(days, 0) }

// Result counts what one Write did.
type Result struct {
	Inserted   int64 // new rows in herd.events
	Duplicates int64 // events skipped because their messageId was already stored
	Rejected   int64 // rows written to herd.rejects (given, or refused by Postgres)
}

func day(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// ensurePartitions makes sure every day the rows fall on has a partition,
// in one call for all the days the cache does not know: a batch of
// historical events may span thousands of days.
func (s *Store) ensurePartitions(ctx context.Context, rows []Row) error {
	var (
		missing []time.Time
		seen    map[time.Time]struct{}
		last    time.Time
	)
	for i := range rows {
		d := day(rows[i].Timestamp)
		if d == last {
			continue
		}
		last = d
		if _, ok := s.parts.Load(d); ok {
			continue
		}
		if seen == nil {
			seen = map[time.Time]struct{}{}
		}
		if _, ok := seen[d]; !ok {
			seen[d] = struct{}{}
			missing = append(missing, d)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	from := day(s.now()).AddDate(0, 0, -s.window)
	if _, err := s.db.Exec(ctx, "SELECT herd.ensure_partitions($1::date[], $2::date)", missing, from); err != nil {
		return fmt.Errorf("create partitions of herd.events for %d days (%s .. %s): %w", len(missing),
			slices.MinFunc(missing, time.Time.Compare).Format(time.DateOnly), slices.MaxFunc(missing, time.Time.Compare).Format(time.DateOnly), err)
	}
	for _, d := range missing {
		s.parts.Store(d, struct{}{})
	}
	return nil
}

// ForgetPartitions drops the cache of known partitions (after retention or a
// manual DROP).
func (s *Store) ForgetPartitions() { s.parts.Clear() }

const stageSQL = `CREATE TEMP TABLE IF NOT EXISTS herd_stage (LIKE herd.events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`

// firstOfEach drops repeats of a (source, message id) within rows, keeping
// the one with the lowest stream sequence (the first delivery). It returns
// rows itself when there are none, which is the common case.
func firstOfEach(rows []Row) []Row {
	type key struct {
		src int64
		id  string
	}
	seen := make(map[key]int, len(rows))
	dup := false
	for i := range rows {
		k := key{rows[i].SourceID, rows[i].MessageID}
		if j, ok := seen[k]; ok {
			dup = true
			if seqLess(rows[i].Seq, rows[j].Seq) || (rows[i].Seq == rows[j].Seq && rows[i].Pos < rows[j].Pos) {
				seen[k] = i
			}
			continue
		}
		seen[k] = i
	}
	if !dup {
		return rows
	}
	out := make([]Row, 0, len(seen))
	for i := range rows {
		if seen[key{rows[i].SourceID, rows[i].MessageID}] == i {
			out = append(out, rows[i])
		}
	}
	return out
}

// seqLess orders stream sequences with 0 (not from the stream) last.
func seqLess(a, b uint64) bool {
	if a == 0 {
		return false
	}
	return b == 0 || a < b
}

// Write stores rows and rejects in one transaction. When Postgres refuses
// a value of the rows themselves (isContentError: a value it cannot hold
// whatever the schema), the rows are split until the offending ones are
// found; those are recorded in herd.rejects with Postgres's reason and the
// rest are stored. Every other error (a partition or column changed by
// hand, a constraint herd did not create, the connection) is returned for
// the caller to retry: it is not the events' fault, and they must not be
// rejected for it. A row that finds no partition makes Write forget its
// cache of partitions and create them again once before it gives up.
func (s *Store) Write(ctx context.Context, rows []Row, rejects []RejectRow) (Result, error) {
	if err := s.ensurePartitions(ctx, rows); err != nil {
		return Result{}, err
	}
	res, err := s.write(ctx, rows, rejects)
	if isPartitionError(err) {
		// Someone dropped a partition the cache still names: recovering is
		// silent for the events, not for the operator.
		if s.recreated != nil {
			s.recreated.Inc()
		}
		if s.log != nil {
			s.log.Warn("a partition of herd.events was missing (dropped by hand?); recreating it and writing the batch again",
				"err", err, "events", len(rows), "reason", reasonPartition)
		}
		s.ForgetPartitions()
		if err := s.ensurePartitions(ctx, rows); err != nil {
			return Result{}, err
		}
		res, err = s.write(ctx, rows, rejects)
	}
	if err == nil || !isContentError(err) {
		return res, err
	}
	// Isolate: rejects first on their own, then the rows by halves.
	var total Result
	if len(rejects) > 0 {
		r, err := s.write(ctx, nil, rejects)
		if err != nil {
			return total, err
		}
		total.Rejected += r.Rejected
	}
	err = s.isolate(ctx, rows, &total)
	return total, err
}

// ownColumnsTake reports whether a bare copy of herd.events (its columns and
// NOT NULLs, none of the indexes, checks or triggers added to it) takes row.
func (s *Store) ownColumnsTake(ctx context.Context, row Row) (bool, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE herd_probe (LIKE herd.events) ON COMMIT DROP"); err != nil {
		return false, fmt.Errorf("make a bare copy of herd.events to test a refused row: %w", err)
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"herd_probe"}, eventColumns, &rowSource{rows: []Row{row}, i: -1})
	if err != nil && !isContentError(err) {
		return false, err
	}
	return err == nil, nil
}

func (s *Store) isolate(ctx context.Context, rows []Row, total *Result) error {
	if len(rows) == 0 {
		return nil
	}
	r, err := s.write(ctx, rows, nil)
	if err == nil {
		total.Inserted += r.Inserted
		total.Duplicates += r.Duplicates
		return nil
	}
	if !isContentError(err) {
		return err
	}
	if len(rows) == 1 {
		// An index or constraint added by hand can raise the same codes as a
		// bad value (an expression index casting a property to int raises
		// 22P02): the event is rejected only when herd's own columns refuse
		// it too.
		if own, perr := s.ownColumnsTake(ctx, rows[0]); perr != nil {
			return perr
		} else if own {
			return &operatorError{err: err}
		}
		raw, _ := jsonMarshal(&rows[0].Event)
		rej := RejectRow{Seq: rows[0].Seq, Pos: rows[0].Pos, Reject: herd.Reject{
			SourceID: rows[0].SourceID, MessageID: rows[0].MessageID,
			Reason: "refused by Postgres: " + err.Error(), Raw: string(raw), ReceivedAt: rows[0].ReceivedAt,
		}}
		r, err := s.write(ctx, nil, []RejectRow{rej})
		if err != nil && isContentError(err) {
			// The raw text itself cannot be stored (e.g. a NUL byte): keep the
			// reason and an escaped copy.
			rej.Raw = fmt.Sprintf("%q", raw)
			r, err = s.write(ctx, nil, []RejectRow{rej})
		}
		total.Rejected += r.Rejected
		return err
	}
	mid := len(rows) / 2
	if err := s.isolate(ctx, rows[:mid], total); err != nil {
		return err
	}
	return s.isolate(ctx, rows[mid:], total)
}

func (s *Store) write(ctx context.Context, rows []Row, rejects []RejectRow) (Result, error) {
	var res Result
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if len(rows) > 0 {
			unique := firstOfEach(rows)
			var err error
			if hasIdentityCalls(unique) {
				res.Inserted, err = s.insertStaged(ctx, tx, unique)
			} else {
				res.Inserted, err = s.insertDirect(ctx, tx, unique)
			}
			if err != nil {
				return err
			}
			res.Duplicates = int64(len(rows)) - res.Inserted
		}
		if len(rejects) > 0 {
			n, err := insertRejects(ctx, tx, rejects)
			if err != nil {
				return err
			}
			res.Rejected = n
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// insertStaged copies the rows into a staging table and moves the new ones
// into herd.events in one statement, which also keeps the identity tables
// (identitySQL). Used for batches holding identify, alias or group calls.
func (s *Store) insertStaged(ctx context.Context, tx pgx.Tx, rows []Row) (int64, error) {
	if _, err := tx.Exec(ctx, stageSQL); err != nil {
		return 0, fmt.Errorf("create staging table: %w", err)
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"herd_stage"}, eventColumns, &rowSource{rows: rows, i: -1})
	if err != nil {
		return 0, fmt.Errorf("copy %d events into staging: %w", len(rows), err)
	}
	var inserted int64
	if err := tx.QueryRow(ctx, identitySQL).Scan(&inserted); err != nil {
		return 0, fmt.Errorf("insert %d events into herd.events and update identities: %w", n, err)
	}
	return inserted, nil
}

// insertDirect claims the rows' (source, message id) pairs in the ledger
// first, then COPYs only the rows it claimed straight into herd.events: each
// row is written once, not staged and copied again. The ledger's unique key
// makes a concurrent writer holding the same id wait for this transaction
// and then skip it.
func (s *Store) insertDirect(ctx context.Context, tx pgx.Tx, rows []Row) (int64, error) {
	srcs := make([]int64, len(rows))
	ids := make([]string, len(rows))
	hours := make([]time.Time, len(rows))
	seqs := make([]int64, len(rows))
	for i := range rows {
		srcs[i], ids[i], hours[i], seqs[i] = rows[i].SourceID, rows[i].MessageID, rows[i].Timestamp.UTC().Truncate(time.Hour), int64(rows[i].Seq)
	}
	// The ledger keeps each event's hour and stream sequence as well as its
	// day: herd check counts accepted events per hour from it.
	claimed, err := tx.Query(ctx, `INSERT INTO herd.message_ids (source_id, message_id, day, hour, stream_seq)
		SELECT s, m, (h AT TIME ZONE 'UTC')::date, h, nullif(q, 0) FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::bigint[]) u(s, m, h, q)
		ON CONFLICT DO NOTHING RETURNING source_id, message_id`, srcs, ids, hours, seqs)
	if err != nil {
		return 0, fmt.Errorf("claim %d message ids: %w", len(rows), err)
	}
	type key struct {
		src int64
		id  string
	}
	fresh := make(map[key]bool, len(rows))
	for claimed.Next() {
		var k key
		if err := claimed.Scan(&k.src, &k.id); err != nil {
			claimed.Close()
			return 0, err
		}
		fresh[k] = true
	}
	if err := claimed.Err(); err != nil {
		return 0, fmt.Errorf("claim %d message ids: %w", len(rows), err)
	}
	keep := rows
	if len(fresh) < len(rows) {
		keep = make([]Row, 0, len(fresh))
		for i := range rows {
			if fresh[key{rows[i].SourceID, rows[i].MessageID}] {
				keep = append(keep, rows[i])
			}
		}
	}
	if len(keep) == 0 {
		return 0, nil
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"herd", "events"}, eventColumns, &rowSource{rows: keep, i: -1})
	if err != nil {
		return 0, fmt.Errorf("copy %d events into herd.events: %w", len(keep), err)
	}
	return n, nil
}

func insertRejects(ctx context.Context, tx pgx.Tx, rejects []RejectRow) (int64, error) {
	var (
		src    = make([]*int64, len(rejects))
		msg    = make([]*string, len(rejects))
		reason = make([]string, len(rejects))
		raw    = make([]string, len(rejects))
		recv   = make([]time.Time, len(rejects))
		seq    = make([]*int64, len(rejects))
		pos    = make([]int32, len(rejects))
	)
	for i := range rejects {
		r := &rejects[i]
		if r.SourceID != 0 {
			src[i] = &r.SourceID
		}
		if r.MessageID != "" {
			msg[i] = &r.MessageID
		}
		reason[i], raw[i], recv[i] = storableText(r.Reason), storableText(r.Raw), r.ReceivedAt
		if msg[i] != nil {
			m := storableText(*msg[i])
			msg[i] = &m
		}
		if recv[i].IsZero() {
			recv[i] = time.Now()
		}
		if r.Seq != 0 {
			v := int64(r.Seq)
			seq[i] = &v
		}
		pos[i] = int32(r.Pos)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO herd.rejects (source_id, message_id, reason, raw, received_at, stream_seq, stream_pos)
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[], $7::int[])
		ON CONFLICT (stream_seq, stream_pos) DO NOTHING`, src, msg, reason, raw, recv, seq, pos)
	if err != nil {
		return 0, fmt.Errorf("insert %d rejects: %w", len(rejects), err)
	}
	return tag.RowsAffected(), nil
}

// storableText returns s unchanged when Postgres text can hold it, and
// otherwise a Go-quoted copy: a refused body may be binary (a broken gzip
// stream) or hold NUL, and the reject must still be recorded, never retried
// forever.
func storableText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strconv.Quote(s)
}

type rowSource struct {
	rows []Row
	i    int
}

func (r *rowSource) Next() bool             { r.i++; return r.i < len(r.rows) }
func (r *rowSource) Values() ([]any, error) { return values(&r.rows[r.i]), nil }
func (r *rowSource) Err() error             { return nil }
