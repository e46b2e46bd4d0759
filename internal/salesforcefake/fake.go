// Package salesforcefake is a stateful fake of the Salesforce APIs herd
// uses, for tests: see Fake.
package salesforcefake

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fake is a stateful fake of the parts of Salesforce herd uses, after
// Salesforce's REST API, Bulk API 2.0 and OAuth 2.0 documentation: the token
// endpoint (refresh-token and JWT bearer grants), tokens that expire
// (401 INVALID_SESSION_ID), describe, /query and /queryAll with SOQL and
// nextRecordsUrl pages, Bulk 2.0 query jobs with Sforce-Locator pages of CSV,
// getDeleted, /limits with Sforce-Limit-Info on every answer, and 503s now
// and then. Its data changes whenever a test says so.
type Fake struct {
	t   testing.TB
	srv *httptest.Server

	// The connected app and user herd signs in as.
	ClientID, ClientSecret, RefreshToken string
	Username                             string
	JWTKey                               *rsa.PublicKey // the certificate's key, for the JWT bearer flow
	// Sandbox: the org is a sandbox, whose JWT audience is
	// https://test.salesforce.com rather than https://login.salesforce.com.
	Sandbox bool
	// CommunityURL, when set, is an Experience Cloud site's URL, also
	// accepted as the JWT audience.
	CommunityURL string

	mu         sync.Mutex
	objects    map[string]*fakeObject
	order      []string
	tokens     map[string]int // token → requests left (tokenLife)
	TokenLife  int            // requests a token serves; 0: until ExpireTokens
	tokenSeq   int
	Grants     int
	Refused    int // requests answered 401
	cursors    map[string]*fakeCursor
	jobs       map[string]*fakeJob
	deletedLog []fakeDeletion
	logStart   time.Time // TrimDeleteLog's bound: the delete log holds nothing older
	APIUsed    int
	APIMax     int
	Every503   int // every Nth GET to the API answers 503; 0: never
	gets       int
	idSeq      int
	served     map[string]int // records served by object, since ResetCounts
	requests   []string       // "METHOD path?query", since ResetCounts
	Hook       func(r *http.Request)
	FailJobs   int // the next this many bulk query jobs end Failed
}

// Field is a field of an object's describe metadata.
type Field struct {
	Name, Label, Type, Compound string
}

type fakeObject struct {
	name, label, prefix string
	fields              []Field
	replicateable       bool
	records             map[string]map[string]any
}

type fakeCursor struct {
	object       string
	rows         []map[string]any
	fields       []string
	batch, total int
}

type fakeJob struct {
	failed bool
	object string
	fields []string
	rows   []map[string]any
	polls  int
}

type fakeDeletion struct {
	object, id string
	at         time.Time
}

// New starts a fake with no objects; it stops at the end of the test.
func New(t testing.TB) *Fake {
	f := &Fake{
		t: t, ClientID: "3MVG9-herd-test", ClientSecret: "fake-client-secret", RefreshToken: "5Aep861-refresh",
		Username: "sync@example.com",
		objects:  map[string]*fakeObject{}, tokens: map[string]int{}, cursors: map[string]*fakeCursor{},
		jobs: map[string]*fakeJob{}, APIMax: 100000, served: map[string]int{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *Fake) URL() string { return f.srv.URL }

// Now is the fake's clock, at Salesforce's millisecond precision.
func Now() time.Time { return time.Now().UTC().Truncate(time.Second) }

// addObject declares an object with its fields (Id, IsDeleted and
// SystemModstamp are added).
func (f *Fake) AddObject(name, prefix string, replicateable bool, fields ...Field) {
	f.mu.Lock()
	defer f.mu.Unlock()
	base := []Field{{Name: "Id", Label: name + " ID", Type: "id"}, {Name: "IsDeleted", Label: "Deleted", Type: "boolean"}, {Name: "SystemModstamp", Label: "System Modstamp", Type: "datetime"}}
	f.objects[name] = &fakeObject{name: name, label: name, prefix: prefix, fields: append(base, fields...), replicateable: replicateable, records: map[string]map[string]any{}}
	f.order = append(f.order, name)
}

func (f *Fake) Create(object string, modstamp time.Time, values map[string]any) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.objects[object]
	f.idSeq++
	id := fmt.Sprintf("%s%012dAAA", o.prefix, f.idSeq)
	r := map[string]any{"Id": id, "IsDeleted": false, "SystemModstamp": modstamp}
	for k, v := range values {
		r[k] = v
	}
	o.records[id] = r
	return id
}

// update changes a record as a user would: SystemModstamp moves to now.
func (f *Fake) Update(object, id string, values map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.objects[object].records[id]
	for k, v := range values {
		r[k] = v
	}
	r["SystemModstamp"] = Now()
}

// setQuietly changes values without touching SystemModstamp, as a new
// field's default does.
func (f *Fake) SetQuietly(object string, fn func(r map[string]any)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.objects[object].records {
		fn(r)
	}
}

// softDelete moves a record to the recycle bin: queryAll still shows it.
func (f *Fake) SoftDelete(object, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.objects[object].records[id]
	r["IsDeleted"], r["SystemModstamp"] = true, Now()
	f.deletedLog = append(f.deletedLog, fakeDeletion{object, id, Now()})
}

// purge deletes a record for good: only getDeleted tells.
func (f *Fake) Purge(object, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.objects[object].records, id)
	f.deletedLog = append(f.deletedLog, fakeDeletion{object, id, Now()})
}

