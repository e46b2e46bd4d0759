package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd/collector"
	"github.com/herdhq/herd/internal/herdtest"
	"github.com/herdhq/herd/internal/pgcluster"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// freeAddr returns 127.0.0.1:port for a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// httpGet returns the status and body of GET url, or status 0 when the
// server does not answer.
func httpGet(url string) (int, string) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitStatus polls url until it answers want, failing after timeout.
func waitStatus(t *testing.T, url string, want int, timeout time.Duration) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	for {
		code, body := httpGet(url)
		if code == want {
			return time.Since(start), body
		}
		if time.Since(start) > timeout {
			t.Fatalf("GET %s: %d %q, want %d within %s", url, code, body, want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// upProcess runs herd up against dbURL with a known write key and returns
// the collector and admin base URLs once it is ready.
func upProcess(t *testing.T, dbURL, key string) (collectorURL, adminURL string) {
	t.Helper()
	listen, admin := freeAddr(t), freeAddr(t)
	startProcess(t, "up", "--database-url", dbURL, "--data-dir", t.TempDir(), "--listen", listen,
		"--admin-listen", admin, "--write-key", key, "--enrich=false", "--batch-wait", "5ms")
	adminURL = "http://" + admin
	waitStatus(t, adminURL+"/readyz", 200, 60*time.Second)
	return "http://" + listen, adminURL
}

// metricSum adds the samples of metric whose labels contain every one of
// labels (each written name="value") in a Prometheus text exposition.
func metricSum(exposition, metric string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, metric+"{") && !strings.HasPrefix(line, metric+" ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		match := true
		for _, l := range labels {
			if !strings.Contains(line[:i], l) {
				match = false
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// TestMetricsCountWhatWasSent runs herd up, sends accepted and refused
// events and checks /metrics counts exactly those.
func TestMetricsCountWhatWasSent(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.New(t)
	const key = "metrics-key"
	base, admin := upProcess(t, dbURL, key)
	const accepted, rejected = 30, 7
	var items []string
	for i := 0; i < accepted; i++ {
		items = append(items, fmt.Sprintf(`{"type":"track","event":"Ok","userId":"u%d","messageId":"ok-%d"}`, i, i))
	}
	bad := []string{
		`{"type":"track","event":"Old","userId":"u","timestamp":"1990-01-01T00:00:00Z"}`,
		`{"type":"track","event":"Future","userId":"u","timestamp":"2999-01-01T00:00:00Z"}`,
		`{"type":"track","userId":"u"}`,
		`{"type":"track","event":"NoOne"}`,
		`"not an object"`,
		`{"type":"track","event":"` + strings.Repeat("n", 2000) + `","userId":"u"}`,
		`{"type":"track","event":"Nul","userId":"u\u0000"}`,
	}
	items = append(items, bad...)
	r := post(t, base+"/v1/batch", []byte(`{"batch":[`+strings.Join(items, ",")+`]}`), map[string]string{"Authorization": basic(key)})
	if r.Status != 200 || r.Body["accepted"] != float64(accepted) {
		t.Fatalf("batch: %d %s", r.Status, r.RawBody)
	}
	if errs, _ := r.Body["errors"].([]any); len(errs) != rejected {
		t.Fatalf("batch reported %d errors, want %d: %s", len(errs), rejected, r.RawBody)
	}
	var m string
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, m = httpGet(admin + "/metrics")
		if metricSum(m, "herd_writer_rows_total", `table="events"`) == accepted && metricSum(m, "herd_writer_rows_total", `table="rejects"`) == rejected {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range []struct {
		metric string
		labels []string
		want   float64
	}{
		{"herd_collector_events_total", []string{`result="accepted"`}, accepted},
		{"herd_collector_events_total", []string{`result="rejected"`}, rejected},
		{"herd_writer_rows_total", []string{`table="events"`}, accepted},
		{"herd_writer_rows_total", []string{`table="rejects"`}, rejected},
		{"herd_collector_requests_total", []string{`route="batch"`, `status="200"`}, 1},
	} {
		if got := metricSum(m, c.metric, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.metric, c.labels, got, c.want)
		}
	}
	// The warehouse agrees with the metrics.
	db := pgtest.Pool(t, dbURL)
	var events, rejects int64
	_ = db.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM herd.events), (SELECT count(*) FROM herd.rejects)").Scan(&events, &rejects)
	if events != accepted || rejects != rejected {
		t.Errorf("warehouse holds %d events and %d rejects, want %d and %d", events, rejects, accepted, rejected)
	}
}

// TestReadyzFollowsPostgres stops and restarts a private Postgres under a
// running herd up: /readyz answers 503 while it is down and 200 again after.
func TestReadyzFollowsPostgres(t *testing.T) {
	t.Parallel()
	c := pgtest.Cluster(t, nil)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE herd_ready"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	base, admin := upProcess(t, c.URL("herd_ready"), "ready-key")

	if err := c.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	took, body := waitStatus(t, admin+"/readyz", 503, 5*time.Second)
	if !strings.Contains(body, "postgres:") {
		t.Errorf("readyz body %q does not name the postgres check", body)
	}
	t.Logf("not ready %s after Postgres stopped: %q", took.Round(time.Millisecond), strings.TrimSpace(body))
	// Events sent during the outage are accepted (JetStream holds them) and
	// stay not-ready for as long as Postgres is down.
	if r := post(t, base+"/v1/track", []byte(`{"event":"During","userId":"u","messageId":"during-1"}`), map[string]string{"Authorization": basic("ready-key")}); r.Status != 200 {
		t.Fatalf("track while Postgres is down: %d %s", r.Status, r.RawBody)
	}
	time.Sleep(2 * time.Second)
	if code, body := httpGet(admin + "/readyz"); code != 503 {
		t.Errorf("readyz %d %q two seconds into the outage, want 503", code, body)
	}
	if code, _ := httpGet(admin + "/healthz"); code != 200 {
		t.Errorf("healthz %d while Postgres is down, want 200 (the process is alive)", code)
	}

	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	took, _ = waitStatus(t, admin+"/readyz", 200, 15*time.Second)
	t.Logf("ready again %s after Postgres started", took.Round(time.Millisecond))
	// And the pipeline works again end to end.
	r := post(t, base+"/v1/track", []byte(`{"event":"Back","userId":"u","messageId":"back-1"}`), map[string]string{"Authorization": basic("ready-key")})
	if r.Status != 200 {
		t.Fatalf("track after restart: %d %s", r.Status, r.RawBody)
	}
	db := pgtest.Pool(t, c.URL("herd_ready"))
	deadline := time.Now().Add(15 * time.Second)
	var n int64
	for n != 2 && time.Now().Before(deadline) {
		_ = db.QueryRow(ctx, "SELECT count(*) FROM herd.events WHERE message_id IN ('during-1', 'back-1')").Scan(&n)
		time.Sleep(50 * time.Millisecond)
	}
	if n != 2 {
		t.Fatalf("events sent during and after the outage: %d rows, want 2", n)
	}
}

// TestStatusCommand runs herd status against a pipeline and checks the
// figures it prints, then against servers that do not answer.
func TestStatusCommand(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	var items []string
	for i := 0; i < 9; i++ {
		items = append(items, fmt.Sprintf(`{"type":"track","event":"S","userId":"u","messageId":"st-%d"}`, i))
	}
	items = append(items, `{"type":"track","event":"S","userId":"u","timestamp":true}`, `{"type":"track","event":"S","userId":"u","timestamp":false}`)
	if r := post(t, p.URL+"/v1/batch", []byte(`{"batch":[`+strings.Join(items, ",")+`]}`), map[string]string{"Authorization": basic(p.WriteKey)}); r.Status != 200 {
		t.Fatalf("batch: %d %s", r.Status, r.RawBody)
	}
	p.WaitRows(t, 9, 10*time.Second, "SELECT count(*) FROM herd.events")
	p.WaitRows(t, 2, 10*time.Second, "SELECT count(*) FROM herd.rejects")
	args := []string{"status", "--database-url", p.DBURL, "--nats-url", p.NATS.ClientURL(), "--stream", p.Stream.Name,
		"--subject-prefix", p.Stream.Prefix, "--sources-bucket", p.Stream.SourcesKV}
	out, err := exec.Command(herdBinary(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("herd status: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		// one frame holding the request's 9 events, and the 2 refusals
		"stream " + p.Stream.Name, "3 messages", "of 1.0 GiB", "herd-writer", "last commit",
		"rejects in the last hour: 2", "2  timestamp must be an ISO N string or epoch milliseconds",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("herd status output lacks %q:\n%s", want, text)
		}
	}
	if !regexpMatch(`(?m)^\s+web\s+9\s+9$`, text) || !regexpMatch(`(?m)^\s+backend\s+0\s+0$`, text) {
		t.Errorf("herd status: want web 9/9 and backend 0/0 in the last hour/total:\n%s", text)
	}

	// Unreachable: exit 1 and one line saying what failed.
	dead := "127.0.0.1:1"
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"nats down", []string{"status", "--database-url", p.DBURL, "--nats-url", "nats://" + dead}, "connect to NATS"},
		{"postgres down", []string{"status", "--database-url", "postgres://postgres@" + dead + "/x?connect_timeout=2", "--nats-url", p.NATS.ClientURL(),
			"--stream", p.Stream.Name}, "connect to postgres://"},
		{"no such stream", []string{"status", "--database-url", p.DBURL, "--nats-url", p.NATS.ClientURL(), "--stream", "NOPE"}, "stream NOPE does not exist"},
	} {
		cmd := exec.Command(herdBinary(t), c.args...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("%s: %v, want exit status 1; stderr %q", c.name, err, stderr.String())
			continue
		}
		msg := stderr.String()
		if strings.Count(strings.TrimSpace(msg), "\n") != 0 || !strings.HasPrefix(msg, "herd status: ") || !strings.Contains(msg, c.want) {
			t.Errorf("%s: stderr %q, want one line containing %q", c.name, msg, c.want)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: took %s to fail", c.name, d)
		}
	}
}

// hostileCase is a request built to hurt, and how herd must answer it.
type hostileCase struct {
	name    string
	path    string
	headers map[string]string
	body    []byte
	status  int
	errText string // in the reply's "error" (or the first item error for a 200); alternatives split by |
	reject  string // LIKE pattern of the herd.rejects reason; "" when none is stored
	raw     string // LIKE pattern of the reject's raw text
}

// TestHostileBodies sends malformed and abusive bodies. Each gets its exact
// status and JSON error, refused events land in herd.rejects with their
// reason, and the next valid request is stored.
func TestHostileBodies(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	auth := map[string]string{"Authorization": basic(p.WriteKey), "Content-Type": "application/json"}
	gzAuth := map[string]string{"Authorization": basic(p.WriteKey), "Content-Encoding": "gzip"}
	ev := func(marker, extra string) string {
		return `{"type":"track","event":"Hostile","userId":"` + marker + `"` + extra + `}`
	}
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	// 50 MB of one letter inside a string: about 50 KB compressed.
	bomb := gz(t, []byte(ev("hostile-bomb", `,"properties":{"pad":"`+strings.Repeat("a", 50<<20)+`"}`)))

	cases := []hostileCase{
		{"nesting 1000 deep", "/v1/track", auth, []byte(ev("hostile-deep", `,"properties":`+deep(1000))),
			400, "event nests 1001 levels deep; the limit is 64", "event nests 1001 levels deep%", "%hostile-deep%"},
		{"nesting 1000 deep in a batch beside a valid event", "/v1/batch", auth,
			[]byte(`{"batch":[` + ev("hostile-deep-b", `,"properties":`+deep(1000)) + `,` + ev("fine-beside-deep", "") + `]}`),
			200, "event nests 1001 levels deep", "event nests 1001 levels deep%", "%hostile-deep-b%"},
		{"nesting 100000 deep (past the JSON parser's own limit)", "/v1/batch", auth,
			[]byte(`{"batch":[{"userId":"hostile-deeper","x":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}]}`),
			400, "body is not valid JSON", "body is not valid JSON%", "%hostile-deeper%"},
		{"invalid UTF-8 in a string", "/v1/track", auth, []byte(ev("hostile-utf8", `,"properties":{"s":"a`+"\xff\xfe\xc0"+`b"}`)),
			400, "event is not valid UTF-8", "event is not valid UTF-8", "%hostile-utf8%"},
		{"NUL escape", "/v1/track", auth, []byte(ev("hostile-nul", `,"properties":{"s":"a\u0000b"}`)),
			400, `event contains \u0000 (NUL)`, `event contains \\u0000%`, "%hostile-nul%"},
		{"NUL escape in an identifier", "/v1/track", auth, []byte(`{"event":"x","userId":"hostile-nul-id\u0000"}`),
			400, `event contains \u0000 (NUL)`, `event contains \\u0000%`, "%hostile-nul-id%"},
		{"top-level array", "/v1/track", auth, []byte(`[` + ev("hostile-array", "") + `]`),
			400, "body must be a JSON object", "body must be a JSON object", "%hostile-array%"},
		{"top-level string", "/v1/track", auth, []byte(`"hostile-string"`),
			400, "body must be a JSON object", "body must be a JSON object", `"hostile-string"`},
		{"top-level number", "/v1/track", auth, []byte(`4242424242`),
			400, "body must be a JSON object", "body must be a JSON object", `4242424242`},
		{"batch as an array", "/v1/batch", auth, []byte(`[` + ev("hostile-batch-array", "") + `]`),
			400, "body must be a JSON object", "body must be a JSON object", "%hostile-batch-array%"},
		{"batch field not an array", "/v1/batch", auth, []byte(`{"batch":{"userId":"hostile-batch-obj"}}`),
			400, `field "batch" must be|body is not valid JSON`, `%`, "%hostile-batch-obj%"},
		{"batch items that are not objects", "/v1/batch", auth, []byte(`{"batch":[[31337],"hostile-item-str",31338,` + ev("fine-beside-junk", "") + `]}`),
			200, "event must be a JSON object", "event must be a JSON object", `[31337]`},
		{"invalid JSON inside batch-level context", "/v1/batch", auth, []byte(`{"batch":[` + ev("hostile-ctx", "") + `],"context":{"":}}`),
			400, "body is not valid JSON", "body is not valid JSON%", "%hostile-ctx%"},
		{"trailing comma inside properties", "/v1/track", auth, []byte(ev("hostile-comma", `,"properties":{"a":[1,],}`)),
			400, "body is not valid JSON", "body is not valid JSON%", "%hostile-comma%"},
		{"number with a leading zero", "/v1/batch", auth, []byte(`{"batch":[` + ev("hostile-zero", `,"properties":{"n":01}`) + `]}`),
			400, "body is not valid JSON", "body is not valid JSON%", "%hostile-zero%"},
		{"timestamp far in the future", "/v1/track", auth, []byte(ev("hostile-future", `,"timestamp":"2999-01-01T00:00:00Z"`)),
			400, "timestamp 2999-01-01T00:00:00Z is more than a day in the future", "%more than a day in the future", "%hostile-future%"},
		{"timestamp far in the past", "/v1/track", auth, []byte(ev("hostile-past", `,"timestamp":"1969-07-20T20:17:00Z"`)),
			400, "timestamp 1969-07-20T20:17:00Z is before 2000-01-01", "%is before 2000-01-01", "%hostile-past%"},
		{"timestamp a bool", "/v1/track", auth, []byte(ev("hostile-ts-bool", `,"timestamp":true`)),
			400, "timestamp must be an ISO 8601 string or epoch milliseconds", "timestamp must be%", "%hostile-ts-bool%"},
		{"timestamp an object", "/v1/track", auth, []byte(ev("hostile-ts-obj", `,"timestamp":{"$date":"2026-01-01"}`)),
			400, "timestamp must be an ISO 8601 string or epoch milliseconds", "timestamp must be%", "%hostile-ts-obj%"},
		{"timestamp 1e300 milliseconds", "/v1/track", auth, []byte(ev("hostile-ts-huge", `,"timestamp":1e300`)),
			400, "timestamp must be an ISO 8601 string or epoch milliseconds", "timestamp must be%", "%hostile-ts-huge%"},
		{"sentAt in year 9999 (skew past any duration)", "/v1/track", auth,
			[]byte(ev("hostile-sent", `,"timestamp":"2026-01-01T00:00:00Z","sentAt":"9999-12-31T23:59:59Z"`)),
			400, "is before 2000-01-01", "%is before 2000-01-01", "%hostile-sent%"},
		{"10 KB event name", "/v1/track", auth, []byte(`{"event":"` + strings.Repeat("n", 10<<10) + `","userId":"hostile-name"}`),
			400, "event is 10240 bytes; the limit is 1024", "event is 10240 bytes; the limit is 1024", "%hostile-name%"},
		{"gzip bomb on /v1/track", "/v1/track", gzAuth, bomb,
			413, "body decompresses past the limit of 32768 bytes", "body decompresses past the limit of 32768 bytes", "%"},
		{"gzip bomb on /v1/batch", "/v1/batch", gzAuth, bomb,
			413, "body decompresses past the limit of 512000 bytes", "body decompresses past the limit of 512000 bytes", "%"},
		{"gzip header on a plain body", "/v1/track", gzAuth, []byte(ev("hostile-notgz", "")),
			400, "body is not valid gzip", "body is not valid gzip%", "%hostile-notgz%"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := post(t, p.URL+c.path, c.body, c.headers)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("answered in %s", d)
			}
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, tailString(r.RawBody, 300))
			}
			if r.Body == nil {
				t.Fatalf("reply is not a JSON object: %q", tailString(r.RawBody, 300))
			}
			msg, _ := r.Body["error"].(string)
			if c.status == 200 {
				errs, _ := r.Body["errors"].([]any)
				if r.Body["success"] != true || len(errs) == 0 || r.Body["accepted"] != float64(1) {
					t.Fatalf("partial batch: want success, one accepted and item errors: %s", r.RawBody)
				}
				msg, _ = errs[0].(map[string]any)["error"].(string)
			} else if r.Body["success"] != false {
				t.Errorf("success is %v, want false", r.Body["success"])
			}
			if !containsAny(msg, strings.Split(c.errText, "|")) {
				t.Errorf("error %q, want it to contain %q", msg, c.errText)
			}
			if c.reject != "" {
				q := "SELECT count(*) FROM herd.rejects WHERE reason LIKE $1 AND raw LIKE $2"
				if n := p.WaitRows(t, 1, 5*time.Second, q, c.reject, c.raw); n < 1 {
					t.Errorf("no herd.rejects row with reason LIKE %q and raw LIKE %q", c.reject, c.raw)
				}
			}
			// The collector still serves, and what it accepts lands.
			id := fmt.Sprintf("after-hostile-%d", i)
			if r := post(t, p.URL+"/v1/track", []byte(`{"event":"After","userId":"u","messageId":"`+id+`"}`), auth); r.Status != 200 {
				t.Fatalf("valid event after: %d %s", r.Status, r.RawBody)
			}
			if n := p.WaitRows(t, 1, 5*time.Second, "SELECT count(*) FROM herd.events WHERE message_id = $1", id); n != 1 {
				t.Fatalf("valid event after the hostile one was not stored")
			}
		})
	}
	// The three items of the junk batch are each a reject of their own.
	if n := p.WaitRows(t, 3, 5*time.Second, "SELECT count(*) FROM herd.rejects WHERE reason = 'event must be a JSON object' AND raw IN ('[31337]', '\"hostile-item-str\"', '31338')"); n != 3 {
		t.Errorf("rejects for the non-object batch items: %d, want 3", n)
	}
	// The valid events beside refused ones were stored.
	if n := p.WaitRows(t, 2, 5*time.Second, "SELECT count(*) FROM herd.events WHERE user_id IN ('fine-beside-deep', 'fine-beside-junk')"); n != 2 {
		t.Errorf("valid events beside refused ones: %d stored, want 2", n)
	}
	// A literal backslash before u0000 is text, not NUL: it is stored.
	if r := post(t, p.URL+"/v1/track", []byte(ev("escaped-backslash", `,"messageId":"bs-1","properties":{"s":"a\\u0000b"}`)), auth); r.Status != 200 {
		t.Fatalf("escaped backslash: %d %s", r.Status, r.RawBody)
	}
	if n := p.WaitRows(t, 1, 5*time.Second, `SELECT count(*) FROM herd.events WHERE message_id = 'bs-1' AND properties->>'s' = 'a\u0000b'`); n != 1 {
		t.Errorf("escaped backslash event not stored as text")
	}
}

