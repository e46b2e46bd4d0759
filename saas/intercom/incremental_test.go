package intercom

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd/saas"
)

// Acceptance 2: killed in the middle of the conversations' backfill and
// restarted in a new process, the backfill resumes at the page it had
// reached, fetches no finished conversation again, and ends equal.
func TestBackfillResumesAfterKill(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, convs := h.seed(1000, 320)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var gets atomic.Int32
	h.fake.setHook(func(req string) {
		if strings.HasPrefix(req, "GET /conversations/") && gets.Add(1) == 230 {
			cancel() // the process dies while this request is in flight
		}
	})
	if err := h.s.Sync(ctx); err == nil {
		t.Fatal("sync killed midway returned nil")
	}
	h.fake.setHook(nil)
	first := len(h.fake.requestLog())
	st, err := h.s.state(context.Background(), "conversations")
	if err != nil || st.Phase != "backfill" || st.Cursor == nil {
		t.Fatalf("conversations after the kill: %+v (%v); want phase backfill with a cursor", st, err)
	}
	// A conversation finished before the kill changes meanwhile.
	h.fake.addPart(convs[3])

	h.s = h.syncer()
	h.sync()
	if !strings.Contains(h.logs.String(), "resuming the interrupted Intercom backfill") {
		t.Error("the second run did not say it resumed")
	}
	log := h.fake.requestLog()
	fetched := map[string]int{}
	var secondRun []string
	for i, r := range log {
		if id, ok := strings.CutPrefix(r, "GET /conversations/"); ok {
			fetched[id]++
		}
		if i >= first {
			secondRun = append(secondRun, r)
		}
	}
	twice := 0
	for id, n := range fetched {
		if n > 1 && id != convs[3] {
			twice++
			t.Logf("conversation %s fetched %d times", id, n)
		}
	}
	// Those in flight when the process died (at most Concurrency) may be
	// fetched again; no finished one.
	if twice > h.s.cfg.Concurrency {
		t.Errorf("%d finished conversations were fetched again after the restart", twice)
	}
	if fetched[convs[3]] != 2 {
		t.Errorf("conversation %s changed during the outage was fetched %d times, want 2", convs[3], fetched[convs[3]])
	}
	for _, r := range secondRun {
		if r == "GET /conversations?per_page=150" || strings.HasPrefix(r, "GET /contacts?") {
			t.Errorf("the restarted backfill listed a finished page again: %s", r)
		}
	}
	h.assertEqual()
	h.assertClean()
}

