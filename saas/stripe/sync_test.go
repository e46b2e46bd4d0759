package stripe

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"sync"
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
	fake *fakeStripe
	s    *Syncer
	logs *syncBuffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	db := pgtest.Pool(t, pgtest.New(t))
	if _, err := schemas.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	fake := newFakeStripe(t)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := New(Config{
		APIKey:   fake.key,
		APIBase:  fake.URL(),
		PageSize: 3, // several pages per object
		Limits:   saas.Limits{RequestsPerSecond: 1000, Burst: 50, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond},
	}, db, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("syncer log:\n%s", logs.String())
		}
	})
	return &harness{t: t, db: db, fake: fake, s: s, logs: logs}
}

// seed creates a small account touching every object type.
func (h *harness) seed() map[string][]string {
	f := h.fake
	ids := map[string][]string{}
	add := func(table string, fields map[string]any) string {
		id := f.create(table, fields)
		ids[table] = append(ids[table], id)
		return id
	}
	p1 := add("products", map[string]any{"name": "Pro", "active": true})
	p2 := add("products", map[string]any{"name": "Team", "active": true})
	add("prices", map[string]any{"product": p1, "currency": "eur", "unit_amount": 1200, "type": "recurring", "recurring": map[string]any{"interval": "month", "interval_count": 1}})
	add("prices", map[string]any{"product": p1, "currency": "eur", "unit_amount": 12000, "type": "recurring", "recurring": map[string]any{"interval": "year", "interval_count": 1}})
	add("prices", map[string]any{"product": p2, "currency": "usd", "unit_amount": 5000, "type": "one_time"})
	add("coupons", map[string]any{"name": "LAUNCH", "percent_off": 20.5, "duration": "once", "valid": true})
	add("coupons", map[string]any{"name": "TENOFF", "amount_off": 1000, "currency": "eur", "duration": "forever", "valid": true})
	var cus []string
	for i := range 7 {
		cus = append(cus, add("customers", map[string]any{"email": "user" + string(rune('a'+i)) + "@example.com", "name": "User", "balance": 0, "delinquent": false}))
	}
	add("subscriptions", map[string]any{"customer": cus[0], "status": "active", "cancel_at_period_end": false,
		"items": map[string]any{"object": "list", "data": []any{map[string]any{"current_period_start": 1, "current_period_end": 2}}}})
	add("subscriptions", map[string]any{"customer": cus[1], "status": "canceled"})
	add("subscriptions", map[string]any{"customer": cus[2], "status": "trialing"})
	add("invoices", map[string]any{"customer": cus[0], "status": "paid", "amount_due": 1200, "amount_paid": 1200, "currency": "eur",
		"parent": map[string]any{"subscription_details": map[string]any{"subscription": "sub_x"}}})
	add("invoices", map[string]any{"customer": cus[1], "status": "open", "amount_due": 5000, "currency": "usd"})
	pi := add("payment_intents", map[string]any{"customer": cus[0], "status": "succeeded", "amount": 1200, "currency": "eur"})
	add("payment_intents", map[string]any{"customer": cus[3], "status": "requires_payment_method", "amount": 900, "currency": "eur"})
	ch := add("charges", map[string]any{"customer": map[string]any{"id": cus[0], "object": "customer"}, "payment_intent": pi, "status": "succeeded", "amount": 1200, "currency": "eur", "paid": true})
	add("charges", map[string]any{"customer": cus[3], "status": "failed", "amount": 900, "currency": "eur", "paid": false, "failure_code": "card_declined"})
	add("charges", map[string]any{"customer": cus[4], "status": "succeeded", "amount": 300, "currency": "eur", "paid": true})
	add("refunds", map[string]any{"charge": ch, "status": "succeeded", "amount": 200, "currency": "eur"})
	add("disputes", map[string]any{"charge": ch, "status": "needs_response", "amount": 1000, "currency": "eur", "reason": "fraudulent"})
	for i := range 4 {
		status := "available"
		if i == 3 {
			status = "pending"
		}
		add("balance_transactions", map[string]any{"type": "charge", "amount": 1200, "fee": 65, "net": 1135, "currency": "eur",
			"status": status, "available_on": time.Now().Add(-time.Minute).Unix(), "source": ch})
	}
	// Deleted before herd ever looked: listed nowhere, retrievable as a stub.
	f.remove("customers", cus[6], false)
	return ids
}

