package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd"
	"github.com/parquet-go/parquet-go"
)

// record is one row of an archive file: the columns of herd.events, with
// context/properties/traits as JSON text and the stream sequence the event
// came from. Empty strings are written as NULL, as the writer stores them.
// Nullable columns are pointers: parquet-go's "optional" on a plain string
// sometimes writes an empty string where NULL was meant (DuckDB then reads an
// empty string rather than NULL), and a nil pointer is unambiguous.
type record struct {
	MessageID         string     `parquet:"message_id"`
	SourceID          int64      `parquet:"source_id"`
	Type              string     `parquet:"type,dict"`
	Event             *string    `parquet:"event,optional,dict"`
	AnonymousID       *string    `parquet:"anonymous_id,optional"`
	UserID            *string    `parquet:"user_id,optional"`
	GroupID           *string    `parquet:"group_id,optional"`
	PreviousID        *string    `parquet:"previous_id,optional"`
	Timestamp         time.Time  `parquet:"timestamp,timestamp(microsecond)"`
	OriginalTimestamp *time.Time `parquet:"original_timestamp,optional,timestamp(microsecond)"`
	SentAt            *time.Time `parquet:"sent_at,optional,timestamp(microsecond)"`
	ReceivedAt        time.Time  `parquet:"received_at,timestamp(microsecond)"`
	Context           *string    `parquet:"context,optional"`
	Properties        *string    `parquet:"properties,optional"`
	Traits            *string    `parquet:"traits,optional"`
	URL               *string    `parquet:"url,optional"`
	Path              *string    `parquet:"path,optional"`
	Referrer          *string    `parquet:"referrer,optional"`
	Title             *string    `parquet:"title,optional"`
	Search            *string    `parquet:"search,optional"`
	UTMSource         *string    `parquet:"utm_source,optional,dict"`
	UTMMedium         *string    `parquet:"utm_medium,optional,dict"`
	UTMCampaign       *string    `parquet:"utm_campaign,optional,dict"`
	UTMTerm           *string    `parquet:"utm_term,optional"`
	UTMContent        *string    `parquet:"utm_content,optional"`
	IP                *string    `parquet:"ip,optional"`
	Country           *string    `parquet:"country,optional,dict"`
	Region            *string    `parquet:"region,optional,dict"`
	City              *string    `parquet:"city,optional,dict"`
	UserAgent         *string    `parquet:"user_agent,optional,dict"`
	Browser           *string    `parquet:"browser,optional,dict"`
	BrowserVersion    *string    `parquet:"browser_version,optional,dict"`
	OS                *string    `parquet:"os,optional,dict"`
	DeviceType        *string    `parquet:"device_type,optional,dict"`
	IsBot             bool       `parquet:"is_bot"`
	SessionID         *string    `parquet:"session_id,optional"`
	LibraryName       *string    `parquet:"library_name,optional,dict"`
	LibraryVersion    *string    `parquet:"library_version,optional,dict"`
	StreamSeq         int64      `parquet:"stream_seq"`
	ReferrerHost      *string    `parquet:"referrer_host,optional,dict"`
	ReferrerClass     *string    `parquet:"referrer_class,optional,dict"`
	GCLID             *string    `parquet:"gclid,optional"`
	FBCLID            *string    `parquet:"fbclid,optional"`
	OSVersion         *string    `parquet:"os_version,optional,dict"`
	BotReason         *string    `parquet:"bot_reason,optional,dict"`
	ASN               *int64     `parquet:"asn,optional"`
	ASOrg             *string    `parquet:"as_org,optional,dict"`
	// Provenance says where the row came from: ProvArchiver (the archiver
	// took it live from the stream), ProvStream or ProvPostgres (a gap
	// repair found it still in the stream, or only in herd.events). Files
	// written before the column existed have none (NULL).
	Provenance *string `parquet:"provenance,optional,dict"`
}

// Values of the provenance column.
const (
	ProvArchiver = "archiver"
	ProvStream   = "stream"
	ProvPostgres = "postgres"
)

