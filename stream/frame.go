package stream

import (
	"encoding/binary"
	"errors"
)

// A frame is one stream message carrying several events. The collector packs
// the events that concurrent requests accept for one source into a frame, so
// that JetStream stores, delivers and acknowledges them once rather than once
// each: per message, not per byte, is where the stream spends its time.
//
// Layout: the byte FrameMagic, then for each event its length as a uvarint
// and its bytes: EncodeEntry's binary form (JSON is read too). JSON never
// starts with FrameMagic, so a reader tells a frame from a message holding
// one bare JSON event (as older collectors and the replay tools publish) by
// the first byte.
const FrameMagic = 0x1e

// MaxFrameBytes bounds the frames the collector builds; an event larger than
// what is left of a frame starts the next one.
const MaxFrameBytes = 256 << 10

// ErrBadFrame reports a frame cut short or with a length past its end.
var ErrBadFrame = errors.New("malformed frame: an entry runs past the end of the message")

// IsFrame reports whether data is a frame rather than one bare event.
func IsFrame(data []byte) bool { return len(data) > 0 && data[0] == FrameMagic }

// AppendFrameEntry appends one encoded event to frame, starting the frame if
// it is empty.
func AppendFrameEntry(frame, event []byte) []byte {
	if len(frame) == 0 {
		frame = append(frame, FrameMagic)
	}
	frame = binary.AppendUvarint(frame, uint64(len(event)))
	return append(frame, event...)
}

// FrameEntrySize is what an event of n bytes adds to a frame.
func FrameEntrySize(n int) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], uint64(n)) + n
}

// Entries calls fn with each event of a message, in order: every entry of a
// frame, or data itself when it is a bare event. The entries alias data. It
// stops early when fn returns false, and returns ErrBadFrame, after the
// entries before the damage, when the frame is malformed.
func Entries(data []byte, fn func(i int, event []byte) bool) error {
	if !IsFrame(data) {
		fn(0, data)
		return nil
	}
	rest := data[1:]
	for i := 0; len(rest) > 0; i++ {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return ErrBadFrame
		}
		if !fn(i, rest[k:k+int(n)]) {
			return nil
		}
		rest = rest[k+int(n):]
	}
	return nil
}

// CountEntries is the number of events in a message: 1 for a bare event, and
// for a malformed frame the entries before the damage plus one.
func CountEntries(data []byte) int {
	n := 0
	if err := Entries(data, func(int, []byte) bool { n++; return true }); err != nil {
		n++
	}
	return n
}
