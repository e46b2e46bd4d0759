package saas

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

type countingConnector struct{ passes atomic.Int32 }

func (c *countingConnector) Name() string { return "counting" }
func (c *countingConnector) Sync(context.Context) error {
	if c.passes.Add(1) == 1 {
		return errors.New("first pass fails") // the loop must carry on
	}
	return nil
}
func (c *countingConnector) Webhook(context.Context, []byte) error { return nil }
func (c *countingConnector) Check(context.Context) ([]Diff, error) { return nil, nil }

func TestRunnerRepeatsPassesUntilCancelled(t *testing.T) {
	t.Parallel()
	c := &countingConnector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Runner{Connector: c, Interval: 5 * time.Millisecond}).Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for c.passes.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d passes", c.passes.Load())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil on cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestDiffClean(t *testing.T) {
	t.Parallel()
	if !(Diff{Source: 2, Warehouse: 2}).Clean() {
		t.Error("equal counts and no ids: want clean")
	}
	for _, d := range []Diff{{Source: 2, Warehouse: 1}, {Missing: []string{"a"}}, {Extra: []string{"a"}}, {Changed: []string{"a"}}} {
		if d.Clean() {
			t.Errorf("%+v reported clean", d)
		}
	}
}
