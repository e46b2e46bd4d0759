package intercom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/herdhq/herd/saas"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

type paging int

const (
	pagingNone   paging = iota // one answer holds every object
	pagingCursor               // pages.next.starting_after
	pagingScroll               // scroll_param, until an empty page
	pagingSearch               // POST SearchPath for every updated_at, pages.next.starting_after
)

// object is one Intercom object type herd keeps, and how to read it.
type object struct {
	Table    string // table under the intercom schema
	Kind     string // the type a webhook's data.item carries; "" for objects without webhooks
	ListPath string
	ItemsKey string // where a list answer holds the objects
	Paging   paging
	// SearchPath is the search endpoint incremental passes use; objects
	// without one are listed whole on every pass.
	SearchPath string
	// ByDay: the search compares updated_at by calendar day (contacts).
	ByDay   bool
	GetPath string // prefix of the object's URL; "" when herd never gets one alone
	Parts   bool   // conversations: fetched one by one, with their parts
	// Optional: a workspace may not offer the object (tickets); the API
	// refusing it marks it unavailable instead of failing the pass.
	Optional bool
}

// objects is every object type, in sync order: the small ones first, so that
// joins from conversations find their admins and teams.
var objects = []object{
	{Table: "admins", ListPath: "/admins", ItemsKey: "admins"},
	{Table: "teams", ListPath: "/teams", ItemsKey: "teams"},
	{Table: "tags", ListPath: "/tags", ItemsKey: "data"},
	{Table: "segments", ListPath: "/segments", ItemsKey: "segments"},
	{Table: "companies", Kind: "company", ListPath: "/companies/scroll", ItemsKey: "data", Paging: pagingScroll, GetPath: "/companies/"},
	{Table: "contacts", Kind: "contact", ListPath: "/contacts", ItemsKey: "data", Paging: pagingCursor,
		SearchPath: "/contacts/search", ByDay: true, GetPath: "/contacts/"},
	{Table: "conversations", Kind: "conversation", ListPath: "/conversations", ItemsKey: "conversations", Paging: pagingCursor,
		SearchPath: "/conversations/search", GetPath: "/conversations/", Parts: true},
	// Tickets have no list endpoint: listed through the search, every
	// updated_at after 0.
	{Table: "tickets", Kind: "ticket", ItemsKey: "tickets", Paging: pagingSearch,
		SearchPath: "/tickets/search", GetPath: "/tickets/", Optional: true},
}

// unavailable reports whether the API refused an optional object as not
// offered to this workspace or token (403, 404), rather than failing.
func unavailable(obj *object, err error) bool {
	var e *apiError
	return obj.Optional && errors.As(err, &e) && (e.Status == http.StatusForbidden || e.Status == http.StatusNotFound)
}

func objectByKind(kind string) *object {
	for i := range objects {
		if objects[i].Kind != "" && objects[i].Kind == kind {
			return &objects[i]
		}
	}
	return nil
}

// pages lists every object of obj, page by page, from cursor (a
// starting_after; "" for the start).
func (s *Syncer) pages(ctx context.Context, obj *object, cursor string) iter.Seq2[page, error] {
	return func(yield func(page, error) bool) {
		scroll := ""
		var waited time.Duration
		restarts := 0
		for {
			q := url.Values{}
			switch obj.Paging {
			case pagingCursor:
				q.Set("per_page", strconv.Itoa(s.cfg.PerPage))
				if cursor != "" {
					q.Set("starting_after", cursor)
				}
			case pagingScroll:
				if scroll != "" {
					q.Set("scroll_param", scroll)
				}
			}
			var b []byte
			var err error
			if obj.Paging == pagingSearch {
				b, err = s.api.do(ctx, "POST", obj.SearchPath, nil, s.searchQuery(0, cursor))
			} else {
				b, err = s.api.do(ctx, "GET", obj.ListPath, q, nil)
			}
			if err != nil && obj.Paging == pagingScroll {
				// Intercom keeps one company scroll open per app, expiring a
				// minute after its last use: another listing (herd's check
				// during a pass, a pass during a check, a scroll abandoned by
				// a killed process) is waited for, not failed on.
				if scroll == "" && scrollTaken(err) && waited < s.scrollPatience {
					if waited == 0 {
						s.log.Info("another listing holds Intercom's company scroll (one per app); waiting for it to end or expire", "object", obj.Table)
					}
					select {
					case <-ctx.Done():
						yield(page{}, ctx.Err())
						return
					case <-time.After(s.scrollRetry):
					}
					waited += s.scrollRetry
					continue
				}
				if scroll != "" && isNotFound(err) && restarts < 2 {
					s.log.Warn("Intercom's company scroll expired; listing again from the start", "object", obj.Table, "err", err)
					scroll, restarts = "", restarts+1
					continue
				}
			}
			if err != nil {
				yield(page{}, err)
				return
			}
			p, err := parsePage(b, obj.ItemsKey)
			if err != nil {
				yield(page{}, fmt.Errorf("GET %s: %w", obj.ListPath, err))
				return
			}
			if obj.Paging == pagingScroll && len(p.items) == 0 {
				return
			}
			if !yield(p, nil) {
				return
			}
			switch {
			case (obj.Paging == pagingCursor || obj.Paging == pagingSearch) && p.next != "":
				cursor = p.next
			case obj.Paging == pagingScroll && p.scrollNext != "":
				scroll = p.scrollNext
			default:
				return
			}
		}
	}
}

