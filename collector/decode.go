package collector

import (
	"bytes"
	"fmt"
	json "github.com/herdhq/herd/internal/fastjson"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herdhq/herd"
)

// Limits on what a request may carry, applied after decompression.
const (
	MaxEventBytes   = 32 << 10
	MaxBatchBytes   = 500 << 10
	MaxBatchEvents  = 2500
	MaxEventNameLen = 1024
	MaxIDLen        = 512
	MaxDepth        = 64
)

// wireEvent is an event as clients send it (Segment's spec), read by
// decodeEvent. Identifiers are raw because some clients send numbers. The
// raw fields are slices of the request's body.
type wireEvent struct {
	Type              string          `json:"type"`
	Event             json.RawMessage `json:"event"`
	Name              json.RawMessage `json:"name"`
	MessageID         json.RawMessage `json:"messageId"`
	AnonymousID       json.RawMessage `json:"anonymousId"`
	UserID            json.RawMessage `json:"userId"`
	GroupID           json.RawMessage `json:"groupId"`
	PreviousID        json.RawMessage `json:"previousId"`
	Timestamp         json.RawMessage `json:"timestamp"`
	OriginalTimestamp json.RawMessage `json:"originalTimestamp"`
	SentAt            json.RawMessage `json:"sentAt"`
	Context           json.RawMessage `json:"context"`
	Properties        json.RawMessage `json:"properties"`
	Traits            json.RawMessage `json:"traits"`
	WriteKey          string          `json:"writeKey"`
}

// wireBatch is the body of /v1/batch and /v1/import, read by decodeBatch.
type wireBatch struct {
	Batch    []json.RawMessage `json:"batch"`
	Context  json.RawMessage   `json:"context"`
	SentAt   json.RawMessage   `json:"sentAt"`
	WriteKey string            `json:"writeKey"`
	count    int               // items in the body; Batch holds the first MaxBatchEvents
}

// request is a decoded body: the raw items, with the batch-level fields to
// merge into each.
type request struct {
	items    []json.RawMessage
	context  json.RawMessage
	sentAt   json.RawMessage
	writeKey string
	batch    bool
	bctx     *batchContext // context parsed once; nil when none
	bodyLen  int           // decompressed bytes: the base of the request's storage budget
	parsed   *wireEvent    // the single event, already decoded
	// scanned, when set, holds for every item: checkRaw need not scan them.
	scanned *scanInfo
}

// single is a one-event request with what it points to, in one allocation.
type single struct {
	r    request
	w    wireEvent
	info scanInfo
	item [1]json.RawMessage
}

// decodeBody splits a body into items. Errors are request-level: the whole
// request is refused.
func decodeBody(body []byte, batch bool) (*request, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, herd.Errorf(herd.ErrInvalid, "empty body: send a JSON object")
	}
	if body[0] != '{' {
		return nil, herd.Errorf(herd.ErrInvalid, "body must be a JSON object")
	}
	// goccy/go-json copies RawMessage fields (properties, context, batch
	// items) without checking them, and its Valid accepts numbers such as 01:
	// without this check invalid JSON would be answered 200 and reach the
	// stream. scanJSON has encoding/json.Valid's verdict.
	info, ok := scanJSON(body)
	if !ok {
		return nil, herd.Errorf(herd.ErrInvalid, "body is not valid JSON")
	}
	if !batch {
		// One parse: the event itself, which also carries the write key.
		r := &single{}
		if err := decodeEvent(body, &r.w); err != nil {
			return nil, herd.Errorf(herd.ErrInvalid, "body is not a valid event: %v", err)
		}
		r.info = info
		r.item[0] = body
		r.r = request{items: r.item[:], parsed: &r.w, scanned: &r.info, writeKey: r.w.WriteKey, bodyLen: len(body)}
		return &r.r, nil
	}
	var b wireBatch
	if err := decodeBatch(body, &b, MaxBatchEvents); err != nil {
		return nil, herd.Errorf(herd.ErrInvalid, "body is not a valid batch: %v", err)
	}
	if b.count == 0 {
		return nil, herd.Errorf(herd.ErrInvalid, "batch is empty: send {\"batch\": [event, ...]}")
	}
	if b.count > MaxBatchEvents {
		return nil, herd.Errorf(herd.ErrTooLarge, "batch holds %d events; the limit is %d", b.count, MaxBatchEvents)
	}
	r := &request{items: b.Batch, context: b.Context, sentAt: b.SentAt, writeKey: b.WriteKey, batch: true, bodyLen: len(body)}
	clean := !info.nul && !info.badUTF8
	if err := checkBatchContext(b.Context, clean && info.depth <= MaxDepth); err != nil {
		return nil, err
	}
	bc, err := parseBatchContext(b.Context)
	if err != nil {
		return nil, err
	}
	r.bctx = bc
	// Every item sits two levels down the body ({"batch": [item]}): when the
	// body holds no NUL escape or bad UTF-8 and is shallow enough, no item can
	// fail those checks, and the body's depth less two bounds theirs.
	if clean && info.depth-2 <= MaxDepth {
		r.scanned = &scanInfo{depth: info.depth - 2}
	}
	return r, nil
}

