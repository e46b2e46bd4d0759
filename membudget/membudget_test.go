package membudget

import "testing"

// TestDerive: every buffer is sized from the budget, the buffers together
// hold under half of what the runtime may use, a larger budget never gets
// smaller buffers, and parts not in the process get nothing.
func TestDerive(t *testing.T) {
	var prev Sizes
	for _, limit := range []int64{MinLimit, 96 << 20, DefaultLimit, 512 << 20, 4 << 30} {
		s, err := Derive(limit, All)
		if err != nil {
			t.Fatal(err)
		}
		if s.GoLimit <= 0 || s.GoLimit >= limit || s.HeapHigh >= s.GoLimit {
			t.Errorf("%s: GOMEMLIMIT %s, heap bound %s", Format(limit), Format(s.GoLimit), Format(s.HeapHigh))
		}
		held := 2*s.CollectorDecode + s.CollectorInFlight + int64(3*s.WriterBatch+s.WriterPull+s.ArchiverBuffer+s.ArchiverPull) + s.NATSStreamQueue
		if held > s.GoLimit/2 {
			t.Errorf("%s: the buffers hold %s, over half of GOMEMLIMIT %s", Format(limit), Format(held), Format(s.GoLimit))
		}
		if s.ArchiverFile > s.ArchiverBuffer || s.WriterPull < s.WriterBatch || s.NATSClientPending < int64(s.WriterPull+s.ArchiverPull) {
			t.Errorf("%s: inconsistent sizes %+v", Format(limit), s)
		}
		if s.StreamRate <= 0 || s.StreamRate*NATSCacheLife > s.NATSBlockCache || s.NATSBlockCache >= s.GoLimit {
			t.Errorf("%s: stream rate %d/s for block caches of %s", Format(limit), s.StreamRate, Format(s.NATSBlockCache))
		}
		if limit > MinLimit && (s.StreamRate < prev.StreamRate || s.WriterBatch < prev.WriterBatch || s.ArchiverBuffer < prev.ArchiverBuffer || s.CollectorInFlight < prev.CollectorInFlight || s.CollectorConns < prev.CollectorConns) {
			t.Errorf("%s got smaller buffers than %s", Format(limit), Format(prev.Limit))
		}
		prev = s
	}
	if _, err := Derive(MinLimit-1, All); err == nil {
		t.Error("a budget below MinLimit was accepted")
	}
	s, _ := Derive(DefaultLimit, Parts{Collector: true})
	if s.WriterBatch != 0 || s.ArchiverBuffer != 0 || s.NATSMemory != 0 || s.StreamRate != 0 || s.CollectorInFlight == 0 {
		t.Errorf("collector alone: %+v", s)
	}
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"200MiB", 200 << 20, true}, {"200M", 200 << 20, true}, {"1GiB", 1 << 30, true}, {"1.5GiB", 3 << 29, true},
		{"512MB", 512e6, true}, {"1048576", 1 << 20, true}, {" 64 MiB ", 64 << 20, true},
		{"", 0, false}, {"MiB", 0, false}, {"-5MiB", 0, false}, {"10XB", 0, false}, {"ten", 0, false},
	} {
		got, err := Parse(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("Parse(%q) = %d, %v; want %d (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}
