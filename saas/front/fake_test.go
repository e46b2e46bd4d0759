package front

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeFront is a stateful stand-in for Front's Core API, built from its
// documentation: Bearer tokens; list endpoints answering {"_results": [...],
// "_pagination": {"next": URL}} with a limit of at most 100 and an opaque
// page token; the events feed newest first, filtered by q[after]; contacts
// filtered by q[updated_after]; conversations in the trash (status
// "deleted") left out of the listing but still readable by id; a 429 with
// Retry-After and the x-ratelimit-* headers every so often; and data that
// changes between (and during) passes.
type fakeFront struct {
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	seq      int
	objects  map[string]map[string]map[string]any // table -> id -> object
	messages map[string][]map[string]any          // conversation id -> messages
	comments map[string][]map[string]any
	events   []map[string]any
	hidden   map[string]bool // events not yet visible in the feed
	// forbidden conversations answer 403 (a private inbox the token may
	// not read).
	forbidden map[string]bool
	served    int
	every429  int      // every n-th request answers 429 (0: never)
	limited   int      // 429s answered
	log       []string // path?query of every request served
	// onServe, when set, is called (without the lock) before a request is
	// answered; tests use it to interrupt a pass at a chosen point.
	onServe func(path string)
	// past backdates the events of conversations created by conversation
	// (seconds): a company's history is older than herd's first pass.
	past float64
	// nextBase, when set, replaces the base of next-page links (a hostile
	// or misconfigured API). By default they name the fake as localhost
	// while herd is configured with 127.0.0.1, as Front's name the
	// company's domain while herd asks api2.frontapp.com.
	nextBase string
}

var prefixes = map[string]string{
	"teams": "tim", "teammates": "tea", "inboxes": "inb", "tags": "tag", "accounts": "acc",
	"contacts": "crd", "conversations": "cnv", "messages": "msg", "comments": "com", "events": "evt",
}

func newFakeFront(t testing.TB) *fakeFront {
	f := &fakeFront{token: "front-test-token", objects: map[string]map[string]map[string]any{},
		messages: map[string][]map[string]any{}, comments: map[string][]map[string]any{}, hidden: map[string]bool{}, forbidden: map[string]bool{}}
	for _, t := range []string{"teams", "teammates", "inboxes", "tags", "accounts", "contacts", "conversations"} {
		f.objects[t] = map[string]map[string]any{}
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeFront) URL() string { return f.srv.URL }

// now is Front's clock: seconds with three decimals.
func now() float64 { return math.Round(float64(time.Now().UnixMicro())/1e3) / 1e3 }

func (f *fakeFront) newID(table string) string {
	f.seq++
	return fmt.Sprintf("%s_%07d", prefixes[table], f.seq)
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var c map[string]any
	_ = json.Unmarshal(b, &c)
	return c
}

// create adds a top-level object; fields override the defaults.
func (f *fakeFront) create(table string, fields map[string]any) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.newID(table)
	t := now()
	o := map[string]any{"id": id, "_links": map[string]any{"self": f.srv.URL + "/" + table + "/" + id}}
	switch table {
	case "contacts":
		o["name"] = "Contact " + id
		o["description"] = ""
		o["handles"] = []any{map[string]any{"handle": id + "@example.com", "source": "email"}}
		o["is_spammer"] = false
		o["is_private"] = false
		o["created_at"], o["updated_at"] = t, t
	case "accounts":
		o["name"] = "Account " + id
		o["domains"] = []any{id + ".example.com"}
		o["created_at"], o["updated_at"] = t, t
	case "tags":
		o["name"] = "tag " + id
		o["highlight"] = "blue"
		o["is_private"] = false
		o["created_at"], o["updated_at"] = t, t
	case "teammates":
		o["email"] = id + "@herd.example"
		o["username"] = id
		o["first_name"], o["last_name"] = "First", "Last"
		o["is_admin"], o["is_available"], o["is_blocked"] = false, true, false
	case "conversations":
		o["subject"] = "Help with " + id
		o["status"] = "unassigned"
		o["recipient"] = map[string]any{"handle": "customer@example.com", "role": "from"}
		o["tags"] = []any{}
		o["is_private"] = false
		o["created_at"] = t
		o["waiting_since"] = t
	default:
		o["name"] = table + " " + id
	}
	for k, v := range fields {
		o[k] = v
	}
	f.objects[table][id] = o
	return id
}

