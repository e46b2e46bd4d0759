package salesforce

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/salesforcefake"
)

// proxyFake puts a proxy in front of the fake; rewrite answers a request
// itself when it returns true.
func proxyFake(t *testing.T, target string, rewrite func(w http.ResponseWriter, r *http.Request) bool) *httptest.Server {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rewrite != nil && rewrite(w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (h *harness) isDeleted(object, id string) bool {
	h.t.Helper()
	var del bool
	if err := h.db.QueryRow(context.Background(), `SELECT is_deleted FROM salesforce.`+strings.ToLower(object)+` WHERE id = $1`, id).Scan(&del); err != nil {
		h.t.Fatalf("read %s %s: %v", object, id, err)
	}
	return del
}

func (h *harness) anyLive(object string) string {
	for id := range h.fake.Live(object) {
		return id
	}
	h.t.Fatalf("no live %s in the fake", object)
	return ""
}

// A pass that re-reads an object to fill a new field's column must leave
// getDeleted's window where it was: a record purged before it is marked
// deleted by the next pass.
func TestRefetchKeepsDeletionWindow(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(0, 30, 0)
	h.cfg.Objects = []string{"Contact"}
	ctx := context.Background()
	s := h.syncer(nil)
	base := time.Now()
	s.now = func() time.Time { return base }
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	id := h.anyLive("Contact")
	h.fake.Purge("Contact", id)
	h.fake.AddField("Contact", salesforcefake.Field{Name: "Nps__c", Label: "NPS", Type: "int"})
	s.now = func() time.Time { return base.Add(10 * time.Minute) }
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return base.Add(20 * time.Minute) }
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !h.isDeleted("Contact", id) {
		t.Errorf("contact %s purged before a re-reading pass is still live", id)
	}
}

// When the delete log no longer reaches back to the cursor, getDeleted
// answers INVALID_REPLICATION_DATE; herd then compares every Id, marks the
// purged record deleted and records the sweep.
func TestDeleteLogGapSweepsIds(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(0, 30, 0)
	h.cfg.Objects = []string{"Contact"}
	ctx := context.Background()
	s := h.syncer(nil)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	id := h.anyLive("Contact")
	h.fake.Purge("Contact", id)
	h.fake.TrimDeleteLog(time.Now().Add(time.Second))
	h.fake.ResetCounts()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(h.requests("/deleted")); n == 0 {
		t.Fatal("no getDeleted call")
	}
	if !h.isDeleted("Contact", id) {
		t.Errorf("contact %s purged beyond the delete log is still live", id)
	}
	var swept *time.Time
	var rows *int64
	if err := h.db.QueryRow(ctx, `SELECT id_sweep_at, id_sweep_rows FROM salesforce.sync_state WHERE object = 'Contact'`).Scan(&swept, &rows); err != nil {
		t.Fatal(err)
	}
	if swept == nil || rows == nil || *rows != 1 {
		t.Errorf("sweep not recorded: id_sweep_at %v, id_sweep_rows %v", swept, rows)
	}
	var live int
	if err := h.db.QueryRow(ctx, `SELECT count(*) FROM salesforce.contact WHERE NOT is_deleted`).Scan(&live); err != nil {
		t.Fatal(err)
	}
	if want := len(h.fake.Live("Contact")); live != want {
		t.Errorf("%d live rows after the sweep, the fake has %d", live, want)
	}
}

// The next getDeleted call starts at the previous answer's
// latestDateCovered: a deletion Salesforce had not covered yet is seen.
func TestGetDeletedStartsAtLatestDateCovered(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(0, 30, 0)
	h.cfg.Objects = []string{"Contact"}
	h.cfg.Lookback = time.Second
	var lag bool
	px := proxyFake(t, h.fake.URL(), func(w http.ResponseWriter, r *http.Request) bool {
		if !lag || !strings.Contains(r.URL.Path, "/deleted") {
			return false
		}
		// Salesforce has covered nothing past the window's start yet.
		start, err := time.Parse(time.RFC3339, r.URL.Query().Get("start"))
		if err != nil {
			t.Errorf("getDeleted start: %v", err)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"deletedRecords": []any{}, "earliestDateAvailable": "2000-01-01T00:00:00.000+0000",
			"latestDateCovered": start.UTC().Format("2006-01-02T15:04:05.000+0000")})
		return true
	})
	h.cfg.InstanceURL = px.URL
	ctx := context.Background()
	s := h.syncer(nil)
	base := time.Now()
	s.now = func() time.Time { return base }
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	id := h.anyLive("Contact")
	h.fake.Purge("Contact", id)
	lag = true
	s.now = func() time.Time { return base.Add(3 * time.Minute) }
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	lag = false
	s.now = func() time.Time { return base.Add(10 * time.Minute) }
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !h.isDeleted("Contact", id) {
		t.Errorf("contact %s, deleted after getDeleted's latestDateCovered, never marked deleted", id)
	}
}

