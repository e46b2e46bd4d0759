package intercom

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeIntercom is a stateful stand-in for Intercom's REST API, built from its
// reference: Bearer tokens, a required Intercom-Version, list endpoints with
// pages.next.starting_after, search endpoints with a query on updated_at
// (compared by calendar day for contacts, as current versions do), per_page
// capped at 150, a company scroll, conversations whose GET returns at most
// 500 parts, 404s as error lists, and 429s with X-RateLimit-* headers.
type fakeIntercom struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	token     string
	version   string
	clock     time.Time // the workspace's clock: every change ticks it
	seq       int
	contacts  map[string]map[string]any
	compans   map[string]map[string]any
	convs     map[string]*fakeConv
	tickets   map[string]map[string]any
	ticketsOn bool                        // the workspace has tickets; otherwise their endpoints answer 404
	small     map[string][]map[string]any // admins, teams, tags, segments
	requests  []string                    // "GET /path?query" or "POST /path after=cursor"
	every429  int                         // every n-th request gets a 429; 0: never
	forbidden string                      // a path answered 403, as for an app without the scope
	count     int
	// hook runs (without the lock) at the start of each request.
	hook func(req string)
	// The company scroll, as Intercom documents it: one open per app at a
	// time (opening another answers 400 scroll_exists), expiring when
	// unused for scrollTTL (a minute; wall clock) or once its last, empty
	// page was given.
	scrollTTL  time.Duration
	scrollN    int       // the open scroll's number; 0: none
	scrollUsed time.Time // when it was last used
}

type fakeConv struct {
	data  map[string]any
	parts []map[string]any
}

const partsCap = 500

func newFakeIntercom(t *testing.T) *fakeIntercom {
	f := &fakeIntercom{
		t: t, token: "tok_test", version: DefaultVersion,
		clock:     time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC),
		scrollTTL: time.Minute,
		contacts:  map[string]map[string]any{}, compans: map[string]map[string]any{},
		convs: map[string]*fakeConv{}, small: map[string][]map[string]any{}, tickets: map[string]map[string]any{},
	}
	f.small["admins"] = []map[string]any{{"type": "admin", "id": "a1", "name": "Ada", "email": "ada@example.com"}, {"type": "admin", "id": "a2", "name": "Bo", "email": "bo@example.com"}}
	f.small["teams"] = []map[string]any{{"type": "team", "id": "t1", "name": "Support", "admin_ids": []any{"a1", "a2"}}}
	f.small["tags"] = []map[string]any{{"type": "tag", "id": "17", "name": "vip"}}
	f.small["segments"] = []map[string]any{{"type": "segment", "id": "s1", "name": "Active", "created_at": 1700000000, "updated_at": 1700000000}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIntercom) URL() string { return f.srv.URL }

// tick advances the workspace clock by a second and returns it.
func (f *fakeIntercom) tick() int64 {
	f.clock = f.clock.Add(time.Second)
	return f.clock.Unix()
}

// tick1 is tick for tests: the next second of the workspace's clock.
func (f *fakeIntercom) tick1() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tick()
}

func (f *fakeIntercom) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

func (f *fakeIntercom) advance(d time.Duration) {
	f.mu.Lock()
	f.clock = f.clock.Add(d)
	f.mu.Unlock()
}

func (f *fakeIntercom) nextID(prefix string) string {
	f.seq++
	return fmt.Sprintf("%s%06d", prefix, f.seq)
}

func (f *fakeIntercom) addContact(role string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextID("ct")
	ts := f.tick()
	f.contacts[id] = map[string]any{"type": "contact", "id": id, "role": role, "email": id + "@example.com",
		"name": "Contact " + id, "external_id": nil, "created_at": ts, "updated_at": ts, "last_seen_at": nil,
		"custom_attributes": map[string]any{"plan": "free"}}
	return id
}

// updateContact changes fields; at, when not zero, is the updated_at the
// change carries (a change that reaches the search index late).
func (f *fakeIntercom) updateContact(id string, fields map[string]any, at int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.contacts[id]
	if c == nil {
		f.t.Fatalf("fake: no contact %s", id)
	}
	for k, v := range fields {
		c[k] = v
	}
	if at == 0 {
		at = f.tick()
	}
	c["updated_at"] = at
}

func (f *fakeIntercom) deleteContact(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.contacts, id)
	f.tick()
}

// mergeContact merges lead into user as POST /contacts/merge does: the lead
// is gone, the user updated.
func (f *fakeIntercom) mergeContact(lead, user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.contacts, lead)
	f.contacts[user]["updated_at"] = f.tick()
}

