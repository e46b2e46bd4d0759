package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ledger is the client's record: which messageIds were sent, which got a
// 200, which saw a 5xx. It is what the rows are checked against.
type ledger struct {
	mu           sync.Mutex
	sent         map[string]bool
	acked        map[string]bool
	got5xx       map[string]bool
	gaveUp       map[string]bool
	responses5xx int      // 5xx responses (a batch counts once per reply)
	noRetryAfter int      // 503s without a Retry-After header
	transport    int      // connection errors and timeouts
	unexpected   []string // replies a healthy collector must never give
}

func newLedger() *ledger {
	return &ledger{sent: map[string]bool{}, acked: map[string]bool{}, got5xx: map[string]bool{}, gaveUp: map[string]bool{}}
}

type counts struct{ sent, acked, got5xx, responses5xx, gaveUp int }

func (l *ledger) counts() counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return counts{len(l.sent), len(l.acked), len(l.got5xx), l.responses5xx, len(l.gaveUp)}
}

// load is a client population: workers each send batches of events with
// fresh messageIds and retry a batch, with the same ids, until it gets a 200
// or retryFor passes, as a real tracking library does after a 503 or a
// dropped connection.
type load struct {
	t        *testing.T
	urls     []string
	key      string
	prefix   string
	batch    int
	pause    time.Duration
	retryFor time.Duration
	led      *ledger
	client   *http.Client

	stop chan struct{}
	wg   sync.WaitGroup
}

type loadConfig struct {
	workers  int
	batch    int           // events per request
	pause    time.Duration // between a worker's batches
	retryFor time.Duration // a batch is given up after this long
}

func startLoad(t *testing.T, l *lab, prefix string, cfg loadConfig) *load {
	ld := &load{
		t: t, urls: l.collURLs, key: l.writeKey, prefix: prefix, batch: cfg.batch, pause: cfg.pause, retryFor: cfg.retryFor,
		led:    newLedger(),
		client: &http.Client{Timeout: 8 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.workers}},
		stop:   make(chan struct{}),
	}
	for w := range cfg.workers {
		ld.wg.Add(1)
		go ld.worker(w)
	}
	// Whatever happens to the test, the workers end with it.
	t.Cleanup(ld.finish)
	return ld
}

// finish stops new batches and waits for the ones in flight to be answered
// or given up.
func (ld *load) finish() {
	select {
	case <-ld.stop:
	default:
		close(ld.stop)
	}
	ld.wg.Wait()
}

func (ld *load) stopped() bool {
	select {
	case <-ld.stop:
		return true
	default:
		return false
	}
}

func (ld *load) worker(w int) {
	defer ld.wg.Done()
	for n := 0; !ld.stopped(); n++ {
		ids := make([]string, ld.batch)
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-%d-%d-%d", ld.prefix, w, n, i)
		}
		ld.send(w, ids)
		select {
		case <-ld.stop:
		case <-time.After(ld.pause):
		}
	}
}

func (ld *load) body(ids []string) []byte {
	now := time.Now().UTC()
	items := make([]map[string]any, len(ids))
	for i, id := range ids {
		items[i] = map[string]any{
			"type": "track", "event": "Chaos Tested", "userId": "user-" + strconv.Itoa(i%7), "messageId": id,
			"timestamp":  now.Format(time.RFC3339Nano),
			"properties": map[string]any{"n": i, "note": strings.Repeat("x", 64)},
		}
	}
	b, _ := json.Marshal(map[string]any{"batch": items, "sentAt": now.Format(time.RFC3339Nano)})
	return b
}

// send delivers one batch, retrying until a 200 or retryFor. Each attempt
// goes to the next collector, as a load balancer would spread the retries.
func (ld *load) send(w int, ids []string) {
	led := ld.led
	led.mu.Lock()
	for _, id := range ids {
		led.sent[id] = true
	}
	led.mu.Unlock()
	body := ld.body(ids)
	deadline := time.Now().Add(ld.retryFor)
	for attempt := 0; ; attempt++ {
		url := ld.urls[(w+attempt)%len(ld.urls)] + "/v1/batch"
		status, retryAfter, reply, err := ld.post(url, body)
		led.mu.Lock()
		switch {
		case err != nil:
			led.transport++
		case status == 200:
			if strings.Contains(reply, `"errors"`) {
				led.unexpected = append(led.unexpected, fmt.Sprintf("200 with per-event errors: %.300s", reply))
			}
			for _, id := range ids {
				led.acked[id] = true
			}
			led.mu.Unlock()
			return
		case status >= 500:
			led.responses5xx++
			for _, id := range ids {
				led.got5xx[id] = true
			}
			if status == 503 && retryAfter == "" {
				led.noRetryAfter++
			}
		default:
			led.unexpected = append(led.unexpected, fmt.Sprintf("%d: %.300s", status, reply))
		}
		if time.Now().After(deadline) {
			for _, id := range ids {
				led.gaveUp[id] = true
			}
			led.mu.Unlock()
			return
		}
		led.mu.Unlock()
		// A client honours Retry-After; the suite caps the wait so that runs
		// stay short. The header's presence is checked above.
		wait := 250 * time.Millisecond
		if s, err := strconv.Atoi(retryAfter); err == nil && s > 0 {
			wait = min(time.Duration(s)*time.Second, time.Second)
		}
		time.Sleep(wait)
	}
}