// A REST backfill resumed long after a kill keeps its first start as
// synced_until: a record written before the kill and purged before the
// resume is marked deleted by the next pass.
func TestRESTResumeKeepsStartBound(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(0, 0, 1500)
	h.cfg.Objects = []string{"Lead"}
	ctx, cancel := context.WithCancel(context.Background())
	h.fake.Hook = func(r *http.Request) {
		if strings.Contains(r.URL.Path, "/query/01g") {
			cancel()
		}
	}
	s := h.syncer(nil)
	base := time.Now()
	s.now = func() time.Time { return base }
	_ = s.Sync(ctx)
	h.fake.Hook = nil
	var id string
	if err := h.db.QueryRow(context.Background(), `SELECT min(id) FROM salesforce.lead`).Scan(&id); err != nil || id == "" {
		t.Fatalf("nothing written before the kill: %v", err)
	}
	h.fake.Purge("Lead", id)
	s2 := h.syncer(nil)
	s2.now = func() time.Time { return base.Add(30 * time.Minute) }
	if err := s2.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2.now = func() time.Time { return base.Add(31 * time.Minute) }
	if err := s2.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !h.isDeleted("Lead", id) {
		t.Errorf("lead %s purged between the kill and the resume is still live", id)
	}
}

// check compares values, not only Ids and SystemModstamps: a stored email
// that differs from Salesforce's, in its column or only in data, is
// reported changed.
func TestCheckComparesValues(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(0, 40, 0)
	h.cfg.Objects = []string{"Contact"}
	ctx := context.Background()
	s := h.syncer(nil)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	diffs, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cleanDiffs(t, diffs)
	var ids []string
	if err := h.db.QueryRow(ctx, `SELECT array_agg(id ORDER BY id) FROM salesforce.contact`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Exec(ctx, `UPDATE salesforce.contact SET email = 'tampered@example.com', data = jsonb_set(data, '{Email}', '"tampered@example.com"') WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Exec(ctx, `UPDATE salesforce.contact SET data = jsonb_set(data, '{LastName}', '"Tampered"') WHERE id = $1`, ids[1]); err != nil {
		t.Fatal(err)
	}
	diffs, err = s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 1 || strings.Join(diffs[0].Changed, ",") != ids[0]+","+ids[1] {
		t.Errorf("check after tampering with %s and %s: %+v", ids[0], ids[1], diffs)
	}
}

// A field whose name herd refuses to put in a query is logged once and
// listed in check's problems; an object taken out of the configuration
// leaves salesforce.sync_state (and herd status).
func TestSkippedFieldsAndRemovedObjects(t *testing.T) {
	h := newHarness(t)
	h.seedCRM(0, 5, 5)
	h.fake.AddObject("Widget__c", "a01", true,
		salesforcefake.Field{Name: "Note__c", Label: "Note", Type: "string"},
		salesforcefake.Field{Name: "Bad Name; --", Label: "Bad", Type: "string"})
	h.fake.Create("Widget__c", salesforcefake.Now().Add(-time.Hour), map[string]any{"Note__c": "n"})
	h.cfg.Objects = []string{"Widget__c", "Lead", "Contact"}
	ctx := context.Background()
	s := h.syncer(nil)
	for range 2 {
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(h.logs.String(), "fields not synced"); n != 1 {
		t.Errorf("the skipped field is logged %d times over two passes, want once", n)
	}
	if !strings.Contains(h.logs.String(), "Bad Name; --") {
		t.Error("the log does not name the skipped field")
	}
	diffs, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 3 || len(diffs[0].Problems) != 1 || !strings.Contains(diffs[0].Problems[0], "Bad Name; --") {
		t.Errorf("check does not report the skipped field: %+v", diffs)
	}
	h.cfg.Objects = []string{"Lead"}
	if err := h.syncer(nil).Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var objects []string
	if err := h.db.QueryRow(ctx, `SELECT array_agg(object ORDER BY object) FROM salesforce.sync_state`).Scan(&objects); err != nil {
		t.Fatal(err)
	}
	if strings.Join(objects, ",") != "Lead" {
		t.Errorf("sync_state after removing Widget__c and Contact from the configuration: %v", objects)
	}
}
