package stripe

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeStripe is a stateful stand-in for Stripe's API, just large enough for
// herd's requests: lists with has_more/starting_after, created[gte] filters,
// retrieval (deleted customers as stubs, other deleted objects as 404),
// events in list order that may disagree with their created times, and 429s
// on a schedule. It refuses parameters it does not know, so a request shape
// herd changes by accident fails here before it fails against Stripe.
type fakeStripe struct {
	srv *httptest.Server
	key string

	mu        sync.Mutex
	clock     int64
	seq       int
	objs      map[string]map[string]map[string]any // table -> id -> object
	order     map[string]int                       // id -> insertion sequence, for stable list order
	events    []fakeEvent                          // in list order, oldest first
	requests  int
	every429  int // answer 429 to every Nth request; 0: never
	n429      int
	gets      map[string]int // retrievals per object id
	lists     map[string]int // list requests per table
	failTable string         // answer 500 (Stripe-Should-Retry: false) to lists of this table
}

type fakeEvent struct {
	body   map[string]any
	hidden bool // not listed yet: Stripe's list can show an event after newer ones
}

var kinds = map[string]string{
	"customers": "customer", "products": "product", "prices": "price", "subscriptions": "subscription",
	"invoices": "invoice", "charges": "charge", "payment_intents": "payment_intent", "refunds": "refund",
	"disputes": "dispute", "balance_transactions": "balance_transaction", "coupons": "coupon",
}

var prefixes = map[string]string{
	"customers": "cus_", "products": "prod_", "prices": "price_", "subscriptions": "sub_", "invoices": "in_",
	"charges": "ch_", "payment_intents": "pi_", "refunds": "re_", "disputes": "dp_",
	"balance_transactions": "txn_", "coupons": "co_",
}

func newFakeStripe(t testing.TB) *fakeStripe {
	f := &fakeStripe{
		key:   "sk_test_fake",
		clock: time.Now().Add(-time.Hour).Unix(),
		objs:  map[string]map[string]map[string]any{},
		order: map[string]int{},
		gets:  map[string]int{},
		lists: map[string]int{},
	}
	for table := range kinds {
		f.objs[table] = map[string]map[string]any{}
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeStripe) URL() string { return f.srv.URL }

func clone(v map[string]any) map[string]any {
	b, _ := json.Marshal(v)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// create adds an object and, except for balance transactions (Stripe sends
// no events for them), its .created event.
func (f *fakeStripe) create(table string, fields map[string]any) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock++
	f.seq++
	id := fmt.Sprintf("%s%04d", prefixes[table], f.seq)
	o := clone(fields)
	o["id"], o["object"], o["created"], o["livemode"] = id, kinds[table], f.clock, false
	f.objs[table][id] = o
	f.order[id] = f.seq
	if table != "balance_transactions" {
		f.emit(kinds[table]+".created", o, false)
	}
	return id
}

// update changes fields; silent: without an event (what herd cannot see
// except by a full listing).
func (f *fakeStripe) update(table, id string, fields map[string]any, silent bool) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock++
	o := f.objs[table][id]
	if o == nil {
		panic("fake: update of unknown " + table + " " + id)
	}
	for k, v := range fields {
		o[k] = v
	}
	if silent || table == "balance_transactions" {
		return ""
	}
	return f.emit(kinds[table]+".updated", o, false)
}

// updateHidden is update whose event the list shows only after reveal.
func (f *fakeStripe) updateHidden(table, id string, fields map[string]any) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock++
	o := f.objs[table][id]
	for k, v := range fields {
		o[k] = v
	}
	return f.emit(kinds[table]+".updated", o, true)
}

func (f *fakeStripe) reveal(evID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.events {
		if f.events[i].body["id"] == evID {
			// Appearing now means coming first in the newest-first list.
			e := f.events[i]
			e.hidden = false
			f.events = append(slices.Delete(f.events, i, i+1), e)
			return
		}
	}
}

// remove deletes an object: customers stay retrievable as a stub, others
// answer 404, as in Stripe. silent: without an event.
func (f *fakeStripe) remove(table, id string, silent bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock++
	o := f.objs[table][id]
	if table == "customers" {
		f.objs[table][id] = map[string]any{"id": id, "object": "customer", "deleted": true}
	} else {
		delete(f.objs[table], id)
	}
	if !silent {
		f.emit(kinds[table]+".deleted", o, false)
	}
}

func (f *fakeStripe) emit(typ string, obj map[string]any, hidden bool) string {
	id := fmt.Sprintf("evt_%05d", len(f.events)+1)
	f.events = append(f.events, fakeEvent{body: map[string]any{
		"id": id, "object": "event", "type": typ, "created": f.clock, "livemode": false,
		"api_version": "2025-04-30.basil", "pending_webhooks": 1,
		"data": map[string]any{"object": clone(obj)},
	}, hidden: hidden})
	return id
}

func (f *fakeStripe) event(id string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.events {
		if e.body["id"] == id {
			b, _ := json.Marshal(e.body)
			return b
		}
	}
	panic("fake: no event " + id)
}

// live returns the objects Stripe would list, by id.
func (f *fakeStripe) live(table string) map[string]map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]map[string]any{}
	for id, o := range f.objs[table] {
		if o["deleted"] != true {
			out[id] = clone(o)
		}
	}
	return out
}

func (f *fakeStripe) getCount(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets[id]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_fake")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"type": "invalid_request_error", "code": code, "message": msg}})
}

