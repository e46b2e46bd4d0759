package intercom

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/schemas"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t    *testing.T
	db   *pgxpool.Pool
	fake *fakeIntercom
	s    *Syncer
	logs *syncBuffer
	reg  *prometheus.Registry // the newest syncer's
}

func newHarness(t *testing.T, db *pgxpool.Pool) *harness {
	t.Helper()
	ctx := context.Background()
	if db == nil {
		db = pgtest.Pool(t, pgtest.New(t))
		if _, err := schemas.Migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, db: db, fake: newFakeIntercom(t), logs: &syncBuffer{}}
	h.s = h.syncer()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("syncer log:\n%s", h.logs.String())
		}
	})
	return h
}

// syncer returns a new connector on the harness's database and fake, as a
// restarted process would have.
func (h *harness) syncer() *Syncer {
	h.t.Helper()
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h.reg = prometheus.NewRegistry()
	s, err := New(Config{
		Token:   h.fake.token,
		APIBase: h.fake.URL(),
		Limits:  saas.Limits{RequestsPerSecond: 5000, Burst: 100, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond},
		Now:     h.fake.now,
	}, h.db, log, h.reg)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *harness) sync() {
	h.t.Helper()
	if err := h.s.Sync(context.Background()); err != nil {
		h.t.Fatalf("sync: %v", err)
	}
}

// seed fills the fake workspace: thousands of contacts, hundreds of
// conversations, a few with more parts than a page holds and one past the
// API's cap of 500 parts.
func (h *harness) seed(contacts, convs int) (contactIDs, convIDs []string) {
	f := h.fake
	for i := range contacts {
		role := "user"
		if i%3 == 0 {
			role = "lead"
		}
		contactIDs = append(contactIDs, f.addContact(role))
	}
	for range 160 {
		f.addCompany()
	}
	for i := range convs {
		parts := i%6 + 1
		switch {
		case i == 7:
			parts = 620
		case i%97 == 1:
			parts = 180
		}
		convIDs = append(convIDs, f.addConversation(contactIDs[i%len(contactIDs)], parts))
	}
	return contactIDs, convIDs
}

func norm(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// stored returns the non-deleted rows of a table as id -> data.
func (h *harness) stored(table string) map[string]any {
	h.t.Helper()
	rows, _ := h.db.Query(context.Background(), `SELECT id, data FROM `+pgx.Identifier{"intercom", table}.Sanitize()+` WHERE NOT deleted`)
	out := map[string]any{}
	var id string
	var data []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &data}, func() error {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return err
		}
		out[id] = v
		return nil
	}); err != nil {
		h.t.Fatalf("read intercom.%s: %v", table, err)
	}
	return out
}

// assertEqual compares the warehouse with the fake, object by object and
// part by part, without going through Check.
func (h *harness) assertEqual() {
	h.t.Helper()
	f := h.fake
	f.mu.Lock()
	want := map[string]map[string]any{"contacts": {}, "companies": {}, "conversations": {}, "conversation_parts": {}}
	for id, c := range f.contacts {
		want["contacts"][id] = norm(h.t, c)
	}
	for id, c := range f.compans {
		want["companies"][id] = norm(h.t, c)
	}
	for id, c := range f.convs {
		want["conversations"][id] = norm(h.t, c.summary())
		for _, p := range c.parts[:min(len(c.parts), partsCap)] {
			want["conversation_parts"][p["id"].(string)] = norm(h.t, p)
		}
	}
	if f.ticketsOn {
		want["tickets"] = map[string]any{}
		for id, tk := range f.tickets {
			want["tickets"][id] = norm(h.t, tk)
		}
	}
	f.mu.Unlock()
	for table, w := range want {
		got := h.stored(table)
		if len(got) != len(w) {
			h.t.Errorf("intercom.%s: %d rows, the workspace has %d", table, len(got), len(w))
		}
		bad := 0
		for id, v := range w {
			if g, ok := got[id]; !ok || !reflect.DeepEqual(g, v) {
				if bad++; bad <= 3 {
					h.t.Errorf("intercom.%s %s: stored %v, want %v", table, id, g, v)
				}
			}
		}
		if bad > 3 {
			h.t.Errorf("intercom.%s: %d rows differ", table, bad)
		}
	}
}