// TrimDeleteLog drops the delete log's entries older than before, as
// Salesforce's background purge of large delete logs does: getDeleted then
// refuses a window starting earlier.
func (f *Fake) TrimDeleteLog(before time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := f.deletedLog[:0]
	for _, d := range f.deletedLog {
		if !d.at.Before(before) {
			kept = append(kept, d)
		}
	}
	f.deletedLog, f.logStart = kept, before.UTC()
}

func (f *Fake) AddField(object string, fd Field) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.objects[object]
	o.fields = append(o.fields, fd)
}

func (f *Fake) SetFieldType(object, field, typ string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.objects[object].fields {
		if f.objects[object].fields[i].Name == field {
			f.objects[object].fields[i].Type = typ
		}
	}
}

func (f *Fake) ExpireTokens() {
	f.mu.Lock()
	f.tokens = map[string]int{}
	f.mu.Unlock()
}

func (f *Fake) ResetCounts() {
	f.mu.Lock()
	f.served, f.requests = map[string]int{}, nil
	f.mu.Unlock()
}

// live returns the ids and modstamps of the records not deleted.
func (f *Fake) Live(object string) map[string]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]time.Time{}
	for id, r := range f.objects[object].records {
		if r["IsDeleted"] != true {
			m[id] = r["SystemModstamp"].(time.Time)
		}
	}
	return m
}