// checkBatchContext refuses a batch-level context that would make every
// event it is merged into unstorable or oversized: the event checks apply to
// the context as it will sit in each event. clean says the body's own scan
// already vouches for it (no NUL, valid UTF-8, shallow enough).
func checkBatchContext(ctx json.RawMessage, clean bool) error {
	if len(ctx) == 0 || string(ctx) == "null" {
		return nil
	}
	if ctx[0] != '{' {
		return herd.Errorf(herd.ErrInvalid, "batch context must be an object")
	}
	if len(ctx) > MaxEventBytes {
		return herd.Errorf(herd.ErrTooLarge, "batch context is %d bytes; the limit is %d, as it is merged into every event", len(ctx), MaxEventBytes)
	}
	if clean {
		return nil
	}
	info, _ := scanJSON(ctx) // valid: part of a valid body
	switch {
	case info.badUTF8:
		return herd.Errorf(herd.ErrInvalid, "batch context is not valid UTF-8")
	case info.nul:
		return herd.Errorf(herd.ErrInvalid, `batch context contains \u0000 (NUL), which Postgres text and jsonb cannot store`)
	case info.depth+1 > MaxDepth:
		// In an event the context object is one level down.
		return herd.Errorf(herd.ErrInvalid, "batch context nests %d levels deep in each event; the limit is %d", info.depth+1, MaxDepth)
	}
	return nil
}

// checkRaw refuses an item Postgres could not store or that is unreasonable:
// over the size limit, invalid UTF-8, a NUL character, nesting too deep. info
// is the item's scan when the body's scan was the item's own; nil scans it.
func checkRaw(item []byte, info *scanInfo) error {
	if len(item) > MaxEventBytes {
		return fmt.Errorf("event is %d bytes; the limit is %d", len(item), MaxEventBytes)
	}
	if info == nil {
		in, ok := scanJSON(item)
		if !ok {
			return fmt.Errorf("event is not valid JSON")
		}
		info = &in
	}
	if info.badUTF8 {
		return fmt.Errorf("event is not valid UTF-8")
	}
	if info.nul {
		return fmt.Errorf(`event contains \u0000 (NUL), which Postgres text and jsonb cannot store`)
	}
	if info.depth > MaxDepth {
		return fmt.Errorf("event nests %d levels deep; the limit is %d", info.depth, MaxDepth)
	}
	return nil
}

// idString turns a JSON string or number into an identifier.
func idString(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	switch raw[0] {
	case '"':
		var ok bool
		if s, ok = jsonString(raw); !ok {
			return "", fmt.Errorf("%s is not a valid JSON string", field)
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		s = string(raw)
	default:
		return "", fmt.Errorf("%s must be a string or a number", field)
	}
	if len(s) > MaxIDLen {
		return "", fmt.Errorf("%s is %d bytes; the limit is %d", field, len(s), MaxIDLen)
	}
	return s, nil
}

// nameString reads an event or page name.
func nameString(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	s, ok := jsonString(raw)
	if !ok {
		return "", fmt.Errorf("%s must be a string", field)
	}
	if len(s) > MaxEventNameLen {
		return "", fmt.Errorf("%s is %d bytes; the limit is %d", field, len(s), MaxEventNameLen)
	}
	return s, nil
}

// Time bounds: events before 2000 or more than a day past the moment they
// were received are refused as clock or encoding mistakes.
var minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

const maxFuture = 24 * time.Hour

// parseTime reads an ISO 8601 timestamp (as every Segment library sends), or
// a number of milliseconds since the epoch.
func parseTime(raw json.RawMessage, field string) (*time.Time, error) {
	t, ok, err := parseTimeValue(raw, field)
	if !ok || err != nil {
		return nil, err
	}
	return &t, nil
}

// parseTimeValue is parseTime without the allocation: ok is false when
// there is no time.
func parseTimeValue(raw json.RawMessage, field string) (time.Time, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, false, nil
	}
	if raw[0] == '"' {
		s, ok := jsonString(raw)
		if !ok {
			return time.Time{}, false, fmt.Errorf("%s is not a valid JSON string", field)
		}
		if s == "" {
			return time.Time{}, false, nil
		}
		t, err := ParseTimestamp(s)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("%s %q is not an ISO 8601 timestamp", field, truncate(s, 64))
		}
		return t, true, nil
	}
	ms, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || ms < 0 || ms > 1e15 {
		return time.Time{}, false, fmt.Errorf("%s must be an ISO 8601 string or epoch milliseconds", field)
	}
	return time.UnixMilli(int64(ms)).UTC(), true, nil
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