func (h *harness) check() map[string]saas.Diff {
	h.t.Helper()
	diffs, err := h.s.Check(context.Background())
	if err != nil {
		h.t.Fatalf("check: %v", err)
	}
	out := map[string]saas.Diff{}
	for _, d := range diffs {
		out[d.Object] = d
	}
	return out
}

func (h *harness) assertClean() {
	h.t.Helper()
	for name, d := range h.check() {
		if !d.Clean() {
			h.t.Errorf("check %s: source %d warehouse %d missing %v extra %v changed %v", name, d.Source, d.Warehouse, d.Missing, d.Extra, d.Changed)
		}
	}
}

// Acceptance 1: a backfill of a workspace with thousands of contacts and
// conversations, some with more parts than a page, matches it exactly; check
// agrees, and catches one changed row and one missing part.
func TestBackfillMatchesWorkspace(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, convs := h.seed(3000, 400)
	h.fake.setEvery429(9)
	// The workspace changes during the backfill: a conversation already
	// fetched gets a new part, behind the listing.
	var gets atomic.Int32
	h.fake.setHook(func(req string) {
		if strings.HasPrefix(req, "GET /conversations/") && gets.Add(1) == 300 {
			h.fake.addPart(convs[0])
		}
	})
	h.sync()
	h.fake.setHook(nil)
	h.assertEqual()

	ctx := context.Background()
	var total, parts int
	if err := h.db.QueryRow(ctx, `SELECT parts_total, (SELECT count(*) FROM intercom.conversation_parts WHERE conversation_id = $1 AND NOT deleted)
		FROM intercom.conversations WHERE id = $1`, convs[7]).Scan(&total, &parts); err != nil {
		t.Fatal(err)
	}
	if total != 620 || parts != partsCap {
		t.Errorf("conversation with 620 parts: parts_total %d, %d parts stored; want 620 and the API's cap %d", total, parts, partsCap)
	}
	var retries429 int
	if n := testCounter(t, h.s.m.retries); n == 0 {
		t.Error("the fake answered 429s but nothing was retried")
	} else {
		retries429 = int(n)
	}
	t.Logf("%d requests, %d retried after 429", len(h.fake.requestLog()), retries429)
	if !strings.Contains(h.logs.String(), `msg="backfill done" source=intercom object=conversations rows=400`) {
		t.Errorf("no progress line for conversations in the log:\n%s", h.logs.String())
	}

	h.fake.setEvery429(0)
	h.assertClean()

	// Drift in the warehouse: check names it.
	var contact, part string
	if err := h.db.QueryRow(ctx, `UPDATE intercom.contacts SET data = data || '{"name":"tampered"}'
		WHERE id = (SELECT min(id) FROM intercom.contacts) RETURNING id`).Scan(&contact); err != nil {
		t.Fatal(err)
	}
	if err := h.db.QueryRow(ctx, `DELETE FROM intercom.conversation_parts
		WHERE id = (SELECT min(id) FROM intercom.conversation_parts) RETURNING id`).Scan(&part); err != nil {
		t.Fatal(err)
	}
	d := h.check()
	if c := d["contacts"]; !reflect.DeepEqual(c.Changed, []string{contact}) || c.Clean() {
		t.Errorf("check contacts after tampering with %s: %+v", contact, c)
	}
	if p := d["conversation_parts"]; !reflect.DeepEqual(p.Missing, []string{part}) || p.Clean() {
		t.Errorf("check conversation_parts after deleting %s: %+v", part, p)
	}
	if c := d["conversations"]; !c.Clean() {
		t.Errorf("check conversations: %+v", c)
	}
}