// scrollTaken reports whether Intercom refused to open a scroll because one
// is already open for the app.
func scrollTaken(err error) bool {
	var e *apiError
	return errors.As(err, &e) && e.Code == "scroll_exists" && e.Status != http.StatusNotFound
}

func (s *Syncer) syncObject(ctx context.Context, obj *object) error {
	err := s.syncObject1(ctx, obj)
	if err != nil && unavailable(obj, err) {
		s.log.Info("Intercom does not offer this object to this workspace or token; skipped, and tried again next pass", "object", obj.Table, "err", err)
		return s.setState(ctx, obj.Table, map[string]any{"phase": "unavailable", "last_error": nil, "last_error_at": nil, "cursor": nil})
	}
	return err
}

func (s *Syncer) syncObject1(ctx context.Context, obj *object) error {
	st, err := s.state(ctx, obj.Table)
	if err != nil {
		return err
	}
	if obj.SearchPath == "" {
		return s.backfill(ctx, obj, st, false)
	}
	if st.BackfillFinished == nil {
		if err := s.backfill(ctx, obj, st, true); err != nil {
			return err
		}
		// Objects changed while the listing went by are behind it: the
		// incremental pass from the backfill's start catches them.
		if st, err = s.state(ctx, obj.Table); err != nil {
			return err
		}
	} else if every, err := s.sweepInterval(ctx, obj); err != nil {
		return err
	} else if st.SweptAt == nil || s.cfg.Now().Sub(*st.SweptAt) >= every {
		if err := s.sweep(ctx, obj); err != nil {
			return err
		}
	}
	if err := s.repair(ctx, obj); err != nil {
		return err
	}
	return s.incremental(ctx, obj, st)
}

