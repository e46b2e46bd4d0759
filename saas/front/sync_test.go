package front

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/saas"
	"github.com/herdhq/herd/schemas"
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
	fake *fakeFront
	s    *Syncer
	logs *syncBuffer
	cfg  Config
	reg  *prometheus.Registry // the latest Syncer's
}

func testConfig(f *fakeFront) Config {
	return Config{
		Token:    f.token,
		APIBase:  f.URL(),
		PageSize: 50,
		Limits:   saas.Limits{RequestsPerSecond: 1e5, Burst: 1000, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond},
	}
}

func newHarness(t *testing.T, adjust func(*Config)) *harness {
	t.Helper()
	ctx := context.Background()
	db := pgtest.Pool(t, pgtest.New(t))
	if _, err := schemas.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, db: db, fake: newFakeFront(t), logs: &syncBuffer{}}
	h.cfg = testConfig(h.fake)
	if adjust != nil {
		adjust(&h.cfg)
	}
	h.s = h.open()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("syncer log:\n%s", h.logs.String())
		}
	})
	return h
}

// open returns a new Syncer on the harness's database, as a restarted
// process would have.
func (h *harness) open() *Syncer {
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h.reg = prometheus.NewRegistry()
	s, err := New(h.cfg, h.db, log, h.reg)
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

// clean fails unless check finds the warehouse equal to the fake.
func (h *harness) clean() []saas.Diff {
	h.t.Helper()
	diffs, err := h.s.Check(context.Background())
	if err != nil {
		h.t.Fatalf("check: %v", err)
	}
	for _, d := range diffs {
		if !d.Clean() {
			h.t.Errorf("check %s: source %d warehouse %d missing %v extra %v changed %v",
				d.Object, d.Source, d.Warehouse, d.Missing, d.Extra, d.Changed)
		}
	}
	return diffs
}

func (h *harness) one(sql string, args ...any) string {
	h.t.Helper()
	var s string
	if err := h.db.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// seedWorkspace fills the fake with a company of the given size: every
// object type, conversations with one to three messages and up to two
// comments, and one conversation with more messages than three pages hold.
func seedWorkspace(f *fakeFront, contacts, convs int) (big string) {
	f.past = 3600
	defer func() { f.past = 0 }()
	for i := range 3 {
		f.create("teams", map[string]any{"name": fmt.Sprintf("Team %d", i)})
		f.create("inboxes", map[string]any{"name": fmt.Sprintf("Inbox %d", i), "is_private": i == 2})
	}
	for range 12 {
		f.create("teammates", nil)
	}
	for range 20 {
		f.create("tags", nil)
	}
	for range contacts / 10 {
		f.create("accounts", nil)
	}
	for range contacts {
		f.create("contacts", nil)
	}
	for i := range convs {
		f.conversation(1+i%3, i%3)
	}
	return f.conversation(130, 55)
}

func counts(h *harness) map[string]int {
	m := map[string]int{}
	for _, t := range Tables() {
		var n int
		if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM front.`+t+` WHERE NOT deleted`).Scan(&n); err != nil {
			h.t.Fatal(err)
		}
		m[t] = n
	}
	return m
}

// Acceptance 1: a backfill of thousands of contacts and conversations (one
// with more parts than a page holds), through 429s, matches the fake
// exactly, and check says so; check then catches one changed and one
// missing row.
func TestBackfillMatchesTheSource(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	f := h.fake
	big := seedWorkspace(f, 2000, 1000)
	f.every429 = 37
	// Front changes during the backfill: a message on a conversation
	// already written, an edit of a contact already written.
	var reads atomic.Int64
	var during string
	f.onServe = func(path string) {
		if strings.HasSuffix(path, "/messages") && reads.Add(1) == 600 {
			during, _ = f.addMessage(f.firstID("conversations"), false)
			f.update("contacts", f.firstID("contacts"), map[string]any{"name": "Edited during the backfill"})
		}
	}
	start := time.Now()
	h.sync()
	f.mu.Lock()
	f.onServe = nil
	f.mu.Unlock()
	if during == "" || h.one(`SELECT count(*)::text FROM front.messages WHERE id = $1`, during) != "1" {
		t.Errorf("message %q added during the backfill is missing", during)
	}
	t.Logf("backfill of %d requests: %s", len(f.requests()), time.Since(start).Round(time.Millisecond))
	if f.limited == 0 {
		t.Fatal("the fake answered no 429: the test does not exercise rate limiting")
	}
	got := counts(h)
	want := map[string]int{"teams": 3, "teammates": 12, "inboxes": 3, "tags": 20, "accounts": 200, "contacts": 2000,
		"conversations": 1001, "messages": 1000 + 999 + 130 + 1, "comments": 999 + 55}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("front.%s: %d rows, want %d", k, got[k], v)
		}
	}
	if n := h.one(`SELECT count(*)::text FROM front.messages WHERE conversation_id = $1`, big); n != "130" {
		t.Errorf("conversation with 130 messages (3 pages): %s stored", n)
	}
	// Typed columns come from the object.
	if s := h.one(`SELECT status FROM front.conversations WHERE id = $1`, big); s != "unassigned" {
		t.Errorf("status column %q", s)
	}
	if h.one(`SELECT count(*)::text FROM front.sync_state WHERE phase = 'incremental' AND last_error IS NULL`) != fmt.Sprint(len(objects)+1) {
		t.Errorf("sync_state: not every object incremental and error-free")
	}
	if !strings.Contains(h.logs.String(), "backfill done") {
		t.Error("no backfill progress line in the log")
	}
	start = time.Now()
	h.clean()
	t.Logf("check: %s", time.Since(start).Round(time.Millisecond))

	// Check catches drift: one changed message, one missing contact.
	ctx := context.Background()
	msg := h.one(`SELECT id FROM front.messages ORDER BY id LIMIT 1 OFFSET 500`)
	contact := h.one(`SELECT id FROM front.contacts ORDER BY id LIMIT 1 OFFSET 700`)
	if _, err := h.db.Exec(ctx, `UPDATE front.messages SET data = jsonb_set(data, '{blurb}', '"edited"') WHERE id = $1`, msg); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Exec(ctx, `DELETE FROM front.contacts WHERE id = $1`, contact); err != nil {
		t.Fatal(err)
	}
	diffs, err := h.s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		switch d.Object {
		case "messages":
			if !slices.Equal(d.Changed, []string{msg}) || len(d.Missing)+len(d.Extra) > 0 {
				t.Errorf("check messages: changed %v missing %v extra %v, want changed [%s]", d.Changed, d.Missing, d.Extra, msg)
			}
		case "contacts":
			if !slices.Equal(d.Missing, []string{contact}) || d.Source != d.Warehouse+1 || len(d.Changed)+len(d.Extra) > 0 {
				t.Errorf("check contacts: %+v, want missing [%s]", d, contact)
			}
		default:
			if !d.Clean() {
				t.Errorf("check %s: %+v, want clean", d.Object, d)
			}
		}
	}
}

// Acceptance 2: killed in the middle of the conversations, a new process
// resumes where the first stopped: no finished object listed again, no
// conversation read whole twice, and the end state equals the fake.
func TestBackfillResumesAfterKill(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	f := h.fake
	seedWorkspace(f, 600, 400)
	f.every429 = 41

	ctx, cancel := context.WithCancel(context.Background())
	var children atomic.Int64
	f.onServe = func(path string) {
		if strings.HasSuffix(path, "/messages") && children.Add(1) == 250 {
			cancel() // the process dies in the middle of the fifth page of conversations
		}
	}
	if err := h.s.Sync(ctx); err == nil {
		t.Fatal("the interrupted pass returned no error")
	}
	f.mu.Lock()
	f.onServe = nil
	f.mu.Unlock()
	first := len(f.requests())
	done := map[string]bool{}
	rows, err := h.db.Query(context.Background(), `SELECT id FROM front.conversations WHERE children_synced_at IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		done[id] = true
	}
	if len(done) < 200 || len(done) >= 401 {
		t.Fatalf("%d conversations finished before the kill; the test wants the kill mid-way", len(done))
	}

	// Data changes while the process is down.
	late := f.conversation(2, 1)

	h.s = h.open()
	h.sync()
	second := f.requests()[first:]
	for _, r := range second {
		path, query, _ := strings.Cut(r, "?")
		parts := strings.Split(strings.Trim(path, "/"), "/")
		switch {
		case len(parts) == 3 && done[parts[1]]:
			t.Errorf("after the restart, %s was read again although its conversation was finished", r)
		case path == "/contacts" && !strings.Contains(query, "updated_after"):
			t.Errorf("after the restart, contacts (finished before the kill) were listed again: %s", r)
		case path == "/conversations" && !strings.Contains(query, "page_token"):
			t.Errorf("after the restart, conversations were listed from the first page again: %s", r)
		}
	}
	if h.one(`SELECT count(*)::text FROM front.messages WHERE conversation_id = $1`, late) != "2" {
		t.Error("the conversation created while the process was down is missing")
	}
	h.clean()
}

// Acceptance 3: changes between passes appear after the next incremental
// pass: a new message and a new comment on old conversations, a contact
// edited, deleted, or merged into another, a conversation closed, one
// trashed, a new conversation; an event that shows up in the feed late,
// inside the lookback window, is not missed.
func TestIncrementalFollowsChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.Reconcile = time.Nanosecond })
	f := h.fake
	seedWorkspace(f, 120, 60)
	h.sync()
	h.clean()

	ctx := context.Background()
	convs := []string{}
	rows, _ := h.db.Query(ctx, `SELECT id FROM front.conversations ORDER BY id LIMIT 6`)
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		convs = append(convs, id)
	}
	contacts := []string{}
	rows, _ = h.db.Query(ctx, `SELECT id FROM front.contacts ORDER BY id LIMIT 4`)
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		contacts = append(contacts, id)
	}

	// A message whose event shows up in the feed only after newer ones
	// moved the cursor past it.
	lateMsg, lateEv := f.addMessage(convs[5], true)
	time.Sleep(5 * time.Millisecond)
	newMsg, _ := f.addMessage(convs[0], false)
	newComment, _ := f.addComment(convs[1])
	f.setStatus(convs[2], "archived", "archive")
	f.setStatus(convs[3], "deleted", "trash")
	f.update("contacts", contacts[0], map[string]any{"name": "Renamed"})
	f.remove("contacts", contacts[1])
	// Merge: the second contact's handles move to the first; it is gone.
	f.update("contacts", contacts[2], map[string]any{"handles": []any{
		map[string]any{"handle": contacts[2] + "@example.com", "source": "email"},
		map[string]any{"handle": contacts[3] + "@example.com", "source": "email"}}})
	f.remove("contacts", contacts[3])
	fresh := f.conversation(2, 1)
	h.sync()

	checks := []struct{ what, sql, want string }{
		{"new message on an old conversation", `SELECT conversation_id FROM front.messages WHERE id = $1 AND NOT deleted`, convs[0]},
		{"new comment", `SELECT conversation_id FROM front.comments WHERE id = $1 AND NOT deleted`, convs[1]},
		{"closed conversation", `SELECT status FROM front.conversations WHERE id = $1`, "archived"},
		{"trashed conversation", `SELECT deleted::text FROM front.conversations WHERE id = $1`, "true"},
		{"edited contact", `SELECT name FROM front.contacts WHERE id = $1`, "Renamed"},
		{"deleted contact", `SELECT deleted::text FROM front.contacts WHERE id = $1`, "true"},
		{"merged-into contact", `SELECT jsonb_array_length(data -> 'handles')::text FROM front.contacts WHERE id = $1`, "2"},
		{"merged-away contact", `SELECT deleted::text FROM front.contacts WHERE id = $1`, "true"},
		{"new conversation", `SELECT count(*)::text FROM front.messages WHERE conversation_id = $1`, "2"},
	}
	args := []string{newMsg, newComment, convs[2], convs[3], contacts[0], contacts[1], contacts[2], contacts[3], fresh}
	for i, c := range checks {
		if got := h.one(c.sql, args[i]); got != c.want {
			t.Errorf("%s: %q, want %q", c.what, got, c.want)
		}
	}
	if n := h.one(`SELECT count(*)::text FROM front.messages WHERE conversation_id = $1 AND NOT deleted`, convs[3]); n != "0" {
		t.Errorf("messages of the trashed conversation: %s not marked deleted", n)
	}
	// Check sees what the feed has not told yet.
	diffs, err := h.s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		if d.Object == "messages" && !slices.Equal(d.Missing, []string{lateMsg}) || d.Object != "messages" && !d.Clean() {
			t.Errorf("check %s before the late event: %+v, want only message %s missing", d.Object, d, lateMsg)
		}
	}

	f.reveal(lateEv)
	h.sync()
	if got := h.one(`SELECT count(*)::text FROM front.messages WHERE id = $1 AND NOT deleted`, lateMsg); got != "1" {
		t.Errorf("message whose event appeared late, inside the lookback: not applied")
	}
	if got := h.one(`SELECT outcome FROM front.events WHERE id = $1`, lateEv); got != "applied" {
		t.Errorf("late event outcome %q", got)
	}
	h.clean()
}

