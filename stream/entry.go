package stream

import (
	"encoding/binary"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herdhq/herd"
)

// Frame entries are events in a compact binary form rather than JSON: the
// writer and the archiver read every event the collector writes, and a JSON
// decode was their largest cost. An entry is the byte EntryBinary, then the
// fields of herd.Event in a fixed order: strings and raw JSON as a uvarint
// length and the bytes, integers as varints, times as varint Unix seconds,
// uvarint nanoseconds and varint zone offset in seconds (an optional time has
// a presence byte first), booleans as one byte. Fields are only ever added at
// the end; a reader stops at the end of the entry, leaving later fields
// zero. DecodeEvent reads either form: JSON starts with '{'.
const EntryBinary = 0x01

// ErrBadEntry reports a binary entry cut short or with a length past its end.
var ErrBadEntry = errors.New("malformed binary event: a field runs past the end of the entry")

// EncodeEntry appends ev as a binary entry to dst. Strings that are not valid
// UTF-8 get U+FFFD for the bad bytes, as the JSON encoding does.
func EncodeEntry(dst []byte, ev *herd.Event) []byte {
	b := append(dst, EntryBinary)
	b = appendStr(b, ev.MessageID)
	b = binary.AppendVarint(b, ev.SourceID)
	b = appendStr(b, ev.Type)
	b = appendStr(b, ev.Event)
	b = appendStr(b, ev.AnonymousID)
	b = appendStr(b, ev.UserID)
	b = appendStr(b, ev.GroupID)
	b = appendStr(b, ev.PreviousID)
	b = appendTime(b, ev.Timestamp)
	b = appendOptTime(b, ev.OriginalTimestamp)
	b = appendOptTime(b, ev.SentAt)
	b = appendTime(b, ev.ReceivedAt)
	b = appendRaw(b, ev.Context)
	b = appendRaw(b, ev.Properties)
	b = appendRaw(b, ev.Traits)
	x := &ev.Enrichment
	beforeBot, afterBot := enrichmentStrings(x)
	for _, s := range beforeBot {
		b = appendStr(b, *s)
	}
	if x.IsBot {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	for _, s := range afterBot {
		b = appendStr(b, *s)
	}
	b = binary.AppendVarint(b, x.ASN)
	return appendStr(b, x.ASOrg)
}

// enrichmentStrings are x's strings in entry order: those before IsBot, and
// those between it and ASN. EncodeEntry and decodeEntry both walk them.
func enrichmentStrings(x *herd.Enrichment) (beforeBot [19]*string, afterBot [9]*string) {
	return [...]*string{&x.URL, &x.Path, &x.Referrer, &x.Title, &x.Search,
			&x.UTMSource, &x.UTMMedium, &x.UTMCampaign, &x.UTMTerm, &x.UTMContent,
			&x.IP, &x.Country, &x.Region, &x.City, &x.UserAgent, &x.Browser, &x.BrowserVersion, &x.OS, &x.DeviceType},
		[...]*string{&x.SessionID, &x.LibraryName, &x.LibraryVersion,
			&x.ReferrerHost, &x.ReferrerClass, &x.GCLID, &x.FBCLID, &x.OSVersion, &x.BotReason}
}

func appendStr(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendRaw writes a raw JSON value; "null" is written empty, as the JSON
// encoding omits it.
func appendRaw(b, v []byte) []byte {
	if string(v) == "null" {
		v = nil
	}
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendTime(b []byte, t time.Time) []byte {
	_, off := t.Zone()
	b = binary.AppendVarint(b, t.Unix())
	b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	return binary.AppendVarint(b, int64(off))
}

func appendOptTime(b []byte, t *time.Time) []byte {
	if t == nil {
		return append(b, 0)
	}
	return appendTime(append(b, 1), *t)
}

// entryReader reads a binary entry. Strings are cut from one copy of the
// entry, so an event costs one allocation for all of them; raw JSON fields
// alias the entry itself.
type entryReader struct {
	data []byte
	s    string // the same bytes as data
	i    int
	err  error
}

func (r *entryReader) more() bool { return r.err == nil && r.i < len(r.data) }

func (r *entryReader) uvarint() uint64 {
	if !r.more() {
		return 0
	}
	v, n := binary.Uvarint(r.data[r.i:])
	if n <= 0 {
		r.err = ErrBadEntry
		return 0
	}
	r.i += n
	return v
}

func (r *entryReader) varint() int64 {
	if !r.more() {
		return 0
	}
	v, n := binary.Varint(r.data[r.i:])
	if n <= 0 {
		r.err = ErrBadEntry
		return 0
	}
	r.i += n
	return v
}

// span returns the bounds of the next length-prefixed field.
func (r *entryReader) span() (int, int) {
	n := r.uvarint()
	if r.err != nil {
		return r.i, r.i
	}
	if n > uint64(len(r.data)-r.i) {
		r.err = ErrBadEntry
		return r.i, r.i
	}
	start := r.i
	r.i += int(n)
	return start, r.i
}

func (r *entryReader) str(dst *string) {
	if i, j := r.span(); j > i {
		*dst = r.s[i:j]
	}
}

func (r *entryReader) raw(dst *[]byte) {
	if i, j := r.span(); j > i {
		*dst = r.data[i:j:j]
	}
}

func (r *entryReader) flag() byte {
	if !r.more() {
		return 0
	}
	r.i++
	return r.data[r.i-1]
}

func (r *entryReader) time(dst *time.Time) {
	if !r.more() {
		return
	}
	sec := r.varint()
	nsec := r.uvarint()
	off := r.varint()
	if r.err != nil || nsec >= 1e9 || off <= -24*3600 || off >= 24*3600 {
		r.err = ErrBadEntry
		return
	}
	t := time.Unix(sec, int64(nsec))
	if off == 0 {
		*dst = t.UTC()
	} else {
		*dst = t.In(time.FixedZone("", int(off)))
	}
}

func (r *entryReader) optTime(dst **time.Time) {
	if r.flag() == 1 {
		var t time.Time
		r.time(&t)
		if r.err == nil {
			*dst = &t
		}
	}
}

func decodeEntry(data []byte, ev *herd.Event) error {
	r := entryReader{data: data, s: string(data), i: 1}
	r.str(&ev.MessageID)
	ev.SourceID = r.varint()
	r.str(&ev.Type)
	r.str(&ev.Event)
	r.str(&ev.AnonymousID)
	r.str(&ev.UserID)
	r.str(&ev.GroupID)
	r.str(&ev.PreviousID)
	r.time(&ev.Timestamp)
	r.optTime(&ev.OriginalTimestamp)
	r.optTime(&ev.SentAt)
	r.time(&ev.ReceivedAt)
	r.raw((*[]byte)(&ev.Context))
	r.raw((*[]byte)(&ev.Properties))
	r.raw((*[]byte)(&ev.Traits))
	x := &ev.Enrichment
	beforeBot, afterBot := enrichmentStrings(x)
	for _, p := range beforeBot {
		r.str(p)
	}
	x.IsBot = r.flag() == 1
	for _, p := range afterBot {
		r.str(p)
	}
	x.ASN = r.varint()
	r.str(&x.ASOrg)
	return r.err
}

// ErrNotEntry is returned by PeekEntry for data in the JSON form.
var ErrNotEntry = errors.New("not a binary entry")

// PeekEntry reads what places a binary entry, without decoding the rest:
// its source, its event time, and whether it has a message id. The archiver
// sorts events into partitions with it, and decodes each only once, when its
// file is written.
func PeekEntry(data []byte) (sourceID int64, ts time.Time, hasID bool, err error) {
	if len(data) == 0 || data[0] != EntryBinary {
		return 0, time.Time{}, false, ErrNotEntry
	}
	r := entryReader{data: data, i: 1}
	i, j := r.span()
	sourceID = r.varint()
	for range 6 { // type, event, anonymous, user, group and previous ids
		r.span()
	}
	r.time(&ts)
	return sourceID, ts, j > i, r.err
}
