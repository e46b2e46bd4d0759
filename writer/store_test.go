package writer

import (
	"testing"

	"github.com/herdhq/herd"
)

func TestFirstOfEach(t *testing.T) {
	row := func(src int64, id string, seq uint64) Row {
		return Row{Event: herd.Event{SourceID: src, MessageID: id}, Seq: seq}
	}
	cases := []struct {
		name string
		in   []Row
		want []uint64 // sequences kept, in input order
	}{
		{"no repeats", []Row{row(1, "a", 1), row(1, "b", 2), row(2, "a", 3)}, []uint64{1, 2, 3}},
		{"redelivered later in the batch", []Row{row(1, "a", 5), row(1, "b", 6), row(1, "a", 9)}, []uint64{5, 6}},
		{"lower sequence second", []Row{row(1, "a", 9), row(1, "a", 4)}, []uint64{4}},
		{"replayed rows (no sequence) lose to streamed ones", []Row{row(1, "a", 0), row(1, "a", 7)}, []uint64{7}},
		{"same id, other source", []Row{row(1, "a", 1), row(2, "a", 2)}, []uint64{1, 2}},
	}
	for _, c := range cases {
		got := firstOfEach(c.in)
		var seqs []uint64
		for _, r := range got {
			seqs = append(seqs, r.Seq)
		}
		if len(seqs) != len(c.want) {
			t.Errorf("%s: kept %v, want %v", c.name, seqs, c.want)
			continue
		}
		for i := range seqs {
			if seqs[i] != c.want[i] {
				t.Errorf("%s: kept %v, want %v", c.name, seqs, c.want)
				break
			}
		}
	}
}