// update changes fields of a top-level object (and its updated_at where
// it has one).
func (f *fakeFront) update(table, id string, fields map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.objects[table][id]
	if o == nil {
		panic("fake front: no " + table + " " + id)
	}
	for k, v := range fields {
		o[k] = v
	}
	if _, ok := o["updated_at"]; ok {
		o["updated_at"] = math.Max(now(), o["updated_at"].(float64)+0.001)
	}
}

// remove deletes an object outright, leaving no event (as Front does for
// contacts).
func (f *fakeFront) remove(table, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.objects[table], id)
}

// emit appends an event about a conversation; hidden ones stay out of the
// feed until revealed, as an event that shows up late.
func (f *fakeFront) emit(typ, conv string, emitted float64, hidden bool) string {
	id := f.newID("events")
	ev := map[string]any{"_links": map[string]any{"self": f.srv.URL + "/events/" + id}, "id": id, "type": typ, "emitted_at": emitted,
		"source": map[string]any{"_meta": map[string]any{"type": "teammate"}}}
	if conv != "" {
		ev["conversation"] = map[string]any{"id": conv, "status": f.objects["conversations"][conv]["status"]}
	}
	f.events = append(f.events, ev)
	if hidden {
		f.hidden[id] = true
	}
	return id
}

func (f *fakeFront) reveal(evID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.hidden, evID)
}

// addMessage adds a message to a conversation and emits the inbound event;
// a hidden one shows up in the feed only when revealed (a late event).
func (f *fakeFront) addMessage(conv string, hidden bool) (msgID, evID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	msgID = f.newMessage(conv)
	return msgID, f.emit("inbound", conv, now(), hidden)
}

func (f *fakeFront) newMessage(conv string) string {
	id := f.newID("messages")
	f.messages[conv] = append(f.messages[conv], map[string]any{
		"_links": map[string]any{"self": f.srv.URL + "/messages/" + id, "related": map[string]any{"conversation": f.srv.URL + "/conversations/" + conv}},
		"id":     id, "type": "email", "is_inbound": true, "is_draft": false, "created_at": now(),
		"subject": "Re: help", "blurb": "Message " + id, "body": "<p>Message " + id + "</p>", "author": nil,
	})
	return id
}

func (f *fakeFront) newComment(conv string) string {
	id := f.newID("comments")
	f.comments[conv] = append(f.comments[conv], map[string]any{
		"_links": map[string]any{"self": f.srv.URL + "/comments/" + id},
		"id":     id, "body": "Comment " + id, "posted_at": now(), "author": map[string]any{"id": "tea_0000001"},
	})
	return id
}

func (f *fakeFront) addComment(conv string) (string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.newComment(conv)
	return id, f.emit("comment", conv, now(), false)
}

// conversation creates a conversation with its messages and comments, and
// the inbound event that opened it.
func (f *fakeFront) conversation(msgs, comments int) string {
	id := f.create("conversations", nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	for range msgs {
		f.newMessage(id)
	}
	for range comments {
		f.newComment(id)
	}
	f.emit("inbound", id, now()-f.past, false)
	return id
}

// setStatus changes a conversation's status with the event Front emits
// (archive, reopen, trash).
func (f *fakeFront) setStatus(conv, status, evType string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects["conversations"][conv]["status"] = status
	return f.emit(evType, conv, now(), false)
}

// webhookBody is what Front posts to an application webhook for evID.
func (f *fakeFront) webhookBody(evID string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range f.events {
		if ev["id"] == evID {
			b, _ := json.Marshal(map[string]any{"type": "inbound_received", "authorization": map[string]any{"id": "cmp_1"}, "payload": ev})
			return b
		}
	}
	panic("fake front: no event " + evID)
}

// firstID returns the smallest id of a table.
func (f *fakeFront) firstID(table string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	first := ""
	for id := range f.objects[table] {
		if first == "" || id < first {
			first = id
		}
	}
	return first
}

// requests returns the requests served so far (path?query).
func (f *fakeFront) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func frontError(w http.ResponseWriter, status int, title, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"_error": map[string]any{"status": status, "title": title, "message": msg}})
}