// sweepInterval is Config.SweepEvery, or when that is zero the shortest
// interval, from a minute up, at which listing every id of obj (one request
// per page) takes at most a tenth of the request rate: 100,000 contacts are
// 667 pages, at 20 requests a second a sweep every 5.6 minutes.
func (s *Syncer) sweepInterval(ctx context.Context, obj *object) (time.Duration, error) {
	if s.cfg.SweepEvery > 0 {
		return s.cfg.SweepEvery, nil
	}
	var rows int64
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM `+table(obj.Table)+` WHERE NOT deleted`).Scan(&rows); err != nil {
		return 0, fmt.Errorf("count intercom.%s: %w", obj.Table, err)
	}
	rate := s.cfg.Limits.RequestsPerSecond
	if rate <= 0 {
		rate = 20 // saas.Limits' default
	}
	pages := float64(rows/int64(s.cfg.PerPage) + 1)
	return max(time.Minute, time.Duration(pages/(rate/10)*float64(time.Second))), nil
}

// repair fetches again the rows check queued in intercom.refetch and
// replaces what the table holds with Intercom's answer, whatever its
// updated_at: a settled row is never fetched by an incremental pass, so a
// row lost or altered in the warehouse is mended only here.
func (s *Syncer) repair(ctx context.Context, obj *object) error {
	rows, _ := s.db.Query(ctx, `SELECT id, queued_at FROM intercom.refetch WHERE object = $1 ORDER BY queued_at LIMIT 10000`, obj.Table)
	type queued struct {
		id string
		at time.Time
	}
	var q []queued
	var it queued
	if _, err := pgx.ForEachRow(rows, []any{&it.id, &it.at}, func() error { q = append(q, it); return nil }); err != nil {
		return fmt.Errorf("read intercom.refetch: %w", err)
	}
	for _, r := range q {
		if err := s.refetchIf(ctx, obj, r.id, true); err != nil {
			return fmt.Errorf("repair intercom.%s %s: %w", obj.Table, r.id, err)
		}
		if _, err := s.db.Exec(ctx, `DELETE FROM intercom.refetch WHERE object = $1 AND id = $2 AND queued_at <= $3`, obj.Table, r.id, r.at); err != nil {
			return fmt.Errorf("update intercom.refetch: %w", err)
		}
	}
	if len(q) > 0 {
		s.log.Info("intercom: rows check found differing fetched again", "object", obj.Table, "rows", len(q))
	}
	return nil
}

// backfill lists every object of obj and writes it; rows the listing did not
// return are then marked deleted. With resume, an interrupted backfill
// continues from the page it had reached, and conversations already stored
// at their listed updated_at are not fetched again.
func (s *Syncer) backfill(ctx context.Context, obj *object, st state, resume bool) error {
	var started, mark time.Time
	var rows int64
	cursor := ""
	if resume && (obj.Paging == pagingCursor || obj.Paging == pagingSearch) && st.Phase == "backfill" && st.BackfillStarted != nil && st.BackfillMark != nil {
		started, mark = *st.BackfillStarted, *st.BackfillMark
		if st.Cursor != nil {
			cursor = *st.Cursor
		}
		if st.BackfillRows != nil {
			rows = *st.BackfillRows
		}
		s.log.Info("resuming the interrupted Intercom backfill", "object", obj.Table, "started", started, "rows", rows)
	} else {
		var err error
		if started, err = s.dbNow(ctx); err != nil {
			return err
		}
		mark = s.cfg.Now()
		cols := map[string]any{"backfill_started_at": started, "backfill_mark": mark, "cursor": nil, "backfill_rows": 0}
		if st.BackfillFinished == nil {
			cols["phase"] = "backfill"
		}
		if err := s.setState(ctx, obj.Table, cols); err != nil {
			return err
		}
	}
	var progress *saas.Progress
	if obj.SearchPath != "" || st.BackfillFinished == nil {
		progress = saas.NewProgress(s.plog, "intercom", obj.Table, 0, rows)
	}
	first := true
	for p, err := range s.pages(ctx, obj, cursor) {
		if err != nil && first && cursor != "" && cursorRefused(err) {
			// Intercom does not say how long a cursor lives: one it no longer
			// takes restarts the listing, and the conversations already
			// stored are recognised without being fetched again.
			s.log.Warn("Intercom refused the saved backfill cursor; listing again from the start", "object", obj.Table, "err", err)
			return s.backfill(ctx, obj, state{Phase: "backfill", BackfillStarted: &started, BackfillMark: &mark}, true)
		}
		first = false
		if err != nil {
			return fmt.Errorf("backfill intercom.%s after %d objects: %w", obj.Table, rows, err)
		}
		if obj.Parts {
			err = s.conversationsPage(ctx, p.items, true)
		} else {
			err = s.backfillPage(ctx, obj, p.items, started)
		}
		if err != nil {
			return fmt.Errorf("backfill intercom.%s: %w", obj.Table, err)
		}
		rows += int64(len(p.items))
		if progress != nil {
			progress.SetTotal(p.total)
			progress.Add(len(p.items))
		}
		if obj.Paging == pagingCursor || obj.Paging == pagingSearch {
			if err := s.setState(ctx, obj.Table, map[string]any{"cursor": nilIfEmpty(p.next), "backfill_rows": rows}); err != nil {
				return err
			}
		}
	}
	deleted, err := markUnseenDeleted(ctx, s.db, obj, started, "")
	if err != nil {
		return err
	}
	now := time.Now()
	if err := s.setState(ctx, obj.Table, map[string]any{
		"phase": "incremental", "backfill_finished_at": now, "backfill_rows": rows, "cursor": nil,
		"synced_until": mark, "swept_at": mark, "last_success_at": now, "last_error": nil, "last_error_at": nil,
	}); err != nil {
		return err
	}
	if progress != nil {
		progress.Done()
		if deleted > 0 {
			s.log.Info("intercom backfill: rows Intercom no longer lists marked deleted", "object", obj.Table, "rows", deleted)
		}
	}
	return nil
}

// backfillPage writes a page of a full listing. Rows the guard kept (the
// table holds a newer state than the listing, from a webhook) are stamped as
// seen, so that the end of the listing does not take them for deleted.
func (s *Syncer) backfillPage(ctx context.Context, obj *object, items []json.RawMessage, started time.Time) error {
	if _, err := s.upsertItems(ctx, s.db, obj, items); err != nil {
		return err
	}
	ids := make([]string, 0, len(items))
	for _, it := range items {
		id, _, err := idAndUpdated(it)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	if _, err := s.db.Exec(ctx, `UPDATE `+table(obj.Table)+` SET synced_at = now() WHERE id = ANY($1) AND synced_at < $2`, ids, started); err != nil {
		return fmt.Errorf("stamp rows newer than the listing as seen: %w", err)
	}
	return nil
}

// cursorRefused reports whether the API refused a request for its
// parameters (an expired or unknown starting_after), not for the token or
// the rate.
func cursorRefused(err error) bool {
	var e *apiError
	return errors.As(err, &e) && (e.Status == http.StatusBadRequest || e.Status == http.StatusNotFound || e.Status == http.StatusGone)
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// conversationsPage brings the conversations of one list or search page up
// to date: each one whose listed updated_at is newer than the stored one is
// fetched whole, parts included. touch: also stamp the rows that were
// already up to date as seen, so that the end of a backfill does not take
// them for deleted.
func (s *Syncer) conversationsPage(ctx context.Context, items []json.RawMessage, touch bool) error {
	ids := make([]string, 0, len(items))
	listed := make(map[string]int64, len(items))
	for _, it := range items {
		id, upd, err := idAndUpdated(it)
		if err != nil {
			return err
		}
		if _, dup := listed[id]; !dup {
			ids = append(ids, id)
		}
		listed[id] = max(listed[id], upd)
	}
	// A stored conversation is current when its updated_at is newer than the
	// listed one, or equal and fetched after that second had passed: updated_at
	// has a resolution of a second, and a part added later in the same second
	// as the one fetched leaves it unchanged.
	rows, _ := s.db.Query(ctx, `SELECT id, extract(epoch FROM updated_at)::bigint, synced_at >= updated_at + interval '2 seconds'
		FROM intercom.conversations WHERE id = ANY($1) AND NOT deleted AND updated_at IS NOT NULL`, ids)
	stored := map[string]int64{}
	settled := map[string]bool{}
	var id string
	var upd int64
	var done bool
	if _, err := pgx.ForEachRow(rows, []any{&id, &upd, &done}, func() error {
		stored[id], settled[id] = upd, done
		return nil
	}); err != nil {
		return fmt.Errorf("read stored conversations: %w", err)
	}
	var current []string
	// Conversations are fetched a few at a time: one request each is where
	// a sync of a large workspace spends its time, and the rate limiter,
	// not the round trip, should be what bounds it.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.Concurrency)
	for _, id := range ids {
		if u, ok := stored[id]; ok && (u > listed[id] || u == listed[id] && settled[id]) {
			current = append(current, id)
			continue
		}
		g.Go(func() error { return s.fetchConversation(gctx, id) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if touch && len(current) > 0 {
		if _, err := s.db.Exec(ctx, `UPDATE intercom.conversations SET synced_at = now() WHERE id = ANY($1)`, current); err != nil {
			return fmt.Errorf("stamp conversations already up to date: %w", err)
		}
	}
	return nil
}

// fetchConversation gets one conversation whole and writes it, or marks it
// deleted when Intercom no longer has it.
func (s *Syncer) fetchConversation(ctx context.Context, id string) error {
	return s.fetchConversationIf(ctx, id, false)
}

// fetchConversationIf is fetchConversation, unguarded when force (a
// repair).
func (s *Syncer) fetchConversationIf(ctx context.Context, id string, force bool) error {
	fetched := time.Now()
	b, err := s.api.do(ctx, "GET", "/conversations/"+url.PathEscape(id), nil, nil)
	if isNotFound(err) {
		return s.markDeleted(ctx, objectByKind("conversation"), id)
	}
	if err != nil {
		return err
	}
	c, err := parseConversation(b)
	if err != nil {
		return err
	}
	c.fetched = fetched
	_, err = s.writeConversationIf(ctx, c, force)
	return err
}

// searchQuery is the body of POST /contacts/search and
// /conversations/search: objects updated after a time, newest first.
func (s *Syncer) searchQuery(after int64, cursor string) map[string]any {
	pg := map[string]any{"per_page": s.cfg.PerPage}
	if cursor != "" {
		pg["starting_after"] = cursor
	}
	return map[string]any{
		"query":      map[string]any{"field": "updated_at", "operator": ">", "value": after},
		"sort":       map[string]any{"field": "updated_at", "order": "descending"},
		"pagination": pg,
	}
}

// incremental applies every object of obj updated since the last pass's
// start less the lookback, through the search endpoint, newest first.
// synced_until moves only when the whole pass succeeded.
func (s *Syncer) incremental(ctx context.Context, obj *object, st state) error {
	passStart := s.cfg.Now()
	since := passStart.Add(-s.cfg.Lookback)
	if st.SyncedUntil != nil {
		since = st.SyncedUntil.Add(-s.cfg.Lookback)
	}
	after := since.Unix() - 1 // the search has no >=
	if obj.ByDay {
		// The search compares by calendar day: "after" any instant of the
		// day before since's day is every object updated on since's day or
		// later. Those older than since are dropped below.
		day := since.UTC().Truncate(24 * time.Hour)
		after = day.Unix() - 1
	}
	cursor := ""
	var applied int
	for {
		b, err := s.api.do(ctx, "POST", obj.SearchPath, nil, s.searchQuery(after, cursor))
		if err != nil {
			return fmt.Errorf("search intercom %s updated since %s: %w", obj.Table, since.UTC().Format(time.RFC3339), err)
		}
		p, err := parsePage(b, obj.ItemsKey)
		if err != nil {
			return fmt.Errorf("POST %s: %w", obj.SearchPath, err)
		}
		var keep []json.RawMessage
		older := false
		for _, it := range p.items {
			_, upd, err := idAndUpdated(it)
			if err != nil {
				return err
			}
			if upd < since.Unix() {
				older = true // newest first: the rest is older still
				break
			}
			keep = append(keep, it)
		}
		if obj.Parts {
			err = s.conversationsPage(ctx, keep, false)
		} else {
			_, err = s.upsertItems(ctx, s.db, obj, keep)
		}
		if err != nil {
			return fmt.Errorf("incremental intercom.%s: %w", obj.Table, err)
		}
		applied += len(keep)
		if older || p.next == "" {
			break
		}
		cursor = p.next
	}
	if err := s.setState(ctx, obj.Table, map[string]any{
		"phase": "incremental", "synced_until": passStart, "last_success_at": time.Now(), "last_error": nil, "last_error_at": nil,
	}); err != nil {
		return err
	}
	s.log.Debug("intercom incremental pass", "object", obj.Table, "since", since.UTC(), "listed", applied)
	return nil
}

// sweep lists every id of obj and marks deleted the rows Intercom no longer
// lists: a deleted contact or conversation, or a lead merged into a user,
// leaves nothing a search can find.
func (s *Syncer) sweep(ctx context.Context, obj *object) error {
	start, err := s.dbNow(ctx)
	if err != nil {
		return err
	}
	mark := s.cfg.Now()
	var marked, listed int64
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE intercom_sweep (id text NOT NULL) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("create temporary table: %w", err)
		}
		for p, err := range s.pages(ctx, obj, "") {
			if err != nil {
				return fmt.Errorf("list %s: %w", obj.ListPath, err)
			}
			ids := make([][]any, 0, len(p.items))
			for _, it := range p.items {
				id, _, err := idAndUpdated(it)
				if err != nil {
					return err
				}
				ids = append(ids, []any{id})
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"intercom_sweep"}, []string{"id"}, pgx.CopyFromRows(ids)); err != nil {
				return fmt.Errorf("copy ids: %w", err)
			}
			listed += int64(len(ids))
		}
		marked, err = markUnseenDeleted(ctx, tx, obj, start, "intercom_sweep")
		return err
	})
	if err != nil {
		return fmt.Errorf("sweep intercom.%s: %w", obj.Table, err)
	}
	s.log.Info("intercom sweep", "object", obj.Table, "listed", listed, "marked_deleted", marked)
	return s.setState(ctx, obj.Table, map[string]any{"swept_at": mark})
}
