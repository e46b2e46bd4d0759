package salesforce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// apiError is an error answer of the REST API: a list of {message, errorCode}.
type apiError struct {
	Status int
	Code   string
	Msg    string
	Path   string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("Salesforce %s: %d %s: %s", e.Path, e.Status, e.Code, e.Msg)
}

// ErrAPIShare stops a pass that would use more of the org's daily API
// requests than its configured share.
var ErrAPIShare = errors.New("Salesforce API share used up")

// budget keeps a pass under its share of the org's daily API requests.
type budget struct {
	mu    sync.Mutex
	max   int64   // DailyApiRequests.Max; 0: unknown, no limit
	used  int64   // used by the whole org so far today
	share float64 // of max herd may bring the org's use to
}

func (b *budget) set(max, remaining int64) {
	b.mu.Lock()
	b.max, b.used = max, max-remaining
	b.mu.Unlock()
}

// take reserves one request, or says why not.
func (b *budget) take() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.max <= 0 {
		return nil
	}
	allowed := int64(b.share * float64(b.max))
	if b.used+1 > allowed {
		return fmt.Errorf("%w: the org has used %d of its %d daily API requests and herd stops at %.0f%% (%d); the pass resumes when the daily count falls, or raise --salesforce-api-share",
			ErrAPIShare, b.used, b.max, 100*b.share, allowed)
	}
	b.used++
	return nil
}

// observe reads the org's use from Sforce-Limit-Info (api-usage=USED/MAX),
// which counts other clients' requests too.
func (b *budget) observe(h http.Header) {
	v := h.Get("Sforce-Limit-Info")
	_, usage, ok := strings.Cut(v, "api-usage=")
	if !ok {
		return
	}
	usage, _, _ = strings.Cut(usage, ",")
	u, m, ok := strings.Cut(strings.TrimSpace(usage), "/")
	if !ok {
		return
	}
	used, err1 := strconv.ParseInt(u, 10, 64)
	max, err2 := strconv.ParseInt(m, 10, 64)
	if err1 != nil || err2 != nil || max <= 0 {
		return
	}
	b.mu.Lock()
	if used > b.used || max != b.max {
		b.used, b.max = used, max
	}
	b.mu.Unlock()
}

// client calls the REST and Bulk 2.0 APIs with a current token.
type client struct {
	http    *http.Client
	tokens  *tokens
	version string // "59.0"
	budget  *budget
}

func (c *client) base() string { return "/services/data/v" + c.version }

// do sends one request (path absolute on the instance, query included) and
// returns the response when its status is 2xx. An expired session is renewed
// and the request sent once more.
func (c *client) do(ctx context.Context, method, path string, body []byte, header http.Header) (*http.Response, error) {
	if !strings.HasPrefix(path, "/services/") {
		return nil, fmt.Errorf("Salesforce sent a link outside its API, refused: %.200q", path)
	}
	for attempt := 0; ; attempt++ {
		if err := c.budget.take(); err != nil {
			return nil, err
		}
		token, instance, err := c.tokens.get(ctx)
		if err != nil {
			return nil, err
		}
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, instance+path, rd)
		if err != nil {
			return nil, err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if req.Header.Get("Accept") == "" {
			req.Header.Set("Accept", "application/json")
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("Salesforce %s %s: %w", method, trimQuery(path), err)
		}
		c.budget.observe(resp.Header)
		if resp.StatusCode/100 == 2 {
			return resp, nil
		}
		e := readError(resp, trimQuery(path))
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			c.tokens.expired(token)
			continue
		}
		if e.Code == "REQUEST_LIMIT_EXCEEDED" {
			return nil, fmt.Errorf("%w (the org's API limit is reached; passes resume when Salesforce's 24-hour count falls)", e)
		}
		return nil, e
	}
}

func readError(resp *http.Response, path string) *apiError {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &apiError{Status: resp.StatusCode, Path: path}
	var list []struct {
		Message   string `json:"message"`
		ErrorCode string `json:"errorCode"`
	}
	if json.Unmarshal(b, &list) == nil && len(list) > 0 {
		e.Code, e.Msg = list[0].ErrorCode, list[0].Message
	} else {
		e.Msg = strings.TrimSpace(string(b))
		if len(e.Msg) > 300 {
			e.Msg = e.Msg[:300]
		}
	}
	return e
}