func (ld *load) post(url string, body []byte) (status int, retryAfter, reply string, err error) {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	req.SetBasicAuth(ld.key, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := ld.client.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", "", err
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b), nil
}

// waitAcked waits until the client has at least n more acknowledged events
// than before, so that faults strike under load.
func (ld *load) waitAcked(n int, timeout time.Duration) {
	ld.t.Helper()
	start := ld.led.counts().acked
	deadline := time.Now().Add(timeout)
	for ld.led.counts().acked < start+n {
		if time.Now().After(deadline) {
			ld.t.Fatalf("load: fewer than %d events acknowledged within %v (%+v)", n, timeout, ld.led.counts())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tryWaitAcked is waitAcked that reports instead of failing.
func (ld *load) tryWaitAcked(n int, timeout time.Duration) bool {
	start := ld.led.counts().acked
	deadline := time.Now().Add(timeout)
	for ld.led.counts().acked < start+n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// result is one fault's outcome.
type result struct {
	fault       string
	c           counts
	rows        int
	lost        int
	dup         int
	unknown     int
	rejects     int
	transport   int
	noRetry     int
	unexpected  []string
	examples    []string
	drainPassed bool
	otherFailed bool // a scenario check beyond the counts failed
}

func (r result) ok() bool {
	return r.lost == 0 && r.dup == 0 && r.unknown == 0 && r.rejects == 0 && r.noRetry == 0 && len(r.unexpected) == 0 && r.drainPassed
}

func (r result) String() string {
	verdict := "PASS"
	if !r.ok() || r.otherFailed {
		verdict = "FAIL"
	}
	return fmt.Sprintf("fault=%s sent=%d acked=%d 5xx=%d 5xx_replies=%d gave_up=%d conn_errors=%d rows=%d lost=%d dup=%d unknown=%d rejects=%d %s",
		r.fault, r.c.sent, r.c.acked, r.c.got5xx, r.c.responses5xx, r.c.gaveUp, r.transport, r.rows, r.lost, r.dup, r.unknown, r.rejects, verdict)
}

// verify waits for the writers to drain the stream, then compares the rows
// with the ledger: every acknowledged id exactly once, no id twice, no id
// that was never sent.
func verify(t *testing.T, l *lab, ld *load, fault string, drainTimeout time.Duration) result {
	t.Helper()
	ld.finish()
	led := ld.led
	r := result{fault: fault, c: led.counts()}
	led.mu.Lock()
	r.transport, r.noRetry = led.transport, led.noRetryAfter
	r.unexpected = append(r.unexpected, led.unexpected...)
	led.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout+30*time.Second)
	defer cancel()
	// Drained means: every acked id has a row, and the durable consumer has
	// nothing pending or unacknowledged, so no further row can appear.
	deadline := time.Now().Add(drainTimeout)
	var rows map[string]int
	var last string
	for {
		var err error
		rows, err = l.rows(ctx)
		if err == nil {
			missing := 0
			for id := range led.acked {
				if rows[id] == 0 {
					missing++
				}
			}
			pending, ackPending, cerr := l.consumerBacklog(ctx)
			last = fmt.Sprintf("missing=%d pending=%d ack_pending=%d consumer_err=%v", missing, pending, ackPending, cerr)
			if missing == 0 && cerr == nil && pending == 0 && ackPending == 0 {
				r.drainPassed = true
				// One more read after the consumer reported empty, so a
				// batch committed in between is counted.
				rows, err = l.rows(ctx)
				if err != nil {
					t.Fatalf("read rows: %v", err)
				}
				break
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: stream not drained into Postgres within %v: %s; %s", fault, drainTimeout, last, l.streamState())
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for id, n := range rows {
		r.rows += n
		if n > 1 {
			r.dup++
			if len(r.examples) < 5 {
				r.examples = append(r.examples, fmt.Sprintf("%s stored %d times", id, n))
			}
		}
		if !led.sent[id] {
			r.unknown++
		}
	}
	for id := range led.acked {
		if rows[id] == 0 {
			r.lost++
			if len(r.examples) < 10 {
				r.examples = append(r.examples, fmt.Sprintf("%s acknowledged but not stored", id))
			}
		}
	}
	if err := l.db.QueryRow(ctx, "SELECT count(*) FROM herd.rejects").Scan(&r.rejects); err != nil {
		t.Errorf("count rejects: %v", err)
	}
	t.Log(r.String())
	if !r.ok() {
		t.Errorf("%s failed: %s; examples %v; unexpected replies %v", fault, r, r.examples, first(r.unexpected, 5))
	}
	if r.c.acked == 0 {
		t.Errorf("%s: no event was acknowledged: the scenario proved nothing", fault)
	}
	return r
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// rows counts the stored rows of each messageId of the chaos source.
func (l *lab) rows(ctx context.Context) (map[string]int, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rs, err := l.db.Query(qctx, "SELECT message_id, count(*) FROM herd.events WHERE source_id = $1 GROUP BY message_id", l.sourceID)
	if err != nil {
		return nil, fmt.Errorf("count rows per messageId: %w", err)
	}
	defer rs.Close()
	m := map[string]int{}
	for rs.Next() {
		var id string
		var n int
		if err := rs.Scan(&id, &n); err != nil {
			return nil, err
		}
		m[id] = n
	}
	return m, rs.Err()
}