// TestHugeNumbers: JSON numbers past float64 in properties. Each such event
// is either stored (jsonb holds 1e400 exactly) or refused with a reason in
// herd.rejects: by the collector when it cannot encode it, or by the writer
// isolating what Postgres refuses (1e200000 overflows numeric). Never a 503
// that the client would retry forever, and its batch neighbours are stored.
func TestHugeNumbers(t *testing.T) {
	t.Parallel()
	p := herdtest.Start(t, herdtest.Options{})
	auth := map[string]string{"Authorization": basic(p.WriteKey)}
	body := `{"batch":[
		{"type":"track","event":"Big","userId":"u","messageId":"big-400","properties":{"n":1e400,"m":-1e-400}},
		{"type":"track","event":"Big","userId":"u","messageId":"big-200000","properties":{"n":1e200000}},
		{"type":"track","event":"Big","userId":"u","messageId":"big-fine","properties":{"n":1}}]}`
	r := post(t, p.URL+"/v1/batch", []byte(body), auth)
	if r.Status != 200 || r.Body["success"] != true {
		t.Fatalf("batch: %d %s", r.Status, r.RawBody)
	}
	refused := map[string]string{} // messageId -> the collector's reason
	if errs, ok := r.Body["errors"].([]any); ok {
		for _, e := range errs {
			m := e.(map[string]any)
			refused[m["messageId"].(string)] = m["error"].(string)
		}
	}
	t.Logf("collector refused: %v", refused)
	if _, ok := refused["big-fine"]; ok {
		t.Fatal("the plain event was refused")
	}
	ctx := context.Background()
	q := `SELECT (SELECT count(*) FROM herd.events WHERE message_id = $1) + (SELECT count(*) FROM herd.rejects WHERE message_id = $1)`
	for _, id := range []string{"big-400", "big-200000", "big-fine"} {
		if n := p.WaitRows(t, 1, 10*time.Second, q, id); n != 1 {
			t.Fatalf("%s: %d rows in herd.events and herd.rejects together, want 1", id, n)
		}
	}
	var digits int
	err := p.DB.QueryRow(ctx, "SELECT length(properties->>'n') FROM herd.events WHERE message_id = 'big-400'").Scan(&digits)
	switch {
	case err == nil && digits != 401:
		t.Errorf("1e400 stored as %d digits, want 401", digits)
	case errors.Is(err, pgx.ErrNoRows) && refused["big-400"] == "":
		t.Errorf("1e400 accepted by the collector but not stored")
	}
	var reason string
	if err := p.DB.QueryRow(ctx, "SELECT reason FROM herd.rejects WHERE message_id = 'big-200000' AND raw LIKE '%1e200000%'").Scan(&reason); err != nil {
		t.Fatalf("1e200000 is not in herd.rejects with its raw text: %v", err)
	}
	if want := refused["big-200000"]; want != "" && reason != want {
		t.Errorf("reject reason %q, want the collector's %q", reason, want)
	} else if want == "" && !strings.HasPrefix(reason, "refused by Postgres:") {
		t.Errorf("reject reason %q, want Postgres's refusal", reason)
	}
}