func trimQuery(path string) string {
	p, _, _ := strings.Cut(path, "?")
	return p
}

// getJSON GETs path and decodes the JSON answer into v.
func (c *client) getJSON(ctx context.Context, path string, header http.Header, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, header)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(v); err != nil {
		return fmt.Errorf("Salesforce %s: decode: %w", trimQuery(path), err)
	}
	return nil
}

func (c *client) describe(ctx context.Context, object string) (*describe, error) {
	var d describe
	if err := c.getJSON(ctx, c.base()+"/sobjects/"+url.PathEscape(object)+"/describe", nil, &d); err != nil {
		return nil, err
	}
	if d.Name == "" {
		d.Name = object
	}
	return &d, nil
}

// limits reads DailyApiRequests.
func (c *client) limits(ctx context.Context) (max, remaining int64, err error) {
	var l struct {
		Daily struct {
			Max       int64 `json:"Max"`
			Remaining int64 `json:"Remaining"`
		} `json:"DailyApiRequests"`
	}
	if err := c.getJSON(ctx, c.base()+"/limits", nil, &l); err != nil {
		return 0, 0, err
	}
	return l.Daily.Max, l.Daily.Remaining, nil
}

// queryPage is one page of /query or /queryAll.
type queryPage struct {
	TotalSize      int64             `json:"totalSize"`
	Done           bool              `json:"done"`
	NextRecordsURL string            `json:"nextRecordsUrl"`
	Records        []json.RawMessage `json:"records"`
}

// query runs soql and calls page for each page, following nextRecordsUrl.
// all selects /queryAll (deleted and archived records included).
func (c *client) query(ctx context.Context, soql string, all bool, batchSize int, page func(*queryPage) error) error {
	endpoint := "/query"
	if all {
		endpoint = "/queryAll"
	}
	path := c.base() + endpoint + "?q=" + url.QueryEscape(soql)
	var header http.Header
	if batchSize > 0 {
		header = http.Header{"Sforce-Query-Options": {"batchSize=" + strconv.Itoa(batchSize)}}
	}
	for {
		var p queryPage
		var err error
		if len(path) > maxQueryURI {
			err = c.composite(ctx, path, header, &p)
		} else {
			err = c.getJSON(ctx, path, header, &p)
		}
		if err != nil {
			return err
		}
		if err := page(&p); err != nil {
			return err
		}
		if p.Done || p.NextRecordsURL == "" {
			return nil
		}
		path = p.NextRecordsURL
	}
}

// maxQueryURI: a longer query (an object with hundreds of fields) goes in
// the body of a Composite API request, since Salesforce answers 414 to URIs
// over 16 KiB (headers included).
const maxQueryURI = 12000