// Acceptance 3: an older state never overwrites a newer one, whichever
// path writes last.
func TestOlderStateNeverOverwritesNewer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	f := h.fake
	ctx := context.Background()
	contact := f.create("contacts", map[string]any{"name": "Old"})
	conv := f.conversation(1, 0)
	h.sync()

	// A listing page read before an update, written after it.
	oldContact, _ := h.s.api.get(ctx, h.s.api.url("/contacts/"+contact, nil))
	oldConv, _ := h.s.api.get(ctx, h.s.api.url("/conversations/"+conv, nil))
	oldFetch := time.Now()
	time.Sleep(5 * time.Millisecond)
	f.update("contacts", contact, map[string]any{"name": "New"})
	f.setStatus(conv, "archived", "archive")
	f.addMessage(conv, false)
	h.sync()

	if err := h.s.writePage(ctx, "contacts", []json.RawMessage{oldContact}, oldFetch, nil); err != nil {
		t.Fatal(err)
	}
	r, _ := newRow(oldConv, oldFetch)
	tx, err := h.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wrote, err := h.s.writeConversations(ctx, tx, []whole{{conv: r, fetched: oldFetch, readAt: oldFetch}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if wrote[0] {
		t.Error("an older conversation state was written over a newer one")
	}
	if got := h.one(`SELECT name FROM front.contacts WHERE id = $1`, contact); got != "New" {
		t.Errorf("contact name %q after an older state was offered, want New", got)
	}
	if got := h.one(`SELECT status FROM front.conversations WHERE id = $1`, conv); got != "archived" {
		t.Errorf("conversation status %q after an older state was offered, want archived", got)
	}
	if got := h.one(`SELECT count(*)::text FROM front.messages WHERE conversation_id = $1 AND NOT deleted`, conv); got != "2" {
		t.Errorf("%s messages after an older state (with none) was offered, want 2", got)
	}
	h.clean()
}

// A next-page link naming another host is followed on the configured
// base (its path and query only): the token never goes to the other host,
// and the listing still completes.
func TestNextLinkElsewhereStaysOnTheBase(t *testing.T) {
	t.Parallel()
	var evil atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evil.Add(1)
		w.Write([]byte(`{"_results":[],"_pagination":{"next":null}}`))
	}))
	defer other.Close()
	h := newHarness(t, nil)
	for range 120 {
		h.fake.create("teams", nil)
	}
	h.fake.nextBase = other.URL
	h.sync()
	if evil.Load() != 0 {
		t.Fatalf("%d requests reached the other host", evil.Load())
	}
	if got := h.one(`SELECT count(*)::text FROM front.teams`); got != "120" {
		t.Errorf("front.teams holds %s rows, want 120", got)
	}
}