// addTicket adds a ticket, shaped as Intercom's ticket object.
func (f *fakeIntercom) addTicket() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextID("tk")
	now := f.tick()
	f.tickets[id] = map[string]any{"type": "ticket", "id": id, "ticket_id": strconv.Itoa(f.seq), "category": "Customer",
		"ticket_attributes": map[string]any{"_default_title_": "Ticket " + id}, "ticket_state": map[string]any{"type": "ticket_state", "id": "1", "category": "submitted"},
		"ticket_type": map[string]any{"type": "ticket_type", "id": "tt1", "name": "Bug"}, "open": true,
		"admin_assignee_id": "a1", "team_assignee_id": "t1", "created_at": now, "updated_at": now}
	return id
}

func (f *fakeIntercom) updateTicket(id string, fields map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, v := range fields {
		f.tickets[id][k] = v
	}
	f.tickets[id]["updated_at"] = f.tick()
}

func (f *fakeIntercom) addCompany() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextID("co")
	ts := f.tick()
	f.compans[id] = map[string]any{"type": "company", "id": id, "company_id": "acme-" + id, "name": "Company " + id, "created_at": ts, "updated_at": ts}
	return id
}

func (f *fakeIntercom) addConversation(contact string, parts int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextID("cv")
	ts := f.tick()
	c := &fakeConv{data: map[string]any{"type": "conversation", "id": id, "title": nil, "created_at": ts, "updated_at": ts,
		"state": "open", "open": true, "admin_assignee_id": nil, "team_assignee_id": "t1",
		"contacts": map[string]any{"type": "contact.list", "contacts": []any{map[string]any{"type": "contact", "id": contact}}}}}
	f.convs[id] = c
	for range parts {
		f.addPartLocked(c, "comment")
	}
	return id
}

func (f *fakeIntercom) addPartLocked(c *fakeConv, kind string) string {
	id := f.nextID("p")
	ts := f.tick()
	c.parts = append(c.parts, map[string]any{"type": "conversation_part", "id": id, "part_type": kind,
		"body": "<p>" + id + "</p>", "created_at": ts, "updated_at": ts, "notified_at": ts,
		"author": map[string]any{"type": "admin", "id": "a1", "name": "Ada"}})
	c.data["updated_at"] = ts
	return id
}

func (f *fakeIntercom) addPart(conv string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addPartLocked(f.convs[conv], "comment")
}

// updateConversation changes fields with updated_at at (0: now).
func (f *fakeIntercom) updateConversation(id string, fields map[string]any, at int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.convs[id]
	for k, v := range fields {
		c.data[k] = v
	}
	if at == 0 {
		at = f.tick()
	}
	c.data["updated_at"] = at
}

func (f *fakeIntercom) closeConversation(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.convs[id]
	f.addPartLocked(c, "close")
	c.data["state"], c.data["open"] = "closed", false
}

func (f *fakeIntercom) deleteConversation(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.convs, id)
	f.tick()
}

// conversationJSON is GET /conversations/{id}: the conversation with at most
// partsCap parts and their true count.
func (c *fakeConv) full() map[string]any {
	m := c.summary()
	parts := make([]any, 0, min(len(c.parts), partsCap))
	for _, p := range c.parts[:min(len(c.parts), partsCap)] {
		parts = append(parts, p)
	}
	m["conversation_parts"] = map[string]any{"type": "conversation_part.list", "conversation_parts": parts, "total_count": len(c.parts)}
	return m
}

func (c *fakeConv) summary() map[string]any {
	m := make(map[string]any, len(c.data))
	for k, v := range c.data {
		m[k] = v
	}
	return m
}

func (f *fakeIntercom) requestLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeIntercom) setEvery429(n int) {
	f.mu.Lock()
	f.every429 = n
	f.mu.Unlock()
}

func (f *fakeIntercom) setHook(h func(string)) {
	f.mu.Lock()
	f.hook = h
	f.mu.Unlock()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func errorList(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"type": "error.list", "request_id": "req_fake",
		"errors": []any{map[string]any{"code": code, "message": msg}}})
}

func cursorOf(i int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o" + strconv.Itoa(i)))
}
func offsetOf(c string) int {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2 || b[0] != 'o' {
		return -1
	}
	n, err := strconv.Atoi(string(b[1:]))
	if err != nil {
		return -1
	}
	return n
}