// Acceptance 3: changes between passes (a new part on an old conversation,
// a conversation closed, another deleted, a lead merged into a user, a
// contact deleted) appear after the next pass, and so do changes whose
// updated_at lands inside the lookback window, before the last pass's start.
func TestIncrementalFollowsChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	contacts, convs := h.seed(300, 60)
	h.sync()
	f := h.fake
	syncedUntil := f.now().Unix()

	newPart := f.addPart(convs[3])
	f.closeConversation(convs[4])
	f.updateConversation(convs[5], map[string]any{"title": "late"}, syncedUntil-120)
	f.deleteConversation(convs[6])
	lead, user := contacts[0], contacts[1]
	f.mergeContact(lead, user)
	f.deleteContact(contacts[2])
	f.updateContact(contacts[4], map[string]any{"name": "late"}, syncedUntil-120)
	f.advance(time.Minute) // the next pass, a minute later, as herd up runs them
	h.sync()

	ctx := context.Background()
	var n int
	if err := h.db.QueryRow(ctx, `SELECT count(*) FROM intercom.conversation_parts WHERE id = $1 AND conversation_id = $2 AND NOT deleted`, newPart, convs[3]).Scan(&n); err != nil || n != 1 {
		t.Errorf("new part %s on conversation %s: %d rows (%v)", newPart, convs[3], n, err)
	}
	var state string
	if err := h.db.QueryRow(ctx, `SELECT state FROM intercom.conversations WHERE id = $1`, convs[4]).Scan(&state); err != nil || state != "closed" {
		t.Errorf("closed conversation: state %q (%v)", state, err)
	}
	var title *string
	if err := h.db.QueryRow(ctx, `SELECT title FROM intercom.conversations WHERE id = $1`, convs[5]).Scan(&title); err != nil || title == nil || *title != "late" {
		t.Errorf("conversation changed inside the lookback window: title %v (%v)", title, err)
	}
	var name string
	if err := h.db.QueryRow(ctx, `SELECT name FROM intercom.contacts WHERE id = $1`, contacts[4]).Scan(&name); err != nil || name != "late" {
		t.Errorf("contact changed inside the lookback window, earlier the same day: name %q (%v)", name, err)
	}
	for _, id := range []string{lead, contacts[2]} {
		var deleted bool
		if err := h.db.QueryRow(ctx, `SELECT deleted FROM intercom.contacts WHERE id = $1`, id).Scan(&deleted); err != nil || !deleted {
			t.Errorf("contact %s gone from Intercom: deleted %v (%v)", id, deleted, err)
		}
	}
	var live int
	if err := h.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT deleted) FROM intercom.conversation_parts WHERE conversation_id = $1`, convs[6]).Scan(&live); err != nil || live != 0 {
		t.Errorf("deleted conversation %s still has %d live parts (%v)", convs[6], live, err)
	}
	h.assertEqual()
	h.assertClean()
}

// An older state never overwrites a newer one: a conversation or a contact
// read before a change and written after it (a slow webhook racing a pass)
// leaves the newer row as it is, parts included.
func TestOlderStateNeverOverwritesNewer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	contacts, convs := h.seed(10, 4)
	h.sync()
	f := h.fake
	f.mu.Lock()
	oldContact, _ := json.Marshal(f.contacts[contacts[1]])
	oldConv, _ := json.Marshal(f.convs[convs[2]].full())
	f.mu.Unlock()

	f.updateContact(contacts[1], map[string]any{"name": "newer"}, 0)
	f.addPart(convs[2])
	f.updateConversation(convs[2], map[string]any{"state": "snoozed"}, 0)
	h.sync()

	ctx := context.Background()
	n, err := h.s.upsertItems(ctx, h.db, objectByKind("contact"), []json.RawMessage{oldContact})
	if err != nil || n != 0 {
		t.Errorf("older contact state: %d rows written (%v), want 0", n, err)
	}
	c, err := parseConversation(oldConv)
	if err != nil {
		t.Fatal(err)
	}
	if wrote, err := h.s.writeConversation(ctx, c); err != nil || wrote {
		t.Errorf("older conversation state written: %v (%v)", wrote, err)
	}
	h.assertEqual()

	// A company the table holds newer than the listing gives (a webhook
	// was faster than the listing): kept as it is, and not taken for deleted.
	var company string
	if err := h.db.QueryRow(ctx, `UPDATE intercom.companies SET updated_at = updated_at + interval '1 hour', data = data || '{"name":"from a webhook"}'
		WHERE id = (SELECT min(id) FROM intercom.companies) RETURNING id`).Scan(&company); err != nil {
		t.Fatal(err)
	}
	h.sync()
	var name string
	var deleted bool
	if err := h.db.QueryRow(ctx, `SELECT name, deleted FROM intercom.companies WHERE id = $1`, company).Scan(&name, &deleted); err != nil {
		t.Fatal(err)
	}
	if name != "from a webhook" || deleted {
		t.Errorf("company %s holding a newer state after a listing: name %q deleted %v; want the newer state, not deleted", company, name, deleted)
	}
}

// A saved cursor Intercom no longer takes (its lifetime is not documented)
// restarts the listing instead of failing every pass; the conversations
// finished before the kill are still not fetched again.
func TestBackfillRestartsWhenCursorRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.seed(50, 320)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var gets atomic.Int32
	h.fake.setHook(func(req string) {
		if strings.HasPrefix(req, "GET /conversations/") && gets.Add(1) == 200 {
			cancel()
		}
	})
	if err := h.s.Sync(ctx); err == nil {
		t.Fatal("sync killed midway returned nil")
	}
	h.fake.setHook(nil)
	if _, err := h.db.Exec(context.Background(), `UPDATE intercom.sync_state SET cursor = 'expired' WHERE object = 'conversations'`); err != nil {
		t.Fatal(err)
	}
	h.s = h.syncer()
	h.sync()
	if !strings.Contains(h.logs.String(), "refused the saved backfill cursor") {
		t.Error("no warning about the refused cursor")
	}
	fetched := map[string]int{}
	for _, r := range h.fake.requestLog() {
		if id, ok := strings.CutPrefix(r, "GET /conversations/"); ok {
			fetched[id]++
		}
	}
	twice := 0
	for _, n := range fetched {
		if n > 1 {
			twice++
		}
	}
	if twice > h.s.cfg.Concurrency {
		t.Errorf("%d conversations fetched again after the restart", twice)
	}
	h.assertEqual()
	h.assertClean()
}

// An object the app may not read (403) is reported with Intercom's error,
// and the others are still synced.
func TestOneObjectFailingDoesNotStopTheOthers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, convs := h.seed(20, 5)
	h.fake.setHook(nil)
	h.fake.mu.Lock()
	h.fake.forbidden = "/companies/scroll"
	h.fake.mu.Unlock()
	err := h.s.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "companies") {
		t.Fatalf("sync: %v, want a 403 on companies", err)
	}
	var n int
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM intercom.conversations WHERE id = $1`, convs[4]).Scan(&n); err != nil || n != 1 {
		t.Errorf("conversations not synced while companies failed (%d, %v)", n, err)
	}
	var lastErr *string
	if err := h.db.QueryRow(context.Background(), `SELECT last_error FROM intercom.sync_state WHERE object = 'companies'`).Scan(&lastErr); err != nil || lastErr == nil || !strings.Contains(*lastErr, "403") {
		t.Errorf("sync_state.last_error for companies: %v (%v)", lastErr, err)
	}
}