// assertMatches compares every table with the fake's state: the same live
// ids with the same objects, and every other row marked deleted.
func (h *harness) assertMatches() {
	h.t.Helper()
	ctx := context.Background()
	for table := range kinds {
		want := h.fake.live(table)
		got := map[string]map[string]any{}
		deleted := map[string]bool{}
		rows, _ := h.db.Query(ctx, "SELECT id, data, deleted FROM "+pgx.Identifier{"stripe", table}.Sanitize())
		for rows.Next() {
			var id string
			var data []byte
			var del bool
			if err := rows.Scan(&id, &data, &del); err != nil {
				h.t.Fatal(err)
			}
			if del {
				deleted[id] = true
				continue
			}
			var o map[string]any
			_ = json.Unmarshal(data, &o)
			got[id] = o
		}
		if err := rows.Err(); err != nil {
			h.t.Fatal(err)
		}
		for id, w := range want {
			g, ok := got[id]
			if !ok {
				h.t.Errorf("stripe.%s: %s missing (deleted=%v)", table, id, deleted[id])
				continue
			}
			if !reflect.DeepEqual(normalize(w), normalize(g)) {
				h.t.Errorf("stripe.%s %s:\n got %v\nwant %v", table, id, g, w)
			}
		}
		for id := range got {
			if _, ok := want[id]; !ok {
				h.t.Errorf("stripe.%s: %s present and not marked deleted, but Stripe no longer lists it", table, id)
			}
		}
	}
}

func normalize(o map[string]any) any {
	b, _ := json.Marshal(o)
	var v any
	_ = json.Unmarshal(b, &v)
	return v
}