func (f *fakeFront) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		f.mu.Unlock()
		frontError(w, 401, "Unauthorized", "Invalid or missing API token")
		return
	}
	f.served++
	w.Header().Set("X-Ratelimit-Limit", "100")
	if f.every429 > 0 && f.served%f.every429 == 0 {
		f.limited++
		f.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		w.Header().Set("X-Ratelimit-Remaining", "0")
		w.Header().Set("X-Ratelimit-Reset", strconv.FormatFloat(now()+0.005, 'f', 3, 64))
		frontError(w, 429, "Too Many Requests", "Rate limit exceeded")
		return
	}
	w.Header().Set("X-Ratelimit-Remaining", "50")
	f.log = append(f.log, r.URL.Path+"?"+r.URL.RawQuery)
	hook := f.onServe
	f.mu.Unlock()
	if hook != nil {
		hook(r.URL.Path)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "events":
		f.listEvents(w, r, q)
	case len(parts) == 1 && f.objects[parts[0]] != nil:
		f.list(w, r, parts[0], q)
	case len(parts) >= 2 && parts[0] == "conversations" && f.forbidden[parts[1]]:
		frontError(w, 403, "Forbidden", "You are not allowed to access this resource")
	case len(parts) == 2 && f.objects[parts[0]] != nil:
		o := f.objects[parts[0]][parts[1]]
		if o == nil {
			frontError(w, 404, "Not found", "Resource not found")
			return
		}
		writeJSON(w, o)
	case len(parts) == 3 && parts[0] == "conversations" && (parts[2] == "messages" || parts[2] == "comments"):
		if f.objects["conversations"][parts[1]] == nil {
			frontError(w, 404, "Not found", "Conversation not found")
			return
		}
		items := f.messages[parts[1]]
		if parts[2] == "comments" {
			items = f.comments[parts[1]]
		}
		f.page(w, r, items, q, func(o map[string]any) string { return o["id"].(string) })
	default:
		frontError(w, 404, "Not found", "No route "+r.URL.Path)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeFront) list(w http.ResponseWriter, r *http.Request, table string, q url.Values) {
	var items []map[string]any
	var after float64
	if s := q.Get("q[updated_after]"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			frontError(w, 400, "Bad request", "q[updated_after] must be a timestamp")
			return
		}
		after = v
	}
	for _, o := range f.objects[table] {
		if table == "conversations" && o["status"] == "deleted" {
			continue // the listing leaves the trash out
		}
		if after > 0 {
			if u, _ := o["updated_at"].(float64); u <= after {
				continue
			}
		}
		items = append(items, o)
	}
	sort.Slice(items, func(i, j int) bool { return items[i]["id"].(string) < items[j]["id"].(string) })
	f.page(w, r, items, q, func(o map[string]any) string { return o["id"].(string) })
}

func (f *fakeFront) listEvents(w http.ResponseWriter, r *http.Request, q url.Values) {
	var after float64
	if s := q.Get("q[after]"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			frontError(w, 400, "Bad request", "q[after] must be a timestamp")
			return
		}
		after = v
	}
	var items []map[string]any
	for _, ev := range f.events {
		if !f.hidden[ev["id"].(string)] && ev["emitted_at"].(float64) > after {
			items = append(items, ev)
		}
	}
	// Newest first; ties by id so that the order is total.
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i]["emitted_at"].(float64), items[j]["emitted_at"].(float64)
		if a != b {
			return a > b
		}
		return items[i]["id"].(string) > items[j]["id"].(string)
	})
	f.page(w, r, items, q, func(o map[string]any) string { return o["id"].(string) })
}

// page answers one page of items (already in order); the page token is the
// last id served, so that items added or removed meanwhile neither shift
// nor repeat the rest.
func (f *fakeFront) page(w http.ResponseWriter, r *http.Request, items []map[string]any, q url.Values, key func(map[string]any) string) {
	limit := 50
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			frontError(w, 400, "Bad request", "limit must be between 1 and 100")
			return
		}
		limit = n
	}
	start := 0
	if tok := q.Get("page_token"); tok != "" {
		start = len(items)
		for i, it := range items {
			if key(it) == tok {
				start = i + 1
				break
			}
		}
	}
	end := min(start+limit, len(items))
	out := make([]map[string]any, 0, end-start)
	for _, it := range items[start:end] {
		out = append(out, clone(it))
	}
	var next any
	if end < len(items) {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("page_token", key(items[end-1]))
		// Front answers with links on the company's own host
		// (https://yourDomain.api.frontapp.com/...), not the host asked
		// (api2.frontapp.com): the fake names itself differently too.
		base := strings.Replace(f.srv.URL, "127.0.0.1", "localhost", 1)
		if f.nextBase != "" {
			base = f.nextBase
		}
		next = base + r.URL.Path + "?" + nq.Encode()
	}
	writeJSON(w, map[string]any{"_pagination": map[string]any{"next": next}, "_links": map[string]any{"self": f.srv.URL + r.URL.RequestURI()}, "_results": out})
}