// opt is a nullable column value: the writer stores empty strings as NULL.
func opt(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func val(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func optInt(n int64) *int64 {
	if n == 0 {
		return nil
	}
	return &n
}

func intVal(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func jsonText(b json.RawMessage) *string {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	s := string(b)
	return &s
}

func rawJSON(p *string) json.RawMessage {
	if p == nil {
		return nil
	}
	return json.RawMessage(*p)
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// toRecord makes an event a row. The values the nullable columns point to
// share one allocation (the archiver makes a record of every event, and a
// pointer each was two dozen allocations an event).
func toRecord(e *herd.Event, seq uint64, prov string) record {
	// The nullable string columns, in the order of the record's fields below.
	src := [...]string{
		prov, e.Event, e.AnonymousID, e.UserID, e.GroupID, e.PreviousID,
		jsonString(e.Context), jsonString(e.Properties), jsonString(e.Traits),
		e.URL, e.Path, e.Referrer, e.Title, e.Search,
		e.UTMSource, e.UTMMedium, e.UTMCampaign, e.UTMTerm, e.UTMContent,
		e.IP, e.Country, e.Region, e.City, e.UserAgent,
		e.Browser, e.BrowserVersion, e.OS, e.DeviceType,
		e.SessionID, e.LibraryName, e.LibraryVersion,
		e.ReferrerHost, e.ReferrerClass, e.GCLID, e.FBCLID,
		e.OSVersion, e.BotReason, e.ASOrg,
	}
	n := 0
	for _, v := range src {
		if v != "" {
			n++
		}
	}
	// Appends within the capacity never move the slab: the pointers hold.
	slab := make([]string, 0, n)
	i := 0
	o := func() *string {
		v := src[i]
		i++
		if v == "" {
			return nil
		}
		slab = append(slab, v)
		return &slab[len(slab)-1]
	}
	var extra *recordExtra
	if e.OriginalTimestamp != nil || e.SentAt != nil || e.ASN != 0 {
		extra = new(recordExtra)
	}
	r := record{
		Provenance: o(),
		MessageID:  e.MessageID, SourceID: e.SourceID, Type: e.Type, Event: o(),
		AnonymousID: o(), UserID: o(), GroupID: o(), PreviousID: o(),
		Timestamp: e.Timestamp.UTC(), ReceivedAt: e.ReceivedAt.UTC(),
		Context: o(), Properties: o(), Traits: o(),
		URL: o(), Path: o(), Referrer: o(), Title: o(), Search: o(),
		UTMSource: o(), UTMMedium: o(), UTMCampaign: o(), UTMTerm: o(), UTMContent: o(),
		IP: o(), Country: o(), Region: o(), City: o(), UserAgent: o(),
		Browser: o(), BrowserVersion: o(), OS: o(), DeviceType: o(), IsBot: e.IsBot,
		SessionID: o(), LibraryName: o(), LibraryVersion: o(),
		StreamSeq:    int64(seq),
		ReferrerHost: o(), ReferrerClass: o(), GCLID: o(), FBCLID: o(),
		OSVersion: o(), BotReason: o(), ASOrg: o(),
	}
	if e.OriginalTimestamp != nil {
		extra.original = e.OriginalTimestamp.UTC()
		r.OriginalTimestamp = &extra.original
	}
	if e.SentAt != nil {
		extra.sent = e.SentAt.UTC()
		r.SentAt = &extra.sent
	}
	if e.ASN != 0 {
		extra.asn = e.ASN
		r.ASN = &extra.asn
	}
	return r
}

// recordExtra holds a record's nullable times and number.
type recordExtra struct {
	original, sent time.Time
	asn            int64
}

// jsonString is a JSON column's text: "" (NULL) for none or null.
func jsonString(b json.RawMessage) string {
	if len(b) == 0 || string(b) == "null" {
		return ""
	}
	return string(b)
}

func (r *record) event() herd.Event {
	return herd.Event{
		MessageID: r.MessageID, SourceID: r.SourceID, Type: r.Type, Event: val(r.Event),
		AnonymousID: val(r.AnonymousID), UserID: val(r.UserID), GroupID: val(r.GroupID), PreviousID: val(r.PreviousID),
		Timestamp: r.Timestamp, OriginalTimestamp: r.OriginalTimestamp, SentAt: r.SentAt, ReceivedAt: r.ReceivedAt,
		Context: rawJSON(r.Context), Properties: rawJSON(r.Properties), Traits: rawJSON(r.Traits),
		Enrichment: herd.Enrichment{
			URL: val(r.URL), Path: val(r.Path), Referrer: val(r.Referrer), Title: val(r.Title), Search: val(r.Search),
			UTMSource: val(r.UTMSource), UTMMedium: val(r.UTMMedium), UTMCampaign: val(r.UTMCampaign), UTMTerm: val(r.UTMTerm), UTMContent: val(r.UTMContent),
			IP: val(r.IP), Country: val(r.Country), Region: val(r.Region), City: val(r.City), UserAgent: val(r.UserAgent),
			Browser: val(r.Browser), BrowserVersion: val(r.BrowserVersion), OS: val(r.OS), DeviceType: val(r.DeviceType), IsBot: r.IsBot,
			SessionID: val(r.SessionID), LibraryName: val(r.LibraryName), LibraryVersion: val(r.LibraryVersion),
			ReferrerHost: val(r.ReferrerHost), ReferrerClass: val(r.ReferrerClass), GCLID: val(r.GCLID), FBCLID: val(r.FBCLID),
			OSVersion: val(r.OSVersion), BotReason: val(r.BotReason), ASOrg: val(r.ASOrg), ASN: intVal(r.ASN),
		},
	}
}

// encodeFile writes records as one zstd-compressed Parquet file, paced by
// ctx's pacer (see pace.go), if any.
func encodeFile(ctx context.Context, recs []record) ([]byte, error) {
	lo, hi := recs[0].StreamSeq, recs[0].StreamSeq
	for i := range recs {
		lo, hi = min(lo, recs[i].StreamSeq), max(hi, recs[i].StreamSeq)
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[record](&buf,
		parquet.Compression(lakeZstd),
		parquet.CreatedBy("herd", "", ""),
		parquet.KeyValueMetadata("herd.first_seq", strconv.FormatInt(lo, 10)),
		parquet.KeyValueMetadata("herd.last_seq", strconv.FormatInt(hi, 10)),
	)
	// Rows go in a few hundred at a time: the pages that fill meanwhile
	// are encoded and compressed within the same call, so no call is long.
	pace := pacerOf(ctx)
	for i := 0; i < len(recs); i += encodeChunk {
		pace.step()
		if _, err := w.Write(recs[i:min(i+encodeChunk, len(recs))]); err != nil {
			return nil, fmt.Errorf("encode %d rows as parquet: %w", len(recs), err)
		}
	}
	pace.step()
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("finish parquet file of %d rows: %w", len(recs), err)
	}
	return buf.Bytes(), nil
}

// encodeChunk is how many rows encodeFile writes between pacing steps.
const encodeChunk = 256

func decodeFile(data []byte) ([]record, error) {
	return parquet.Read[record](bytes.NewReader(data), int64(len(data)))
}

func checksum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// partition is one Hive-style directory of the lake: a source and an hour
// of the corrected event time (UTC), the same clock that picks the day
// partition of herd.events, so a recent day of the warehouse is a date=
// directory of the lake. An event that was already older than the window
// when it reached the stream goes to its month's bucket instead
// (month=true, hour the month's first instant, directory hour=-1), so the
// number of directories follows the wall clock, not the event times that
// clients send.
type partition struct {
	source int64
	hour   time.Time
	month  bool
}

// monthHour is the hour= value of a month bucket: no real hour.
const monthHour = -1

// partitionOf places an event that reached the stream at arrived (the
// stream's own timestamp, the same on every redelivery, so a message always
// lands in the same directory).
func partitionOf(e *herd.Event, arrived time.Time, window time.Duration) partition {
	ts := e.Timestamp.UTC()
	if !arrived.IsZero() && ts.Before(arrived.Add(-window)) {
		return partition{source: e.SourceID, hour: time.Date(ts.Year(), ts.Month(), 1, 0, 0, 0, 0, time.UTC), month: true}
	}
	return partition{source: e.SourceID, hour: ts.Truncate(time.Hour)}
}

func (p partition) prefix() string {
	h := p.hour.Hour()
	if p.month {
		h = monthHour
	}
	return fmt.Sprintf("source=%d/date=%s/hour=%d/", p.source, p.hour.Format(time.DateOnly), h)
}

// holds reports whether an event at t belongs in the partition's time span.
func (p partition) holds(t time.Time) bool {
	t = t.UTC()
	if p.month {
		return t.Year() == p.hour.Year() && t.Month() == p.hour.Month()
	}
	return t.Truncate(time.Hour).Equal(p.hour)
}

func (p partition) String() string { return strings.TrimSuffix(p.prefix(), "/") }

// fileName is deterministic in the sequence range a file holds: written
// again after a crash, the same batch gets the same name.
func fileName(first, last uint64) string {
	return fmt.Sprintf("part-%d-%d.parquet", first, last)
}

// taggedName names a file that replaces or adds to the archiver's own: a
// compaction's ("c") or a gap repair's ("r"), with the partition's
// generation so that a rewrite never overwrites a file the manifest lists.
func taggedName(first, last uint64, tag string, gen int) string {
	return fmt.Sprintf("part-%d-%d.%s%d.parquet", first, last, tag, gen)
}

// parseFileName reads "part-<first>-<last>.parquet" (the archiver's) or
// "part-<first>-<last>.<tag><gen>.parquet" (a compaction's or a repair's;
// tagged is true).
func parseFileName(name string) (first, last uint64, ok bool) {
	first, last, _, ok = parseName(name)
	return first, last, ok
}

func parseName(name string) (first, last uint64, tagged, ok bool) {
	s, found := strings.CutPrefix(name, "part-")
	if !found {
		return 0, 0, false, false
	}
	s, found = strings.CutSuffix(s, ".parquet")
	if !found {
		return 0, 0, false, false
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		tag := s[i+1:]
		if tag == "" || strings.Trim(tag, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
			return 0, 0, false, false
		}
		s, tagged = s[:i], true
	}
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false, false
	}
	first, err1 := strconv.ParseUint(a, 10, 64)
	last, err2 := strconv.ParseUint(b, 10, 64)
	return first, last, tagged, err1 == nil && err2 == nil && first <= last
}

// ManifestName is the file in each partition directory that lists its
// Parquet files. The leading underscore keeps it out of Hive readers' way.
const ManifestName = "_manifest.json"

// Manifest lists the files of one partition with their provenance, and
// sums them: Rows, MinSeq and MaxSeq are over every file and are kept by
// writeManifest.
type Manifest struct {
	Version int         `json:"version"`
	Files   []FileEntry `json:"files"`
	// Compacted is true once the partition is closed and its files were
	// merged into one, sorted by (timestamp, message_id), with each
	// message id once. Any file added later (a late event, a gap repair)
	// sets it back to false until the next compaction.
	Compacted   bool       `json:"compacted"`
	CompactedAt *time.Time `json:"compacted_at,omitempty"`
	// Duplicates is how many rows the compactions of this partition
	// dropped as a second copy of a message id (client retries,
	// redeliveries).
	Duplicates int64 `json:"duplicates_dropped,omitempty"`
	Rows       int64 `json:"rows"`
	// MinSeq and MaxSeq bound the stream sequences of the partition's rows
	// (0 when it has none).
	MinSeq uint64 `json:"min_seq"`
	MaxSeq uint64 `json:"max_seq"`
	// Generation counts the rewrites (compactions, repairs) of the
	// partition; it names their files.
	Generation int `json:"generation,omitempty"`
	// Superseded lists files a rewrite replaced and that may still exist
	// (the process died before deleting them): they are deleted when the
	// partition is next opened, and never read.
	Superseded []string `json:"superseded,omitempty"`
}

// FileEntry describes one Parquet file: which stream messages made it (the
// sequence range; the file's stream_seq column has each one), how many
// rows, and a checksum of its bytes.
type FileEntry struct {
	Name         string    `json:"name"`
	Stream       string    `json:"stream"`
	FirstSeq     uint64    `json:"first_seq"`
	LastSeq      uint64    `json:"last_seq"`
	Rows         int64     `json:"rows"`
	Bytes        int64     `json:"bytes"`
	SHA256       string    `json:"sha256"`
	MinTimestamp time.Time `json:"min_timestamp"`
	MaxTimestamp time.Time `json:"max_timestamp"`
	WrittenAt    time.Time `json:"written_at"`
}

func describe(name, streamName string, data []byte, recs []record) FileEntry {
	f := FileEntry{
		Name: name, Stream: streamName, Rows: int64(len(recs)), Bytes: int64(len(data)),
		SHA256: checksum(data), WrittenAt: time.Now().UTC(),
	}
	for i := range recs {
		r := &recs[i]
		s := uint64(r.StreamSeq)
		if i == 0 || s < f.FirstSeq {
			f.FirstSeq = s
		}
		if s > f.LastSeq {
			f.LastSeq = s
		}
		if i == 0 || r.Timestamp.Before(f.MinTimestamp) {
			f.MinTimestamp = r.Timestamp
		}
		if r.Timestamp.After(f.MaxTimestamp) {
			f.MaxTimestamp = r.Timestamp
		}
	}
	return f
}

// sum sets Rows, MinSeq and MaxSeq from the files (manifests written
// before those fields existed have them from here too).
func (m *Manifest) sum() {
	m.Rows, m.MinSeq, m.MaxSeq = 0, 0, 0
	for i, f := range m.Files {
		m.Rows += f.Rows
		if i == 0 || f.FirstSeq < m.MinSeq {
			m.MinSeq = f.FirstSeq
		}
		m.MaxSeq = max(m.MaxSeq, f.LastSeq)
	}
}

func readManifest(ctx context.Context, lake Lake, prefix string) (*Manifest, error) {
	b, err := lake.Get(ctx, prefix+ManifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return &Manifest{Version: 1}, nil
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse manifest %s%s: %w", prefix, ManifestName, err)
	}
	m.sum()
	return &m, nil
}

func writeManifest(ctx context.Context, lake Lake, prefix string, m *Manifest) error {
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].FirstSeq < m.Files[j].FirstSeq })
	m.sum()
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	return lake.Put(ctx, prefix+ManifestName, b)
}

// parseKey splits a lake key "source=1/date=2026-11-26/hour=10/name" (or a
// month bucket's "source=1/date=2003-05-01/hour=-1/name") into its
// partition and file name.
func parseKey(key string) (p partition, name string, ok bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 {
		return p, "", false
	}
	src, ok1 := strings.CutPrefix(parts[0], "source=")
	date, ok2 := strings.CutPrefix(parts[1], "date=")
	hour, ok3 := strings.CutPrefix(parts[2], "hour=")
	if !ok1 || !ok2 || !ok3 {
		return p, "", false
	}
	id, err := strconv.ParseInt(src, 10, 64)
	if err != nil {
		return p, "", false
	}
	d, err := time.Parse(time.DateOnly, date)
	if err != nil {
		return p, "", false
	}
	h, err := strconv.Atoi(hour)
	if err == nil && h == monthHour && d.Day() == 1 {
		return partition{source: id, hour: d, month: true}, parts[3], true
	}
	if err != nil || h < 0 || h > 23 {
		return p, "", false
	}
	return partition{source: id, hour: d.Add(time.Duration(h) * time.Hour)}, parts[3], true
}
