package collector

import (
	"bytes"
	"fmt"

	"github.com/herdhq/herd"
	json "github.com/herdhq/herd/internal/fastjson"
)

// A reader of the top-level members of a JSON object, without reflection.
// Every text it is given has passed scanJSON (the body, or a part of it), so
// it only finds the boundaries of members and values; on anything else it
// stops without panicking. Values are sub-slices of the text, not copies:
// they live as long as the request's body, and everything that outlives the
// request (frames, rejects) copies them.
//
// Keys match as goccy/go-json (and so the reflective decoder this replaces)
// matches them: escapes decoded, ASCII letters in any case.

// member is one member of an object: its key as written (without the
// quotes), whether the key holds an escape, and its raw value.
type member struct {
	quoted []byte // the key with its quotes
	key    []byte
	esc    bool
	val    []byte
}

// objIter walks the members of an object.
type objIter struct {
	b []byte
	i int
}

// newObjIter starts at obj's opening brace; false when obj is no object.
func newObjIter(obj []byte) (objIter, bool) {
	it := objIter{b: obj}
	it.space()
	if it.i >= len(obj) || obj[it.i] != '{' {
		return it, false
	}
	it.i++
	return it, true
}

func (it *objIter) space() {
	for it.i < len(it.b) {
		switch it.b[it.i] {
		case ' ', '\t', '\n', '\r':
			it.i++
		default:
			return
		}
	}
}

// next returns the next member; false at the end of the object (or of a
// malformed text).
func (it *objIter) next() (m member, ok bool) {
	it.space()
	if it.i < len(it.b) && it.b[it.i] == ',' {
		it.i++
		it.space()
	}
	if it.i >= len(it.b) || it.b[it.i] != '"' {
		return m, false
	}
	end, esc := stringEnd(it.b, it.i)
	if end < 0 {
		return m, false
	}
	m.quoted, m.key, m.esc = it.b[it.i:end], it.b[it.i+1:end-1], esc
	it.i = end
	it.space()
	if it.i >= len(it.b) || it.b[it.i] != ':' {
		return m, false
	}
	it.i++
	it.space()
	vend := valueEnd(it.b, it.i)
	if vend < 0 {
		return m, false
	}
	m.val = it.b[it.i:vend]
	it.i = vend
	return m, true
}

// arrIter walks the elements of an array.
type arrIter struct {
	b []byte
	i int
}

func newArrIter(arr []byte) (arrIter, bool) {
	it := arrIter{b: arr}
	(*objIter)(&it).space()
	if it.i >= len(arr) || arr[it.i] != '[' {
		return it, false
	}
	it.i++
	return it, true
}

func (it *arrIter) next() ([]byte, bool) {
	o := (*objIter)(it)
	o.space()
	if it.i < len(it.b) && it.b[it.i] == ',' {
		it.i++
		o.space()
	}
	if it.i >= len(it.b) || it.b[it.i] == ']' {
		return nil, false
	}
	end := valueEnd(it.b, it.i)
	if end < 0 {
		return nil, false
	}
	v := it.b[it.i:end]
	it.i = end
	return v, true
}

// stringEnd returns the index just past the string that opens at b[i], and
// whether it holds a backslash escape; -1 when it does not close.
func stringEnd(b []byte, i int) (int, bool) {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1, false
		}
		q := j + k
		// The quote closes the string unless an odd number of
		// backslashes precede it.
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, bytes.IndexByte(b[i+1:q], '\\') >= 0
		}
		j = q + 1
	}
}

