package stream_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/stream"
)

func TestFrameRoundTrip(t *testing.T) {
	events := [][]byte{[]byte(`{"message_id":"a"}`), bytes.Repeat([]byte("x"), 300), []byte(`{}`)}
	var frame []byte
	size := 1
	for _, e := range events {
		frame = stream.AppendFrameEntry(frame, e)
		size += stream.FrameEntrySize(len(e))
	}
	if !stream.IsFrame(frame) || len(frame) != size {
		t.Fatalf("frame of %d bytes (IsFrame %v), want %d", len(frame), stream.IsFrame(frame), size)
	}
	var got [][]byte
	if err := stream.Entries(frame, func(i int, e []byte) bool {
		if i != len(got) {
			t.Fatalf("entry %d given as %d", len(got), i)
		}
		got = append(got, e)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", events) || stream.CountEntries(frame) != 3 {
		t.Fatalf("entries %q (count %d), want %q", got, stream.CountEntries(frame), events)
	}

	// A bare event is one entry, itself.
	bare := []byte(`{"message_id":"b"}`)
	got = got[:0]
	if err := stream.Entries(bare, func(_ int, e []byte) bool { got = append(got, e); return true }); err != nil || len(got) != 1 || !bytes.Equal(got[0], bare) {
		t.Fatalf("bare event: %q %v", got, err)
	}

	// Cut anywhere inside the last entry: the entries before it, then the error.
	for cut := len(frame) - 1; cut > len(frame)-stream.FrameEntrySize(2); cut-- {
		n := 0
		err := stream.Entries(frame[:cut], func(int, []byte) bool { n++; return true })
		if !errors.Is(err, stream.ErrBadFrame) || n != 2 || stream.CountEntries(frame[:cut]) != 3 {
			t.Fatalf("cut at %d: %d entries, %v", cut, n, err)
		}
	}
}

// FuzzEntries: any message is walked and its entries decoded without
// panicking, and every entry lies inside it.
func FuzzEntries(f *testing.F) {
	f.Add(stream.AppendFrameEntry(stream.AppendFrameEntry(nil, []byte(`{"a":1}`)), []byte(`{}`)))
	f.Add([]byte{stream.FrameMagic, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte(`{"message_id":"x"}`))
	ev := herd.Event{MessageID: "m", SourceID: 3, Type: "track", Context: []byte(`{"a":1}`)}
	f.Add(stream.AppendFrameEntry(nil, stream.EncodeEntry(nil, &ev)))
	f.Fuzz(func(t *testing.T, data []byte) {
		total := 0
		_ = stream.Entries(data, func(_ int, e []byte) bool {
			total += len(e)
			var ev herd.Event
			_ = stream.DecodeEvent(e, &ev)
			_, _, _, _ = stream.PeekEntry(e)
			return true
		})
		if total > len(data) {
			t.Fatalf("entries of %d bytes in a message of %d", total, len(data))
		}
	})
}