func (h *harness) assertCheckClean() {
	h.t.Helper()
	diffs, err := h.s.Check(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	if len(diffs) != len(objects) {
		h.t.Errorf("check returned %d objects, want %d", len(diffs), len(objects))
	}
	for _, d := range diffs {
		if !d.Clean() {
			h.t.Errorf("check %s: %+v", d.Object, d)
		}
	}
}

func (h *harness) sync() {
	h.t.Helper()
	if err := h.s.Sync(context.Background()); err != nil {
		h.t.Fatalf("sync: %v", err)
	}
}

// Acceptance 1: full sync, then incremental syncs through events that arrive
// out of order, with deletions and 429s, leave the tables equal to Stripe's
// state, and check finds no difference.
func TestFullThenIncrementalMatchesStripe(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ids := h.seed()
	h.fake.every429 = 5

	h.sync()
	if !strings.Contains(h.logs.String(), "stripe backfill") || !strings.Contains(h.logs.String(), "object=customers rows=6") {
		t.Errorf("want a progress line per object, with 6 live customers; log:\n%s", h.logs.String())
	}
	h.assertMatches()
	h.assertCheckClean()

	f := h.fake
	cus := ids["customers"]
	f.update("customers", cus[0], map[string]any{"email": "new@example.com"}, false)
	f.create("customers", map[string]any{"email": "late@example.com"})
	f.remove("customers", cus[1], false)
	f.remove("products", ids["products"][1], false) // 404 from now on
	f.update("subscriptions", ids["subscriptions"][0], map[string]any{"status": "canceled", "canceled_at": 1700000000}, false)
	ch := f.create("charges", map[string]any{"customer": cus[2], "status": "succeeded", "amount": 700, "currency": "eur", "paid": true})
	f.create("refunds", map[string]any{"charge": ch, "status": "pending", "amount": 700, "currency": "eur"})
	f.update("charges", ch, map[string]any{"refunded": true, "amount_refunded": 700}, false)
	f.update("coupons", ids["coupons"][0], map[string]any{"valid": false}, false)
	f.remove("coupons", ids["coupons"][1], false)
	f.create("balance_transactions", map[string]any{"type": "charge", "amount": 700, "currency": "eur", "status": "pending",
		"available_on": time.Now().Add(24 * time.Hour).Unix()})
	f.update("balance_transactions", ids["balance_transactions"][3], map[string]any{"status": "available"}, true)
	// The list shows this event only after a newer one, and after the cursor
	// has moved past its created time.
	hidden := f.updateHidden("customers", cus[3], map[string]any{"name": "Renamed"})
	f.update("invoices", ids["invoices"][1], map[string]any{"status": "paid", "amount_paid": 5000}, false)

	h.sync()
	f.reveal(hidden)
	h.sync()
	h.assertMatches()
	h.assertCheckClean()
	if f.n429 == 0 {
		t.Error("the fake never answered 429: the retry path was not exercised")
	}

	var phase string
	var cursor time.Time
	if err := h.db.QueryRow(context.Background(), "SELECT phase, cursor FROM stripe.sync_state WHERE object = 'events'").Scan(&phase, &cursor); err != nil {
		t.Fatal(err)
	}
	if phase != "incremental" || cursor.Unix() != f.clock {
		t.Errorf("sync_state events: phase %q cursor %d, want incremental and %d", phase, cursor.Unix(), f.clock)
	}
	var del bool
	if err := h.db.QueryRow(context.Background(), "SELECT deleted FROM stripe.products WHERE id = $1", ids["products"][1]).Scan(&del); err != nil || !del {
		t.Errorf("deleted product: deleted=%v err=%v", del, err)
	}
	var status string
	if err := h.db.QueryRow(context.Background(), "SELECT status FROM stripe.subscriptions WHERE id = $1", ids["subscriptions"][0]).Scan(&status); err != nil || status != "canceled" {
		t.Errorf("typed column status = %q (%v), want canceled", status, err)
	}
}

// A cursor past the Events API's retention must not be resumed: the next
// pass is a full resync, which finds what no event announced.
func TestStaleCursorRunsFullResync(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ids := h.seed()
	h.sync()

	h.fake.remove("customers", ids["customers"][0], true)
	h.fake.update("customers", ids["customers"][1], map[string]any{"name": "Changed silently"}, true)
	if _, err := h.db.Exec(context.Background(),
		"UPDATE stripe.sync_state SET synced_until = now() - interval '31 days' WHERE object = 'events'"); err != nil {
		t.Fatal(err)
	}
	h.sync()
	if !strings.Contains(h.logs.String(), "level=WARN") || !strings.Contains(h.logs.String(), "full resync") {
		t.Errorf("want a warning about the full resync; log:\n%s", h.logs.String())
	}
	h.assertMatches()
	h.assertCheckClean()
}

// An interrupted backfill resumes where it stopped instead of starting over.
func TestInterruptedBackfillResumes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	h.fake.mu.Lock()
	h.fake.failTable = "customers"
	h.fake.mu.Unlock()
	if err := h.s.Sync(context.Background()); err == nil {
		t.Fatal("sync succeeded although Stripe refused to list customers")
	}
	var lastErr string
	if err := h.db.QueryRow(context.Background(), "SELECT last_error FROM stripe.sync_state WHERE object = 'events'").Scan(&lastErr); err != nil || !strings.Contains(lastErr, "customers") {
		t.Errorf("sync_state.last_error = %q (%v), want the failure", lastErr, err)
	}
	h.fake.mu.Lock()
	h.fake.failTable = ""
	productLists := h.fake.lists["products"]
	h.fake.mu.Unlock()
	h.sync()
	if !strings.Contains(h.logs.String(), "resuming") {
		t.Errorf("want the backfill resumed; log:\n%s", h.logs.String())
	}
	h.fake.mu.Lock()
	again := h.fake.lists["products"] - productLists
	h.fake.mu.Unlock()
	if again != 0 {
		t.Errorf("products were listed %d more times; a resumed backfill skips finished objects", again)
	}
	h.assertMatches()
	h.assertCheckClean()
}