func (f *fakeIntercom) serve(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if r.Method == http.MethodPost {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			errorList(w, 400, "parameter_invalid", "body is not JSON")
			return
		}
	}
	desc := r.Method + " " + r.URL.Path
	if r.URL.RawQuery != "" {
		desc += "?" + r.URL.RawQuery
	}
	if pg, ok := body["pagination"].(map[string]any); ok {
		desc += fmt.Sprintf(" after=%v", pg["starting_after"])
	}
	f.mu.Lock()
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		hook(desc)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		errorList(w, 401, "unauthorized", "Access Token Invalid")
		return
	}
	if v := r.Header.Get("Intercom-Version"); v != f.version {
		errorList(w, 400, "intercom_version_invalid", "Requested version "+v+" is not the pinned one")
		return
	}
	f.count++
	reset := strconv.FormatInt(f.clock.Unix()+1, 10)
	w.Header().Set("X-RateLimit-Limit", "167")
	w.Header().Set("X-RateLimit-Reset", reset)
	if f.every429 > 0 && f.count%f.every429 == 0 {
		w.Header().Set("X-RateLimit-Remaining", "0")
		errorList(w, 429, "rate_limit_exceeded", "Exceeded rate limit of 167 in 10_seconds")
		return
	}
	w.Header().Set("X-RateLimit-Remaining", "100")
	f.requests = append(f.requests, desc)
	if f.forbidden != "" && r.URL.Path == f.forbidden {
		errorList(w, 403, "api_plan_restricted", "Active subscription needed or the app lacks the scope")
		return
	}

	q := r.URL.Query()
	perPage := 20
	if s := q.Get("per_page"); s != "" {
		perPage, _ = strconv.Atoi(s)
	}
	if pg, ok := body["pagination"].(map[string]any); ok {
		if n, ok := pg["per_page"].(float64); ok {
			perPage = int(n)
		}
	}
	if perPage < 1 || perPage > MaxPerPage {
		errorList(w, 400, "parameter_invalid", "per_page must be between 1 and 150")
		return
	}
	path := r.URL.Path
	switch {
	case r.Method == "GET" && (path == "/admins" || path == "/teams" || path == "/tags" || path == "/segments"):
		key := map[string]string{"/admins": "admins", "/teams": "teams", "/tags": "data", "/segments": "segments"}[path]
		writeJSON(w, 200, map[string]any{"type": "list", key: f.small[strings.TrimPrefix(path, "/")]})
	case r.Method == "GET" && path == "/companies/scroll":
		items := sortedItems(f.compans, nil)
		off := 0
		open := f.scrollN != 0 && time.Since(f.scrollUsed) < f.scrollTTL
		if p := q.Get("scroll_param"); p != "" {
			var n int
			if _, err := fmt.Sscanf(p, "sc%d.%d", &n, &off); err != nil || !open || n != f.scrollN {
				errorList(w, 404, "not_found", "scroll_param expired or invalid")
				return
			}
		} else if open {
			errorList(w, 400, "scroll_exists", "scroll already exists for this workspace. Please ensure to use the scroll parameter from the initial scroll request")
			return
		} else {
			f.seq++
			f.scrollN = f.seq
		}
		f.scrollUsed = time.Now()
		end := min(off+perPage, len(items))
		if off >= end {
			f.scrollN = 0 // the last, empty page closes the scroll
		}
		writeJSON(w, 200, map[string]any{"type": "list", "data": items[min(off, end):end], "pages": nil, "total_count": nil, "scroll_param": fmt.Sprintf("sc%d.%d", f.scrollN, end)})
	case r.Method == "GET" && (path == "/contacts" || path == "/conversations"):
		var items []map[string]any
		key := "data"
		if path == "/contacts" {
			items = sortedItems(f.contacts, nil)
		} else {
			key = "conversations"
			items = f.conversationSummaries()
		}
		f.page(w, q.Get("starting_after"), perPage, key, items)
	case (path == "/tickets/search" || strings.HasPrefix(path, "/tickets/")) && !f.ticketsOn:
		errorList(w, 404, "not_found", "Resource Not Found")
	case r.Method == "POST" && (path == "/contacts/search" || path == "/conversations/search" || path == "/tickets/search"):
		f.search(w, path, body, perPage)
	case r.Method == "GET" && strings.HasPrefix(path, "/tickets/"):
		f.one(w, f.tickets[strings.TrimPrefix(path, "/tickets/")])
	case r.Method == "GET" && strings.HasPrefix(path, "/contacts/"):
		f.one(w, f.contacts[strings.TrimPrefix(path, "/contacts/")])
	case r.Method == "GET" && strings.HasPrefix(path, "/companies/"):
		f.one(w, f.compans[strings.TrimPrefix(path, "/companies/")])
	case r.Method == "GET" && strings.HasPrefix(path, "/conversations/"):
		c := f.convs[strings.TrimPrefix(path, "/conversations/")]
		if c == nil {
			errorList(w, 404, "not_found", "Resource Not Found")
			return
		}
		writeJSON(w, 200, c.full())
	default:
		errorList(w, 404, "not_found", "no route "+r.Method+" "+path)
	}
}