func (f *fakeStripe) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if f.every429 > 0 && f.requests%f.every429 == 0 {
		f.n429++
		if f.n429%2 == 0 {
			w.Header().Set("Stripe-Should-Retry", "true")
		}
		apiError(w, http.StatusTooManyRequests, "rate_limit", "Too many requests hit the API too quickly.")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.key {
		apiError(w, http.StatusUnauthorized, "", "Invalid API Key provided")
		return
	}
	if r.Method != http.MethodGet {
		apiError(w, http.StatusMethodNotAllowed, "", "herd only reads")
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/"), "/")
	q := r.URL.Query()
	switch {
	case len(parts) == 1 && parts[0] == "events":
		f.listEvents(w, q)
	case len(parts) == 1 && kinds[parts[0]] != "":
		if parts[0] == f.failTable {
			w.Header().Set("Stripe-Should-Retry", "false")
			writeJSON(w, http.StatusInternalServerError, map[string]any{"error": map[string]any{"type": "api_error", "message": "fake outage"}})
			return
		}
		f.lists[parts[0]]++
		f.list(w, parts[0], q)
	case len(parts) == 2 && kinds[parts[0]] != "":
		if len(q) > 0 {
			apiError(w, http.StatusBadRequest, "parameter_unknown", "unexpected parameters on retrieve: "+q.Encode())
			return
		}
		f.gets[parts[1]]++
		o, ok := f.objs[parts[0]][parts[1]]
		if !ok {
			apiError(w, http.StatusNotFound, "resource_missing", "No such "+kinds[parts[0]]+": '"+parts[1]+"'")
			return
		}
		writeJSON(w, http.StatusOK, o)
	default:
		apiError(w, http.StatusNotFound, "", "Unrecognized request URL (GET: "+r.URL.Path+")")
	}
}

type page struct {
	limit         int
	startingAfter string
	createdGTE    int64
}

func parsePage(w http.ResponseWriter, q map[string][]string, allowed ...string) (page, bool) {
	p := page{limit: 10}
	for k, v := range q {
		switch {
		case k == "limit":
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 || n > 100 {
				apiError(w, http.StatusBadRequest, "parameter_invalid_integer", "limit must be 1..100")
				return p, false
			}
			p.limit = n
		case k == "starting_after":
			p.startingAfter = v[0]
		case k == "created[gte]":
			n, err := strconv.ParseInt(v[0], 10, 64)
			if err != nil {
				apiError(w, http.StatusBadRequest, "parameter_invalid_integer", "created[gte]")
				return p, false
			}
			p.createdGTE = n
		case slices.Contains(allowed, k):
		default:
			apiError(w, http.StatusBadRequest, "parameter_unknown", "Received unknown parameter: "+k)
			return p, false
		}
	}
	return p, true
}

// paginate returns the page of items (newest first) after startingAfter.
func paginate(items []map[string]any, p page) ([]map[string]any, bool) {
	start := 0
	if p.startingAfter != "" {
		start = -1
		for i, o := range items {
			if o["id"] == p.startingAfter {
				start = i + 1
			}
		}
		if start < 0 {
			return nil, false
		}
	}
	end := min(start+p.limit, len(items))
	return items[start:end], end < len(items)
}

func created(o map[string]any) int64 {
	switch v := o["created"].(type) {
	case int64:
		return v
	case float64:
		return int64(v)
	}
	return 0
}

func (f *fakeStripe) list(w http.ResponseWriter, table string, q map[string][]string) {
	var allowed []string
	if table == "subscriptions" {
		allowed = []string{"status"}
	}
	p, ok := parsePage(w, q, allowed...)
	if !ok {
		return
	}
	if p.createdGTE != 0 && table != "balance_transactions" {
		apiError(w, http.StatusBadRequest, "parameter_unknown", "herd filters only balance transactions by created")
		return
	}
	status := ""
	if v, ok := q["status"]; ok {
		status = v[0]
	}
	var items []map[string]any
	for id, o := range f.objs[table] {
		if o["deleted"] == true || created(o) < p.createdGTE {
			continue
		}
		// Like Stripe, canceled subscriptions are listed only with status=all.
		if table == "subscriptions" && status != "all" && o["status"] == "canceled" {
			continue
		}
		_ = id
		items = append(items, o)
	}
	slices.SortFunc(items, func(a, b map[string]any) int {
		if c := created(b) - created(a); c != 0 {
			return int(c)
		}
		return f.order[b["id"].(string)] - f.order[a["id"].(string)]
	})
	data, more := paginate(items, p)
	if data == nil && p.startingAfter != "" {
		apiError(w, http.StatusBadRequest, "resource_missing", "starting_after: no such object")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "url": "/v1/" + table, "has_more": more, "data": nonNil(data)})
}

func (f *fakeStripe) listEvents(w http.ResponseWriter, q map[string][]string) {
	p, ok := parsePage(w, q)
	if !ok {
		return
	}
	var items []map[string]any
	for i := len(f.events) - 1; i >= 0; i-- {
		e := f.events[i]
		if !e.hidden && created(e.body) >= p.createdGTE {
			items = append(items, e.body)
		}
	}
	data, more := paginate(items, p)
	if data == nil && p.startingAfter != "" {
		apiError(w, http.StatusBadRequest, "resource_missing", "starting_after: no such event")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "url": "/v1/events", "has_more": more, "data": nonNil(data)})
}

func nonNil(d []map[string]any) []map[string]any {
	if d == nil {
		return []map[string]any{}
	}
	return d
}