// Acceptance 2: an older event replayed after a newer one leaves the newer
// data in place, both at the guarded write and through the event path.
func TestOlderEventNeverOverwritesNewer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	obj := objectByTable("customers")
	t1, t2, t3 := time.Unix(1_700_000_100, 0), time.Unix(1_700_000_200, 0), time.Unix(1_700_000_300, 0)

	write := func(data string, v time.Time) int64 {
		n, err := upsert(ctx, h.db, obj, "cus_race", []byte(data), &v)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	name := func() (string, bool) {
		var n string
		var del bool
		if err := h.db.QueryRow(ctx, "SELECT name, deleted FROM stripe.customers WHERE id = 'cus_race'").Scan(&n, &del); err != nil {
			t.Fatal(err)
		}
		return n, del
	}
	write(`{"id":"cus_race","object":"customer","name":"new"}`, t2)
	if n := write(`{"id":"cus_race","object":"customer","name":"old"}`, t1); n != 0 {
		t.Errorf("older write affected %d rows", n)
	}
	if n, _ := name(); n != "new" {
		t.Errorf("name = %q after an older write, want new", n)
	}
	if _, err := markDeleted(ctx, h.db, obj, "cus_race", nil, &t3); err != nil {
		t.Fatal(err)
	}
	write(`{"id":"cus_race","object":"customer","name":"resurrected"}`, t2)
	if n, del := name(); n != "new" || !del {
		t.Errorf("after delete at t3 and a t2 write: name %q deleted %v, want new and deleted", n, del)
	}

	// Through webhooks: the newer event arrives first.
	f := h.fake
	id := f.create("customers", map[string]any{"name": "v1"})
	older := f.update("customers", id, map[string]any{"name": "v2"}, false)
	newer := f.update("customers", id, map[string]any{"name": "v3"}, false)
	if err := h.s.Webhook(ctx, f.event(newer)); err != nil {
		t.Fatal(err)
	}
	f.update("customers", id, map[string]any{"name": "v4-without-event-yet"}, true)
	gets := f.getCount(id)
	if err := h.s.Webhook(ctx, f.event(older)); err != nil {
		t.Fatal(err)
	}
	var got string
	var lec time.Time
	if err := h.db.QueryRow(ctx, "SELECT name, last_event_created FROM stripe.customers WHERE id = $1", id).Scan(&got, &lec); err != nil {
		t.Fatal(err)
	}
	if got != "v3" {
		t.Errorf("name = %q after replaying an older event, want v3 (the newer event's state)", got)
	}
	var newerCreated float64
	_ = json.Unmarshal(f.event(newer), &struct {
		Created *float64 `json:"created"`
	}{&newerCreated})
	if lec.Unix() != int64(newerCreated) {
		t.Errorf("last_event_created = %d, want the newer event's %d", lec.Unix(), int64(newerCreated))
	}
	if f.getCount(id) != gets {
		t.Error("a stale event refetched the object; it should be recognised without an API call")
	}
	var outcome string
	if err := h.db.QueryRow(ctx, "SELECT outcome FROM stripe.events WHERE id = $1", older).Scan(&outcome); err != nil || outcome != "stale" {
		t.Errorf("older event outcome = %q (%v), want stale", outcome, err)
	}
	// The same event again (a webhook redelivery) changes nothing.
	if err := h.s.Webhook(ctx, f.event(newer)); err != nil {
		t.Fatal(err)
	}
	if f.getCount(id) != gets {
		t.Error("a duplicate event refetched the object")
	}
}