func sfError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode([]map[string]string{{"errorCode": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	if f.Hook != nil {
		f.Hook(r)
	}
	if r.URL.Path == "/services/oauth2/token" {
		f.token(w, r)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == "/services/data/v59.0/composite" {
		f.composite(w, r)
		return
	}
	if len(r.URL.RequestURI()) > maxURI && r.Header.Get(subrequest) == "" {
		sfError(w, http.StatusRequestURITooLong, "URI_TOO_LONG", "URI Too Long")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	left, ok := f.tokens[tok]
	if !ok {
		f.Refused++
		sfError(w, http.StatusUnauthorized, "INVALID_SESSION_ID", "Session expired or invalid")
		return
	}
	if f.TokenLife > 0 {
		if left <= 0 {
			f.Refused++
			delete(f.tokens, tok)
			sfError(w, http.StatusUnauthorized, "INVALID_SESSION_ID", "Session expired or invalid")
			return
		}
		f.tokens[tok] = left - 1
	}
	if r.Method == http.MethodGet && f.Every503 > 0 {
		f.gets++
		if f.gets%f.Every503 == 0 {
			w.Header().Set("Retry-After", "0")
			sfError(w, http.StatusServiceUnavailable, "SERVER_UNAVAILABLE", "Server temporarily unavailable")
			return
		}
	}
	f.APIUsed++
	w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", f.APIUsed, f.APIMax))
	if f.APIUsed > f.APIMax {
		sfError(w, http.StatusForbidden, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/services/data/v59.0/")
	if !ok {
		sfError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return
	}
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	switch {
	case rest == "limits" || rest == "limits/":
		writeJSON(w, map[string]any{"DailyApiRequests": map[string]int{"Max": f.APIMax, "Remaining": f.APIMax - f.APIUsed}})
	case len(parts) == 3 && parts[0] == "sobjects" && parts[2] == "describe":
		f.describe(w, parts[1])
	case len(parts) == 3 && parts[0] == "sobjects" && parts[2] == "deleted":
		f.getDeleted(w, r, parts[1])
	case (parts[0] == "query" || parts[0] == "queryAll") && len(parts) == 1:
		f.query(w, r, parts[0] == "queryAll")
	case (parts[0] == "query" || parts[0] == "queryAll") && len(parts) == 2:
		f.nextPage(w, parts[1])
	case parts[0] == "jobs" && len(parts) >= 2 && parts[1] == "query":
		f.bulk(w, r, parts[2:])
	default:
		sfError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	}
}

func (f *Fake) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	bad := func(desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": desc})
	}
	switch r.PostForm.Get("grant_type") {
	case "refresh_token":
		if r.PostForm.Get("client_id") != f.ClientID || r.PostForm.Get("client_secret") != f.ClientSecret {
			bad("invalid client credentials")
			return
		}
		if r.PostForm.Get("refresh_token") != f.RefreshToken {
			bad("expired access/refresh token")
			return
		}
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		if err := f.verifyJWT(r.PostForm.Get("assertion")); err != nil {
			bad(err.Error())
			return
		}
	default:
		bad("unsupported grant type")
		return
	}
	f.mu.Lock()
	f.tokenSeq++
	f.Grants++
	tok := fmt.Sprintf("00Dfake!token%d", f.tokenSeq)
	f.tokens[tok] = f.TokenLife
	f.mu.Unlock()
	writeJSON(w, map[string]string{"access_token": tok, "instance_url": f.srv.URL, "token_type": "Bearer",
		"issued_at": strconv.FormatInt(time.Now().UnixMilli(), 10), "id": f.srv.URL + "/id/00D/005"})
}

func (f *Fake) verifyJWT(assertion string) error {
	if f.JWTKey == nil {
		return fmt.Errorf("no certificate on the connected app")
	}
	p := strings.Split(assertion, ".")
	if len(p) != 3 {
		return fmt.Errorf("malformed assertion")
	}
	sig, err := base64.RawURLEncoding.DecodeString(p[2])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(p[0] + "." + p[1]))
	if err := rsa.VerifyPKCS1v15(f.JWTKey, crypto.SHA256, sum[:], sig); err != nil {
		return fmt.Errorf("invalid assertion signature")
	}
	var c struct {
		Iss, Sub, Aud string
		Exp           int64
	}
	b, _ := base64.RawURLEncoding.DecodeString(p[1])
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	// The audience is the authorization server, never the org's My Domain:
	// login.salesforce.com, test.salesforce.com for a sandbox, or a
	// community's URL.
	aud := "https://login.salesforce.com"
	if f.Sandbox {
		aud = "https://test.salesforce.com"
	}
	if c.Aud != aud && (f.CommunityURL == "" || c.Aud != f.CommunityURL) {
		return fmt.Errorf("audience is invalid")
	}
	if c.Iss != f.ClientID || c.Sub != f.Username || time.Unix(c.Exp, 0).Before(time.Now()) {
		return fmt.Errorf("user hasn't approved this consumer")
	}
	return nil
}

func (f *Fake) describe(w http.ResponseWriter, object string) {
	o := f.objects[object]
	if o == nil {
		sfError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return
	}
	var fields []map[string]any
	for _, fd := range o.fields {
		m := map[string]any{"name": fd.Name, "label": fd.Label, "type": fd.Type, "compoundFieldName": nil}
		if fd.Compound != "" {
			m["compoundFieldName"] = fd.Compound
		}
		fields = append(fields, m)
	}
	writeJSON(w, map[string]any{"name": o.name, "label": o.label, "queryable": true, "replicateable": o.replicateable, "fields": fields})
}

func (f *Fake) field(o *fakeObject, name string) *Field {
	for i := range o.fields {
		if strings.EqualFold(o.fields[i].Name, name) {
			return &o.fields[i]
		}
	}
	return nil
}

// run evaluates a parsed query over the object's records.
func (f *Fake) run(q *soql, all bool) ([]map[string]any, *fakeObject, error) {
	o := f.objects[q.from]
	if o == nil {
		return nil, nil, fmt.Errorf("sObject type '%s' is not supported", q.from)
	}
	for _, name := range append(append([]string{}, q.fields...), q.refs...) {
		if f.field(o, name) == nil {
			return nil, nil, fmt.Errorf("No such column '%s' on entity '%s'", name, q.from)
		}
	}
	var rows []map[string]any
	for _, r := range o.records {
		if !all && r["IsDeleted"] == true {
			continue
		}
		if q.where == nil || q.where.eval(r) {
			rows = append(rows, r)
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		for _, k := range q.order {
			c := compare(rows[i][k.field], rows[j][k.field])
			if c != 0 {
				return (c < 0) != k.desc
			}
		}
		return rows[i]["Id"].(string) < rows[j]["Id"].(string)
	})
	if q.limit > 0 && len(rows) > q.limit {
		rows = rows[:q.limit]
	}
	// A snapshot: later changes do not show in pages already computed.
	snap := make([]map[string]any, len(rows))
	for i, r := range rows {
		c := make(map[string]any, len(r))
		for k, v := range r {
			c[k] = v
		}
		snap[i] = c
	}
	return snap, o, nil
}

func (f *Fake) query(w http.ResponseWriter, r *http.Request, all bool) {
	q, err := parseSOQL(r.URL.Query().Get("q"))
	if err != nil {
		sfError(w, http.StatusBadRequest, "MALFORMED_QUERY", err.Error())
		return
	}
	rows, o, err := f.run(q, all)
	if err != nil {
		sfError(w, http.StatusBadRequest, "INVALID_FIELD", err.Error())
		return
	}
	for _, name := range q.fields {
		if fd := f.field(o, name); fd != nil && fd.Type == "address" {
			// REST returns compound fields as objects; herd never asks for them.
			sfError(w, http.StatusBadRequest, "INVALID_FIELD", "herd's fake serves no compound fields: "+name)
			return
		}
	}
	if q.count {
		writeJSON(w, map[string]any{"totalSize": len(rows), "done": true, "records": []any{}})
		return
	}
	batch := 2000
	if opt := r.Header.Get("Sforce-Query-Options"); strings.HasPrefix(opt, "batchSize=") {
		if n, err := strconv.Atoi(strings.TrimPrefix(opt, "batchSize=")); err == nil && n > 0 {
			batch = n
		}
	}
	f.page(w, &fakeCursor{object: o.name, rows: rows, fields: q.fields, batch: batch, total: len(rows)})
}

func (f *Fake) page(w http.ResponseWriter, c *fakeCursor) {
	n := min(c.batch, len(c.rows))
	out := make([]map[string]any, 0, n)
	for _, r := range c.rows[:n] {
		m := map[string]any{"attributes": map[string]string{"type": c.object, "url": "/services/data/v59.0/sobjects/" + c.object + "/" + r["Id"].(string)}}
		for _, fd := range c.fields {
			m[fd] = jsonValue(r[fd])
		}
		out = append(out, m)
	}
	f.served[c.object] += n
	resp := map[string]any{"totalSize": c.total, "done": n == len(c.rows), "records": out}
	if n < len(c.rows) {
		f.idSeq++
		loc := fmt.Sprintf("01gFAKE%06d-%d", f.idSeq, n)
		f.cursors[loc] = &fakeCursor{object: c.object, rows: c.rows[n:], fields: c.fields, batch: c.batch, total: c.total}
		resp["nextRecordsUrl"] = "/services/data/v59.0/query/" + loc
	}
	writeJSON(w, resp)
}

func (f *Fake) nextPage(w http.ResponseWriter, loc string) {
	c := f.cursors[loc]
	if c == nil {
		sfError(w, http.StatusBadRequest, "INVALID_QUERY_LOCATOR", "invalid query locator")
		return
	}
	f.page(w, c)
}

func jsonValue(v any) any {
	if t, ok := v.(time.Time); ok {
		return t.UTC().Format("2006-01-02T15:04:05.000+0000")
	}
	return v
}

func csvValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case time.Time:
		return x.UTC().Format("2006-01-02T15:04:05.000Z")
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int:
		return strconv.Itoa(x)
	default:
		return fmt.Sprint(x)
	}
}

func (f *Fake) bulk(w http.ResponseWriter, r *http.Request, rest []string) {
	switch {
	case len(rest) == 0 && r.Method == http.MethodPost:
		var body struct{ Operation, Query string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || (body.Operation != "query" && body.Operation != "queryAll") {
			sfError(w, http.StatusBadRequest, "INVALIDJOB", "operation must be query or queryAll")
			return
		}
		q, err := parseSOQL(body.Query)
		if err != nil {
			sfError(w, http.StatusBadRequest, "MALFORMED_QUERY", err.Error())
			return
		}
		rows, o, err := f.run(q, body.Operation == "queryAll")
		if err != nil {
			sfError(w, http.StatusBadRequest, "INVALID_FIELD", err.Error())
			return
		}
		for _, name := range q.fields {
			if fd := f.field(o, name); fd != nil && (fd.Type == "address" || fd.Type == "location") {
				sfError(w, http.StatusBadRequest, "API_ERROR", "Selecting compound data not supported in Bulk Query")
				return
			}
		}
		f.idSeq++
		id := fmt.Sprintf("750FAKE%011d", f.idSeq)
		f.jobs[id] = &fakeJob{object: o.name, fields: q.fields, rows: rows, failed: f.FailJobs > 0}
		if f.FailJobs > 0 {
			f.FailJobs--
		}
		writeJSON(w, map[string]any{"id": id, "operation": body.Operation, "object": o.name, "state": "UploadComplete"})
	case len(rest) == 1 && r.Method == http.MethodGet:
		j := f.jobs[rest[0]]
		if j == nil {
			sfError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
			return
		}
		j.polls++
		state, msg := "InProgress", ""
		switch {
		case j.polls > 1 && j.failed:
			state, msg = "Failed", "InternalServerError: retry the job"
		case j.polls > 1:
			state = "JobComplete"
		}
		writeJSON(w, map[string]any{"id": rest[0], "state": state, "numberRecordsProcessed": len(j.rows), "errorMessage": msg})
	case len(rest) == 2 && rest[1] == "results" && r.Method == http.MethodGet:
		j := f.jobs[rest[0]]
		if j == nil {
			sfError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
			return
		}
		if j.polls < 2 {
			sfError(w, http.StatusBadRequest, "INVALIDJOBSTATE", "job is not complete")
			return
		}
		from := 0
		if loc := r.URL.Query().Get("locator"); loc != "" {
			b, err := base64.StdEncoding.DecodeString(loc)
			n, err2 := strconv.Atoi(string(b))
			if err != nil || err2 != nil || n < 0 || n > len(j.rows) {
				sfError(w, http.StatusBadRequest, "INVALID_LOCATOR", "invalid locator")
				return
			}
			from = n
		}
		max := 10000
		if m, err := strconv.Atoi(r.URL.Query().Get("maxRecords")); err == nil && m > 0 {
			max = m
		}
		to := min(len(j.rows), from+max)
		var buf bytes.Buffer
		cw := csv.NewWriter(&buf)
		_ = cw.Write(j.fields)
		for _, row := range j.rows[from:to] {
			rec := make([]string, len(j.fields))
			for i, fd := range j.fields {
				rec[i] = csvValue(row[fd])
			}
			_ = cw.Write(rec)
		}
		cw.Flush()
		f.served[j.object] += to - from
		next := "null"
		if to < len(j.rows) {
			next = base64.StdEncoding.EncodeToString([]byte(strconv.Itoa(to)))
		}
		w.Header().Set("Content-Type", "text/csv")
		w.Header().Set("Sforce-Locator", next)
		w.Header().Set("Sforce-NumberOfRecords", strconv.Itoa(to-from))
		_, _ = w.Write(buf.Bytes())
	default:
		sfError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	}
}

func (f *Fake) getDeleted(w http.ResponseWriter, r *http.Request, object string) {
	start, err1 := time.Parse(time.RFC3339, r.URL.Query().Get("start"))
	end, err2 := time.Parse(time.RFC3339, r.URL.Query().Get("end"))
	if err1 != nil || err2 != nil || !end.After(start) {
		sfError(w, http.StatusBadRequest, "INVALID_REPLICATION_DATE", "start and end must be datetimes, end after start")
		return
	}
	if o := f.objects[object]; o == nil || !o.replicateable {
		sfError(w, http.StatusBadRequest, "INVALID_TYPE", "object does not support replication")
		return
	}
	// Results go back no more than 15 days, or to where the delete log was
	// purged; a window starting earlier is refused.
	earliest := time.Now().Add(-15 * 24 * time.Hour).UTC()
	if f.logStart.After(earliest) {
		earliest = f.logStart
	}
	if start.Before(earliest) {
		sfError(w, http.StatusBadRequest, "INVALID_REPLICATION_DATE", "startDate is before earliestDateAvailable "+earliest.Format("2006-01-02T15:04:05.000+0000"))
		return
	}
	var list []map[string]string
	for _, d := range f.deletedLog {
		if d.object == object && !d.at.Before(start) && d.at.Before(end) {
			list = append(list, map[string]string{"id": d.id, "deletedDate": d.at.Format("2006-01-02T15:04:05.000+0000")})
		}
	}
	// Deletions still completing are not covered: the answer covers up to
	// the start of the current minute at most, and the next call starts there.
	covered := end
	if now := time.Now().UTC().Truncate(time.Minute); now.Before(covered) {
		covered = now
	}
	if covered.Before(start) {
		covered = start
	}
	writeJSON(w, map[string]any{"deletedRecords": list, "earliestDateAvailable": earliest.Format("2006-01-02T15:04:05.000+0000"),
		"latestDateCovered": covered.UTC().Format("2006-01-02T15:04:05.000+0000")})
}

// Served is how many records of object were served (query pages and bulk
// results) since ResetCounts.
func (f *Fake) Served(object string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.served[object]
}

// Requests lists the API requests ("METHOD /path?query") containing substr
// since ResetCounts.
func (f *Fake) Requests(substr string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		if strings.Contains(r, substr) {
			out = append(out, r)
		}
	}
	return out
}

// Counters are the fake's tallies: tokens granted, requests refused with
// 401, API requests counted against the daily limit.
func (f *Fake) Counters() (grants, refused, apiUsed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Grants, f.Refused, f.APIUsed
}

// maxURI is the longest URI Salesforce accepts (with the headers, 16 KiB).
const maxURI = 16384

// subrequest marks a request the fake makes to itself for a composite one.
const subrequest = "X-Fake-Composite-Subrequest"

// composite serves a Composite API request (one GET subrequest, which is
// how a query too long for a URI is sent) by serving its subrequest.
func (f *Fake) composite(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
	var body struct {
		CompositeRequest []struct {
			Method      string            `json:"method"`
			URL         string            `json:"url"`
			ReferenceID string            `json:"referenceId"`
			HTTPHeaders map[string]string `json:"httpHeaders"`
		} `json:"compositeRequest"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.CompositeRequest) != 1 || body.CompositeRequest[0].Method != http.MethodGet {
		sfError(w, http.StatusBadRequest, "JSON_PARSER_ERROR", "the fake serves composite requests of one GET")
		return
	}
	sub := body.CompositeRequest[0]
	req := httptest.NewRequest(sub.Method, sub.URL, nil)
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	req.Header.Set(subrequest, "1")
	for k, v := range sub.HTTPHeaders {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	f.serve(rec, req)
	if rec.Code == http.StatusUnauthorized {
		// An expired session fails the whole composite request.
		sfError(w, http.StatusUnauthorized, "INVALID_SESSION_ID", "Session expired or invalid")
		return
	}
	for k, v := range rec.Header() {
		if strings.HasPrefix(k, "Sforce-") {
			w.Header()[k] = v
		}
	}
	writeJSON(w, map[string]any{"compositeResponse": []any{map[string]any{
		"body": json.RawMessage(rec.Body.Bytes()), "httpStatusCode": rec.Code, "referenceId": sub.ReferenceID, "httpHeaders": map[string]string{},
	}}})
}