// ParseTimestamp parses the timestamp forms clients send. A time without a
// zone is taken as UTC.
func ParseTimestamp(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unrecognised timestamp %q", s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// batchContext is a batch-level context, parsed once per request: the
// default for each event's context. (integrations only address destinations
// herd does not have, so they are neither merged nor stored.)
type batchContext struct {
	raw     json.RawMessage
	entries []ctxEntry // sorted by key
}

type ctxEntry struct {
	key    string
	quoted []byte // the key as JSON, without HTML escaping
	value  json.RawMessage
}

// parseBatchContext parses a batch context that checkBatchContext accepted;
// nil when there is none.
func parseBatchContext(raw json.RawMessage) (*batchContext, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, herd.Errorf(herd.ErrInvalid, "batch context must be an object")
	}
	bc := &batchContext{raw: raw, entries: make([]ctxEntry, 0, len(m))}
	for k, v := range m {
		bc.entries = append(bc.entries, ctxEntry{key: k, quoted: appendJSONString(nil, k), value: v})
	}
	slices.SortFunc(bc.entries, func(a, b ctxEntry) int { return strings.Compare(a.key, b.key) })
	return bc, nil
}

// merge returns the batch context overlaid by an event's own context, and
// the merged size. The size is computed first, and the merged object is
// built only when it is at most limit bytes: an oversized event costs no
// more than parsing its own context. Values are copied as sent, never
// re-escaped, so the merged object is never larger than the two together.
func (bc *batchContext) merge(item json.RawMessage, limit int) (json.RawMessage, int, error) {
	if bc == nil {
		return item, len(item), nil
	}
	if len(item) == 0 || string(item) == "null" {
		return bc.raw, len(bc.raw), nil
	}
	var own map[string]json.RawMessage
	if err := json.Unmarshal(item, &own); err != nil {
		return nil, 0, fmt.Errorf("context must be an object")
	}
	if len(own) == 0 {
		return bc.raw, len(bc.raw), nil
	}
	ownKeys := make([]ctxEntry, 0, len(own))
	for k, v := range own {
		ownKeys = append(ownKeys, ctxEntry{key: k, quoted: appendJSONString(nil, k), value: v})
	}
	slices.SortFunc(ownKeys, func(a, b ctxEntry) int { return strings.Compare(a.key, b.key) })
	size, n := 2, 0
	add := func(e *ctxEntry) {
		size += len(e.quoted) + 1 + len(e.value)
		n++
	}
	for i := range bc.entries {
		if _, over := own[bc.entries[i].key]; !over {
			add(&bc.entries[i])
		}
	}
	for i := range ownKeys {
		add(&ownKeys[i])
	}
	if n > 1 {
		size += n - 1
	}
	if size > limit {
		return nil, size, nil
	}
	out := make([]byte, 0, size)
	out = append(out, '{')
	put := func(e *ctxEntry) {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, e.quoted...)
		out = append(out, ':')
		out = append(out, e.value...)
	}
	// Both lists are sorted: merge them in key order.
	i, j := 0, 0
	for i < len(bc.entries) || j < len(ownKeys) {
		switch {
		case j == len(ownKeys) || i < len(bc.entries) && bc.entries[i].key < ownKeys[j].key:
			put(&bc.entries[i])
			i++
		case i < len(bc.entries) && bc.entries[i].key == ownKeys[j].key:
			i++ // overridden by the event's own
		default:
			put(&ownKeys[j])
			j++
		}
	}
	out = append(out, '}')
	return out, size, nil
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, nothing else (s is valid UTF-8, from a
// checked body).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"' || ch == '\\':
			dst = append(dst, '\\', ch)
		case ch < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[ch>>4], hex[ch&0xf])
		default:
			dst = append(dst, ch)
		}
	}
	return append(dst, '"')
}