// rawConn opens a TCP connection to the collector behind url.
func rawConn(t *testing.T, url string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readReply reads an HTTP response from c; status 0 when the server closed
// the connection without one.
func readReply(c net.Conn, timeout time.Duration) (int, string, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestHostileTransport: oversized and slow requests are cut off while the
// collector keeps answering everyone else.
func TestHostileTransport(t *testing.T) {
	t.Parallel()
	const readTimeout = time.Second
	p := herdtest.Start(t, herdtest.Options{Collector: func(c *collector.Config) { c.ReadTimeout = readTimeout }})
	auth := map[string]string{"Authorization": basic(p.WriteKey)}
	var sent sync.Mutex
	n := 0
	stillServes := func(t *testing.T) {
		t.Helper()
		sent.Lock()
		n++
		id := fmt.Sprintf("alive-%d", n)
		sent.Unlock()
		start := time.Now()
		r := post(t, p.URL+"/v1/track", []byte(`{"event":"Alive","userId":"u","messageId":"`+id+`"}`), auth)
		if r.Status != 200 {
			t.Errorf("valid event: %d %s", r.Status, r.RawBody)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("valid event answered in %s", d)
		}
		if n := p.WaitRows(t, 1, 5*time.Second, "SELECT count(*) FROM herd.events WHERE message_id = $1", id); n != 1 {
			t.Errorf("valid event %s not stored", id)
		}
	}
	hdr := "POST /v1/batch HTTP/1.1\r\nHost: herd\r\nAuthorization: " + basic(p.WriteKey) + "\r\nContent-Type: application/json\r\n"

	t.Run("100 MB Content-Length", func(t *testing.T) {
		t.Parallel()
		c := rawConn(t, p.URL)
		start := time.Now()
		if _, err := io.WriteString(c, hdr+"Content-Length: 104857600\r\n\r\n{\"batch\":["); err != nil {
			t.Fatal(err)
		}
		code, body, err := readReply(c, 3*time.Second)
		if err != nil {
			t.Fatalf("no reply: %v", err)
		}
		if code != 413 || !strings.Contains(body, `"error":"request body over 512000 bytes"`) {
			t.Errorf("reply %d %s, want 413 with a JSON error", code, body)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("refused after %s; want it refused from the header at once", d)
		}
		stillServes(t)
	})

	t.Run("chunked body streaming past the limit", func(t *testing.T) {
		t.Parallel()
		c := rawConn(t, p.URL)
		if _, err := io.WriteString(c, hdr+"Transfer-Encoding: chunked\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		chunk := fmt.Sprintf("%x\r\n%s\r\n", 64<<10, strings.Repeat(" ", 64<<10))
		var written int
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			for written < 100<<20 {
				if _, err := io.WriteString(c, chunk); err != nil {
					return
				}
				written += 64 << 10
			}
		}()
		code, body, err := readReply(c, 5*time.Second)
		<-done
		switch {
		case err == nil && code == 413:
			if !strings.Contains(body, "request body over 512000 bytes") {
				t.Errorf("413 body %q", body)
			}
		case err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) && !isReset(err):
			t.Errorf("want 413 or the connection closed; got %v", err)
		case err == nil:
			t.Errorf("reply %d %s, want 413", code, body)
		}
		if written >= 100<<20 {
			t.Errorf("the server read all %d bytes", written)
		}
		t.Logf("cut off after %d KB: status %d, err %v", written>>10, code, err)
		stillServes(t)
	})

	slow := func(t *testing.T, head, trickle string) {
		c := rawConn(t, p.URL)
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		cut := make(chan time.Duration, 1)
		go func() {
			buf := make([]byte, 512)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				if _, err := c.Read(buf); err != nil {
					cut <- time.Since(start)
					return
				}
			}
		}()
		// One byte every 100 ms: the whole request would take far longer
		// than the read timeout. Meanwhile other clients are served.
		var cutAfter time.Duration
		for i := 0; ; i++ {
			select {
			case cutAfter = <-cut:
			case <-time.After(100 * time.Millisecond):
				if i < len(trickle) {
					_, _ = c.Write([]byte{trickle[i]})
				}
				if i%5 == 0 {
					stillServes(t)
				}
				if time.Since(start) > 8*time.Second {
					t.Fatal("slow client still connected after 8 s")
				}
				continue
			}
			break
		}
		if cutAfter < readTimeout/2 || cutAfter > 3*readTimeout {
			t.Errorf("slow client cut off after %s; read timeout is %s", cutAfter, readTimeout)
		}
		t.Logf("cut off after %s", cutAfter.Round(time.Millisecond))
		stillServes(t)
	}
	t.Run("headers byte by byte", func(t *testing.T) {
		t.Parallel()
		slow(t, "", hdr+"Content-Length: 2\r\n\r\n{}")
	})
	t.Run("body byte by byte", func(t *testing.T) {
		t.Parallel()
		body := `{"batch":[{"event":"Slow","userId":"hostile-slow"}]}`
		slow(t, hdr+fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)), body)
		if n := p.WaitRows(t, 0, time.Second, "SELECT count(*) FROM herd.events WHERE user_id = 'hostile-slow'"); n != 0 {
			t.Errorf("the cut-off request was stored")
		}
	})
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

func regexpMatch(pattern, s string) bool {
	return regexp.MustCompile(pattern).MatchString(s)
}