// updated_at has a resolution of a second: a part added in the same second
// as the state herd fetched leaves updated_at as it was. Such a
// conversation is fetched again until a fetch happened after that second.
func TestPartInTheSameSecondIsNotMissed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, convs := h.seed(10, 4)
	h.sync()
	f := h.fake
	second := f.tick1()
	f.updateConversation(convs[1], nil, second)
	h.sync()
	// As if that fetch had happened within the same second.
	if _, err := h.db.Exec(context.Background(), `UPDATE intercom.conversations SET synced_at = updated_at WHERE id = $1`, convs[1]); err != nil {
		t.Fatal(err)
	}
	part := f.addPart(convs[1])
	f.updateConversation(convs[1], nil, second)
	h.sync()
	var n int
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM intercom.conversation_parts WHERE id = $1`, part).Scan(&n); err != nil || n != 1 {
		t.Errorf("part %s added in the second already fetched: %d rows (%v)", part, n, err)
	}
	h.assertEqual()
}

// TestStaleSameSecondFetchLosesNoPart: a conversation fetched just before a
// part was added in the same second, written after a later fetch that has
// the part (a webhook's refetch racing a pass), neither replaces the row nor
// marks the new part deleted.
func TestStaleSameSecondFetchLosesNoPart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, convs := h.seed(10, 4)
	h.sync()
	f := h.fake
	second := f.tick1()
	f.updateConversation(convs[1], nil, second)
	f.mu.Lock()
	staleJSON, _ := json.Marshal(f.convs[convs[1]].full())
	f.mu.Unlock()
	stale, err := parseConversation(staleJSON)
	if err != nil {
		t.Fatal(err)
	}
	stale.fetched = time.Now()
	part := f.addPart(convs[1])
	f.updateConversation(convs[1], nil, second)
	f.mu.Lock()
	freshJSON, _ := json.Marshal(f.convs[convs[1]].full())
	f.mu.Unlock()
	fresh, err := parseConversation(freshJSON)
	if err != nil {
		t.Fatal(err)
	}
	fresh.fetched = stale.fetched.Add(time.Millisecond)
	if stale.updated != fresh.updated {
		t.Fatalf("the two states differ in updated_at (%d, %d): not the case under test", stale.updated, fresh.updated)
	}
	ctx := context.Background()
	if wrote, err := h.s.writeConversation(ctx, fresh); err != nil || !wrote {
		t.Fatalf("later fetch not written: %v %v", wrote, err)
	}
	if wrote, err := h.s.writeConversation(ctx, stale); err != nil || wrote {
		t.Errorf("earlier fetch with the same updated_at written over a later one: %v %v", wrote, err)
	}
	var deleted bool
	if err := h.db.QueryRow(ctx, `SELECT deleted FROM intercom.conversation_parts WHERE id = $1`, part).Scan(&deleted); err != nil || deleted {
		t.Errorf("part %s after the stale write: deleted %v (%v); want present", part, deleted, err)
	}
	h.assertEqual()
}

// TestCheckFindingsRepairedByTheNextPass: rows altered or lost in the
// warehouse (a contact changed with a later updated_at, a part deleted, a
// conversation's row removed, a contact that Intercom does not have) are
// settled rows no incremental pass fetches again; check queues them and the
// next pass mends them, so that check then comes out clean.
func TestCheckFindingsRepairedByTheNextPass(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	contacts, convs := h.seed(20, 6)
	h.sync()
	ctx := context.Background()
	for _, q := range []string{
		`UPDATE intercom.contacts SET data = data || '{"name":"tampered"}', updated_at = updated_at + interval '1 day' WHERE id = '` + contacts[3] + `'`,
		`DELETE FROM intercom.conversation_parts WHERE id = (SELECT min(id) FROM intercom.conversation_parts WHERE conversation_id = '` + convs[2] + `')`,
		`DELETE FROM intercom.conversations WHERE id = '` + convs[4] + `'`,
		`INSERT INTO intercom.contacts (id, data, deleted, updated_at, synced_at) VALUES ('ghost', '{"id":"ghost"}', false, now(), now())`,
	} {
		if _, err := h.db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	bad := 0
	for _, d := range h.check() {
		if !d.Clean() {
			bad++
		}
	}
	if bad == 0 {
		t.Fatal("check found nothing to repair")
	}
	h.fake.advance(time.Minute)
	h.sync()
	h.assertClean()
	h.assertEqual()
	var queued int
	if err := h.db.QueryRow(ctx, `SELECT count(*) FROM intercom.refetch`).Scan(&queued); err != nil || queued != 0 {
		t.Errorf("intercom.refetch after the pass: %d rows (%v); want 0", queued, err)
	}
}

// TestSweepIntervalFollowsTheCost: by default a table is swept every minute
// while listing it costs under a tenth of the request rate, and less often
// in proportion past that; a SweepEvery given is kept.
func TestSweepIntervalFollowsTheCost(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	if _, err := h.db.Exec(ctx, `INSERT INTO intercom.contacts (id, data, deleted, updated_at, synced_at)
		SELECT 'c' || i, '{}', false, now(), now() FROM generate_series(1, 2999) i`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		rate  float64
		every time.Duration
		want  time.Duration
	}{
		{20, 0, time.Minute},              // 20 pages at 2 requests a second: 10 s
		{1, 0, 200 * time.Second},         // 20 pages at 0.1 a second
		{1, 6 * time.Hour, 6 * time.Hour}, // given
	} {
		s, err := New(Config{Token: "x", Limits: saas.Limits{RequestsPerSecond: c.rate}, SweepEvery: c.every}, h.db, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.sweepInterval(ctx, objectByKind("contact"))
		if err != nil || got != c.want {
			t.Errorf("rate %v, SweepEvery %v: sweep every %v (%v); want %v", c.rate, c.every, got, err, c.want)
		}
	}
}

// TestCompanyScrollIsShared: Intercom keeps one company scroll open per app.
// A scroll left open by another process is waited for until it expires, and
// a check started while a pass is scrolling companies waits for that scroll
// to end instead of failing or breaking the pass.
func TestCompanyScrollIsShared(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.seed(10, 4)
	h.fake.mu.Lock()
	h.fake.scrollTTL = 2 * time.Second
	h.fake.mu.Unlock()
	h.s.scrollRetry = 50 * time.Millisecond

	// A scroll opened and abandoned elsewhere.
	req, _ := http.NewRequest("GET", h.fake.URL()+"/companies/scroll", nil)
	req.Header.Set("Authorization", "Bearer "+h.fake.token)
	req.Header.Set("Intercom-Version", DefaultVersion)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("opening a scroll: %d", resp.StatusCode)
	}
	h.sync()
	h.assertEqual()

	// A check (another process) started while the pass scrolls companies.
	checker := h.syncer()
	checker.scrollRetry = 50 * time.Millisecond
	checked := make(chan error, 1)
	var started atomic.Bool
	h.fake.setHook(func(req string) {
		if strings.Contains(req, "/companies/scroll?scroll_param=") && started.CompareAndSwap(false, true) {
			go func() {
				_, err := checker.Check(context.Background())
				checked <- err
			}()
			time.Sleep(200 * time.Millisecond) // the check asks while this scroll is open
		}
	})
	h.fake.addCompany()
	h.fake.advance(time.Minute)
	h.sync()
	h.fake.setHook(nil)
	if !started.Load() {
		t.Fatal("the pass did not scroll companies")
	}
	select {
	case err := <-checked:
		if err != nil {
			t.Errorf("check during a pass: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("check during a pass did not finish")
	}
	h.assertEqual()
	h.assertClean()
}

// TestTickets: a workspace without tickets (their endpoints answer 404)
// leaves intercom.tickets empty and its sync_state row unavailable, with no
// error and nothing failing; once it has tickets they are backfilled
// through the search (there is no list endpoint) and followed by updated_at.
func TestTickets(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.seed(10, 3)
	h.sync()
	ctx := context.Background()
	var phase string
	var lastError *string
	if err := h.db.QueryRow(ctx, `SELECT phase, last_error FROM intercom.sync_state WHERE object = 'tickets'`).Scan(&phase, &lastError); err != nil || phase != "unavailable" || lastError != nil {
		t.Errorf("tickets in a workspace without them: phase %q, last_error %v (%v); want unavailable and none", phase, lastError, err)
	}
	h.assertClean()

	f := h.fake
	f.mu.Lock()
	f.ticketsOn = true
	f.mu.Unlock()
	var ids []string
	for range 320 { // three search pages
		ids = append(ids, f.addTicket())
	}
	f.advance(time.Minute)
	h.sync()
	h.assertEqual()
	f.updateTicket(ids[5], map[string]any{"open": false, "ticket_state": map[string]any{"type": "ticket_state", "id": "4", "category": "resolved"}})
	added := f.addTicket()
	f.advance(time.Minute)
	h.sync()
	h.assertEqual()
	h.assertClean()
	var state string
	var open bool
	if err := h.db.QueryRow(ctx, `SELECT ticket_state, open FROM intercom.tickets WHERE id = $1`, ids[5]).Scan(&state, &open); err != nil || state != "resolved" || open {
		t.Errorf("resolved ticket: state %q open %v (%v)", state, open, err)
	}
	var n int
	if err := h.db.QueryRow(ctx, `SELECT count(*) FROM intercom.tickets WHERE id = $1`, added).Scan(&n); err != nil || n != 1 {
		t.Errorf("ticket added between passes: %d rows (%v)", n, err)
	}
}
