package stream

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/herdhq/herd"
	json "github.com/herdhq/herd/internal/fastjson"
)

// An event on the stream is a message of its own in JSON (what replays and
// collectors before frames publish; readable with any NATS tool), or an
// entry of a frame in the binary form of entry.go (what the collector
// publishes). EncodeEvent writes the JSON by hand rather than through
// reflection, and copies the raw fields (context, properties, traits), which
// were validated already, as they are. DecodeEvent reads both forms, for the
// writer and the archiver.

// EncodeEvent appends ev as JSON to dst. The output decodes, with
// encoding/json or DecodeEvent, to an Event equal to ev; fields follow the
// json tags of herd.Event, empty ones omitted.
func EncodeEvent(dst []byte, ev *herd.Event) []byte {
	e := encoder{b: dst}
	e.b = append(e.b, '{')
	e.str("message_id", ev.MessageID, true)
	e.int("source_id", ev.SourceID, true)
	e.str("type", ev.Type, true)
	e.str("event", ev.Event, false)
	e.str("anonymous_id", ev.AnonymousID, false)
	e.str("user_id", ev.UserID, false)
	e.str("group_id", ev.GroupID, false)
	e.str("previous_id", ev.PreviousID, false)
	e.time("timestamp", &ev.Timestamp)
	if ev.OriginalTimestamp != nil {
		e.time("original_timestamp", ev.OriginalTimestamp)
	}
	if ev.SentAt != nil {
		e.time("sent_at", ev.SentAt)
	}
	e.time("received_at", &ev.ReceivedAt)
	e.raw("context", ev.Context)
	e.raw("properties", ev.Properties)
	e.raw("traits", ev.Traits)
	x := &ev.Enrichment
	e.str("url", x.URL, false)
	e.str("path", x.Path, false)
	e.str("referrer", x.Referrer, false)
	e.str("title", x.Title, false)
	e.str("search", x.Search, false)
	e.str("utm_source", x.UTMSource, false)
	e.str("utm_medium", x.UTMMedium, false)
	e.str("utm_campaign", x.UTMCampaign, false)
	e.str("utm_term", x.UTMTerm, false)
	e.str("utm_content", x.UTMContent, false)
	e.str("ip", x.IP, false)
	e.str("country", x.Country, false)
	e.str("region", x.Region, false)
	e.str("city", x.City, false)
	e.str("user_agent", x.UserAgent, false)
	e.str("browser", x.Browser, false)
	e.str("browser_version", x.BrowserVersion, false)
	e.str("os", x.OS, false)
	e.str("device_type", x.DeviceType, false)
	if x.IsBot {
		e.key("is_bot")
		e.b = append(e.b, "true"...)
	}
	e.str("session_id", x.SessionID, false)
	e.str("library_name", x.LibraryName, false)
	e.str("library_version", x.LibraryVersion, false)
	e.str("referrer_host", x.ReferrerHost, false)
	e.str("referrer_class", x.ReferrerClass, false)
	e.str("gclid", x.GCLID, false)
	e.str("fbclid", x.FBCLID, false)
	e.str("os_version", x.OSVersion, false)
	e.str("bot_reason", x.BotReason, false)
	e.int("asn", x.ASN, false)
	e.str("as_org", x.ASOrg, false)
	return append(e.b, '}')
}

// DecodeEvent reads an event written by EncodeEntry, EncodeEvent or
// encoding/json.
func DecodeEvent(data []byte, ev *herd.Event) error {
	if len(data) > 0 && data[0] == EntryBinary {
		return decodeEntry(data, ev)
	}
	return json.Unmarshal(data, ev)
}

type encoder struct {
	b     []byte
	comma bool
}

func (e *encoder) key(k string) {
	if e.comma {
		e.b = append(e.b, ',')
	}
	e.comma = true
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
}

func (e *encoder) str(k, v string, always bool) {
	if v == "" && !always {
		return
	}
	e.key(k)
	e.b = AppendJSONString(e.b, v)
}

func (e *encoder) int(k string, v int64, always bool) {
	if v == 0 && !always {
		return
	}
	e.key(k)
	e.b = strconv.AppendInt(e.b, v, 10)
}

func (e *encoder) time(k string, t *time.Time) {
	e.key(k)
	e.b = append(e.b, '"')
	e.b = t.AppendFormat(e.b, time.RFC3339Nano)
	e.b = append(e.b, '"')
}

// raw copies a JSON value that the collector has validated; "null" and
// empty are omitted, as encoding/json's omitempty does.
func (e *encoder) raw(k string, v []byte) {
	if len(v) == 0 || string(v) == "null" {
		return
	}
	e.key(k)
	e.b = append(e.b, v...)
}

const hex = "0123456789abcdef"

// AppendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028
// and U+2029 escaped so the text is also safe inside JavaScript.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