// A next-page link that is not a URL stops the backfill, and the message
// counts the page that carried it.
func TestUnusableNextLinkCountsItsPage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for range 120 {
		h.fake.create("teams", nil)
	}
	h.fake.nextBase = "::not a url"
	err := h.s.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "front.teams after 50 rows") || !strings.Contains(err.Error(), "not a URL") {
		t.Fatalf("sync: %v, want the link refused after the 50 rows of its page", err)
	}
}

// The API's own errors are named in herd's messages.
func TestAPIErrorsAreNamed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.Token = "wrong" })
	err := h.s.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized: Invalid or missing API token") || !strings.Contains(err.Error(), "FRONT_API_TOKEN") {
		t.Fatalf("sync with a wrong token: %v", err)
	}
}

// A conversation the token may not read (403) is skipped with its events
// recorded as ignored: it does not stall the feed for every other one.
func TestForbiddenConversationDoesNotStallTheFeed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	f := h.fake
	h.sync()
	private := f.conversation(1, 0)
	f.mu.Lock()
	f.forbidden[private] = true
	f.mu.Unlock()
	public := f.conversation(2, 0)
	h.sync()
	if got := h.one(`SELECT count(*)::text FROM front.messages WHERE conversation_id = $1`, public); got != "2" {
		t.Errorf("conversation after a forbidden one: %s messages, want 2", got)
	}
	if got := h.one(`SELECT outcome FROM front.events WHERE conversation_id = $1`, private); got != "ignored" {
		t.Errorf("event on the forbidden conversation: %q, want ignored", got)
	}
}