// composite sends one GET through the Composite API and decodes its answer.
func (c *client) composite(ctx context.Context, path string, header http.Header, v any) error {
	sub := map[string]any{"method": http.MethodGet, "url": path, "referenceId": "q"}
	if len(header) > 0 {
		h := map[string]string{}
		for k := range header {
			h[k] = header.Get(k)
		}
		sub["httpHeaders"] = h
	}
	body, _ := json.Marshal(map[string]any{"allOrNone": true, "compositeRequest": []any{sub}})
	resp, err := c.do(ctx, http.MethodPost, c.base()+"/composite", body, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		CompositeResponse []struct {
			Body           json.RawMessage `json:"body"`
			HTTPStatusCode int             `json:"httpStatusCode"`
		} `json:"compositeResponse"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&r); err != nil || len(r.CompositeResponse) != 1 {
		return fmt.Errorf("Salesforce composite %s: no subrequest answer (%v)", trimQuery(path), err)
	}
	sr := r.CompositeResponse[0]
	if sr.HTTPStatusCode/100 != 2 {
		e := &apiError{Status: sr.HTTPStatusCode, Path: trimQuery(path)}
		var list []struct{ Message, ErrorCode string }
		if json.Unmarshal(sr.Body, &list) == nil && len(list) > 0 {
			e.Code, e.Msg = list[0].ErrorCode, list[0].Message
		}
		return e
	}
	if err := json.Unmarshal(sr.Body, v); err != nil {
		return fmt.Errorf("Salesforce composite %s: decode: %w", trimQuery(path), err)
	}
	return nil
}

// count runs SELECT COUNT() FROM object.
func (c *client) count(ctx context.Context, object string) (int64, error) {
	var n int64
	err := c.query(ctx, "SELECT COUNT() FROM "+object, false, 0, func(p *queryPage) error { n = p.TotalSize; return nil })
	return n, err
}

// deleted is /sobjects/OBJ/deleted (getDeleted): records deleted in
// [start, end], for as far back as Salesforce keeps them (about 30 days).
type deletedList struct {
	DeletedRecords []struct {
		ID          string `json:"id"`
		DeletedDate string `json:"deletedDate"`
	} `json:"deletedRecords"`
	EarliestDateAvailable string `json:"earliestDateAvailable"`
	LatestDateCovered     string `json:"latestDateCovered"`
}

func (c *client) getDeleted(ctx context.Context, object string, start, end time.Time) (*deletedList, error) {
	q := url.Values{"start": {start.UTC().Format(sfTimeLayout)}, "end": {end.UTC().Format(sfTimeLayout)}}
	var d deletedList
	err := c.getJSON(ctx, c.base()+"/sobjects/"+url.PathEscape(object)+"/deleted/?"+q.Encode(), nil, &d)
	return &d, err
}

// errJobFailed: the bulk query job failed or was aborted; a new one is needed.
var errJobFailed = errors.New("Salesforce bulk query job ended without results")

// bulkJob is a Bulk API 2.0 query job's state.
type bulkJob struct {
	ID                     string `json:"id"`
	State                  string `json:"state"`
	NumberRecordsProcessed int64  `json:"numberRecordsProcessed"`
	ErrorMessage           string `json:"errorMessage"`
}

func (c *client) createBulkJob(ctx context.Context, soql string, all bool) (*bulkJob, error) {
	op := "query"
	if all {
		op = "queryAll"
	}
	body, _ := json.Marshal(map[string]string{"operation": op, "query": soql, "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"})
	resp, err := c.do(ctx, http.MethodPost, c.base()+"/jobs/query", body, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var j bulkJob
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&j); err != nil || j.ID == "" {
		return nil, fmt.Errorf("Salesforce bulk query job: no job id in the answer (%v)", err)
	}
	return &j, nil
}

func (c *client) bulkJob(ctx context.Context, id string) (*bulkJob, error) {
	var j bulkJob
	err := c.getJSON(ctx, c.base()+"/jobs/query/"+url.PathEscape(id), nil, &j)
	return &j, err
}

// waitBulkJob polls the job until it completes.
func (c *client) waitBulkJob(ctx context.Context, id string, poll time.Duration) (*bulkJob, error) {
	for {
		j, err := c.bulkJob(ctx, id)
		if err != nil {
			return nil, err
		}
		switch j.State {
		case "JobComplete":
			return j, nil
		case "Failed", "Aborted":
			return nil, fmt.Errorf("%w: %s %s: %s", errJobFailed, id, j.State, j.ErrorMessage)
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		poll = min(2*poll, 30*time.Second)
	}
}

// bulkResults GETs one page of a completed job's CSV results: the body, and
// the locator of the next page ("" after the last).
func (c *client) bulkResults(ctx context.Context, id, locator string, maxRecords int) ([]byte, string, error) {
	q := url.Values{"maxRecords": {strconv.Itoa(maxRecords)}}
	if locator != "" {
		q.Set("locator", locator)
	}
	resp, err := c.do(ctx, http.MethodGet, c.base()+"/jobs/query/"+url.PathEscape(id)+"/results?"+q.Encode(), nil, http.Header{"Accept": {"text/csv"}})
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, "", fmt.Errorf("Salesforce bulk results of job %s: %w", id, err)
	}
	next := resp.Header.Get("Sforce-Locator")
	if next == "null" {
		next = ""
	}
	return b, next, nil
}
