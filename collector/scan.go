package collector

import (
	"encoding/binary"
	"unicode/utf8"
)

// scanInfo is what one pass over a JSON text learns besides its validity:
// what checkRaw would otherwise find in three more passes.
type scanInfo struct {
	depth   int  // deepest nesting of objects and arrays
	nul     bool // holds the escape \u0000
	badUTF8 bool // holds bytes that are not UTF-8
}

// maxScanDepth is the nesting past which scanJSON calls a text invalid, as
// encoding/json does.
const maxScanDepth = 10000

// scanJSON reports whether b is one valid JSON value (surrounding
// whitespace allowed), with exactly encoding/json.Valid's verdict, and what
// it holds. It replaces json.Valid on the request path: one pass instead of
// four, without the state machine's call per byte.
func scanJSON(b []byte) (scanInfo, bool) {
	s := scanner{b: b}
	s.space()
	if !s.value() {
		return s.info, false
	}
	s.space()
	return s.info, s.i == len(b)
}

type scanner struct {
	b     []byte
	i     int
	depth int
	info  scanInfo
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		return s.string()
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

func (s *scanner) literal(w string) bool {
	if len(s.b)-s.i < len(w) || string(s.b[s.i:s.i+len(w)]) != w {
		return false
	}
	s.i += len(w)
	return true
}

func (s *scanner) enter() bool {
	s.depth++
	if s.depth > s.info.depth {
		s.info.depth = s.depth
	}
	return s.depth <= maxScanDepth
}

func (s *scanner) object() bool {
	if !s.enter() {
		return false
	}
	s.i++ // {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' || !s.string() {
			return false
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.space()
		if !s.value() {
			return false
		}
		if more, ok := s.next('}'); !more {
			return ok
		}
	}
}

func (s *scanner) array() bool {
	if !s.enter() {
		return false
	}
	s.i++ // [
	s.space()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		if !s.value() {
			return false
		}
		if more, ok := s.next(']'); !more {
			return ok
		}
	}
}

// next reads what follows a member of an object or array: a comma (more
// members), or end, the closing byte (the container is done and valid).
func (s *scanner) next(end byte) (more, ok bool) {
	s.space()
	if s.i >= len(s.b) {
		return false, false
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		s.space()
		return true, true
	case end:
		s.i++
		s.depth--
		return false, true
	}
	return false, false
}

func (s *scanner) string() bool {
	s.i++ // "
	for s.i < len(s.b) {
		// Eight bytes at a time while none needs a look of its own: most
		// of a body is plain ASCII inside strings.
		for len(s.b)-s.i >= 8 && plain8(binary.LittleEndian.Uint64(s.b[s.i:])) {
			s.i += 8
		}
		// Then byte by byte through the plain ones.
		for s.i < len(s.b) && plainByte[s.b[s.i]] {
			s.i++
		}
		if s.i >= len(s.b) {
			break
		}
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return true
		case c == '\\':
			if s.i+1 >= len(s.b) {
				return false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if len(s.b)-s.i < 6 {
					return false
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !isHex(h) {
						return false
					}
				}
				if string(s.b[s.i+2:s.i+6]) == "0000" {
					s.info.nul = true
				}
				s.i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n == 1 {
				s.info.badUTF8 = true
			}
			s.i += n
		}
	}
	return false
}

// plainByte marks the bytes a string may hold as they are: ASCII, not a
// control character, quote or backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plain8 reports whether none of the eight bytes in x is a quote, a
// backslash, a control character or outside ASCII.
func plain8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote := x ^ (ones * '"')
	bslash := x ^ (ones * '\\')
	// A byte is zero in v exactly when (v - 1) borrows into its high bit
	// while its own high bit is clear; the same test finds bytes < 0x20.
	special := (quote-ones) & ^quote | (bslash-ones) & ^bslash | (x-ones*0x20) & ^x
	return (special|x)&highs == 0
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (s *scanner) number() bool {
	b := s.b
	if b[s.i] == '-' {
		s.i++
	}
	if s.i >= len(b) {
		return false
	}
	switch {
	case b[s.i] == '0':
		s.i++
	case b[s.i] >= '1' && b[s.i] <= '9':
		for s.i < len(b) && b[s.i] >= '0' && b[s.i] <= '9' {
			s.i++
		}
	default:
		return false
	}
	if s.i < len(b) && b[s.i] == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if s.i < len(b) && (b[s.i] == 'e' || b[s.i] == 'E') {
		s.i++
		if s.i < len(b) && (b[s.i] == '+' || b[s.i] == '-') {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}