func (f *fakeIntercom) one(w http.ResponseWriter, m map[string]any) {
	if m == nil {
		errorList(w, 404, "not_found", "User Not Found")
		return
	}
	writeJSON(w, 200, m)
}

func (f *fakeIntercom) conversationSummaries() []map[string]any {
	out := make([]map[string]any, 0, len(f.convs))
	for _, c := range f.convs {
		out = append(out, c.summary())
	}
	sort.Slice(out, func(i, j int) bool { return out[i]["id"].(string) < out[j]["id"].(string) })
	return out
}

func sortedItems(m map[string]map[string]any, keep func(map[string]any) bool) []map[string]any {
	out := make([]map[string]any, 0, len(m))
	for _, v := range m {
		if keep == nil || keep(v) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i]["id"].(string) < out[j]["id"].(string) })
	return out
}

// page answers a list request: objects in id order, after the id the
// cursor names (the last object of the previous page).
func (f *fakeIntercom) page(w http.ResponseWriter, cursor string, perPage int, key string, items []map[string]any) {
	start := 0
	if cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		after, ok := strings.CutPrefix(string(b), "after:")
		if err != nil || !ok {
			errorList(w, 400, "parameter_invalid", "starting_after is invalid")
			return
		}
		start = sort.Search(len(items), func(i int) bool { return items[i]["id"].(string) > after })
	}
	end := min(start+perPage, len(items))
	resp := map[string]any{"type": "list", key: items[start:end], "total_count": len(items)}
	pages := map[string]any{"type": "pages", "per_page": perPage, "total_pages": (len(items) + perPage - 1) / perPage}
	if end < len(items) {
		pages["next"] = map[string]any{"starting_after": base64.RawURLEncoding.EncodeToString([]byte("after:" + items[end-1]["id"].(string)))}
	}
	resp["pages"] = pages
	writeJSON(w, 200, resp)
}

// search answers POST /contacts/search and /conversations/search for a
// query on updated_at with >, < or =, sorted by updated_at.
func (f *fakeIntercom) search(w http.ResponseWriter, path string, body map[string]any, perPage int) {
	query, _ := body["query"].(map[string]any)
	field, _ := query["field"].(string)
	op, _ := query["operator"].(string)
	value, ok := query["value"].(float64)
	if field != "updated_at" || !ok || (op != ">" && op != "<" && op != "=") {
		errorList(w, 400, "query_invalid", "unsupported query")
		return
	}
	contacts := path == "/contacts/search"
	// Contacts' dates compare by calendar day (UTC), conversations' to the second.
	key := func(ts int64) int64 {
		if contacts {
			return ts / 86400
		}
		return ts
	}
	v := key(int64(value))
	match := func(m map[string]any) bool {
		u := key(toInt(m["updated_at"]))
		switch op {
		case ">":
			return u > v
		case "<":
			return u < v
		}
		return u == v
	}
	var items []map[string]any
	itemsKey, listType := "data", "list"
	if contacts {
		items = sortedItems(f.contacts, match)
	} else if path == "/tickets/search" {
		itemsKey, listType = "tickets", "ticket.list"
		items = sortedItems(f.tickets, match)
	} else {
		itemsKey = "conversations"
		for _, c := range f.conversationSummaries() {
			if match(c) {
				items = append(items, c)
			}
		}
	}
	desc := false
	if s, ok := body["sort"].(map[string]any); ok && s["field"] == "updated_at" && s["order"] == "descending" {
		desc = true
	}
	sort.SliceStable(items, func(i, j int) bool {
		a, b := toInt(items[i]["updated_at"]), toInt(items[j]["updated_at"])
		if desc {
			return a > b
		}
		return a < b
	})
	off := 0
	if pg, ok := body["pagination"].(map[string]any); ok {
		if s, ok := pg["starting_after"].(string); ok && s != "" {
			if off = offsetOf(s); off < 0 {
				errorList(w, 400, "parameter_invalid", "starting_after is invalid")
				return
			}
		}
	}
	off = min(off, len(items))
	end := min(off+perPage, len(items))
	pages := map[string]any{"type": "pages", "per_page": perPage}
	if end < len(items) {
		pages["next"] = map[string]any{"starting_after": cursorOf(end)}
	}
	writeJSON(w, 200, map[string]any{"type": listType, itemsKey: items[off:end], "total_count": len(items), "pages": pages})
}

func toInt(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case int:
		return int64(n)
	case float64:
		return int64(n)
	}
	return 0
}