// valueEnd returns the index just past the value that starts at b[i]; -1
// when there is none.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := stringEnd(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			case '"':
				end, _ := stringEnd(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			}
		}
		return -1
	}
	// A number or a literal: up to the next delimiter.
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			if j == i {
				return -1
			}
			return j
		}
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// is reports whether the member's key is name (lower case ASCII), matched
// as the reflective decoder matches a field's name.
func (m *member) is(name string) bool {
	key := m.key
	if m.esc {
		var s string
		if err := json.Unmarshal(m.quoted, &s); err != nil {
			return false
		}
		key = []byte(s)
	}
	if len(key) != len(name) {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// jsonKind names the kind of a JSON value for error messages.
func jsonKind(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// stringField decodes a member that must hold a string (or null, which
// leaves dst as it is).
func stringField(dst *string, field string, v []byte) error {
	if len(v) == 0 || v[0] == 'n' {
		return nil
	}
	s, ok := jsonString(v)
	if !ok {
		return fmt.Errorf("field %q must be a string, not %s", field, jsonKind(v))
	}
	*dst = s
	return nil
}

// jsonString decodes a JSON string value: one allocation, and none of the
// decoder's machinery unless it holds an escape. Invalid UTF-8 is kept as
// sent (checkRaw refuses events that hold it).
func jsonString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	inner := v[1 : len(v)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return "", false
			}
			return s, true
		}
	}
	return string(inner), true
}

// decodeEvent fills w from the members of the event object obj.
func decodeEvent(obj []byte, w *wireEvent) error {
	it, ok := newObjIter(obj)
	if !ok {
		return fmt.Errorf("event must be a JSON object")
	}
	for {
		m, ok := it.next()
		if !ok {
			return nil
		}
		var err error
		switch {
		case m.is("type"):
			if t := knownType(m.val); t != "" {
				w.Type = t
			} else {
				err = stringField(&w.Type, "type", m.val)
			}
		case m.is("event"):
			w.Event = m.val
		case m.is("name"):
			w.Name = m.val
		case m.is("messageid"):
			w.MessageID = m.val
		case m.is("anonymousid"):
			w.AnonymousID = m.val
		case m.is("userid"):
			w.UserID = m.val
		case m.is("groupid"):
			w.GroupID = m.val
		case m.is("previousid"):
			w.PreviousID = m.val
		case m.is("timestamp"):
			w.Timestamp = m.val
		case m.is("originaltimestamp"):
			w.OriginalTimestamp = m.val
		case m.is("sentat"):
			w.SentAt = m.val
		case m.is("context"):
			w.Context = m.val
		case m.is("properties"):
			w.Properties = m.val
		case m.is("traits"):
			w.Traits = m.val
		case m.is("writekey"):
			err = stringField(&w.WriteKey, "writeKey", m.val)
		}
		if err != nil {
			return err
		}
	}
}

// decodeBatch fills b from the members of a batch body. It keeps at most
// keep items but counts them all (b.count).
func decodeBatch(obj []byte, b *wireBatch, keep int) error {
	it, ok := newObjIter(obj)
	if !ok {
		return fmt.Errorf("body must be a JSON object")
	}
	for {
		m, ok := it.next()
		if !ok {
			return nil
		}
		switch {
		case m.is("batch"):
			b.Batch, b.count = b.Batch[:0], 0
			if m.val[0] == 'n' {
				continue
			}
			arr, ok := newArrIter(m.val)
			if !ok {
				return fmt.Errorf("field %q must be an array, not %s", "batch", jsonKind(m.val))
			}
			for {
				item, ok := arr.next()
				if !ok {
					break
				}
				if b.count < keep {
					b.Batch = append(b.Batch, item)
				}
				b.count++
			}
		case m.is("context"):
			b.Context = m.val
		case m.is("sentat"):
			b.SentAt = m.val
		case m.is("writekey"):
			if err := stringField(&b.WriteKey, "writeKey", m.val); err != nil {
				return err
			}
		}
	}
}

// knownType is the event type a plain JSON string names, without an
// allocation; "" for anything else.
func knownType(v []byte) string {
	if len(v) < 2 || v[0] != '"' {
		return ""
	}
	switch string(v[1 : len(v)-1]) {
	case herd.TypeTrack:
		return herd.TypeTrack
	case herd.TypePage:
		return herd.TypePage
	case herd.TypeScreen:
		return herd.TypeScreen
	case herd.TypeIdentify:
		return herd.TypeIdentify
	case herd.TypeGroup:
		return herd.TypeGroup
	case herd.TypeAlias:
		return herd.TypeAlias
	}
	return ""
}
