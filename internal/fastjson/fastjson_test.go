package fastjson

import (
	"sync"
	"testing"
)

var decode = Unmarshal

// TestConcurrentFirstUse meets each of many types for the first time from
// many goroutines at once, as a collector does when concurrent batches reach
// it right after a start. goccy/go-json alone crashes here now and then (a
// nil decoder read from its unsynchronised type table).
func TestConcurrentFirstUse(t *testing.T) {
	body := []byte(`{"a":"x","b":{"c":[1,2,3]},"d":{"k":{"n":1}}}`)
	for _, f := range probes() {
		var start, done sync.WaitGroup
		start.Add(1)
		errs := make(chan error, 16)
		for range 16 {
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				errs <- f(body)
			}()
		}
		start.Done()
		done.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}
