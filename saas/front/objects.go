package front

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// How an object is kept fresh after the backfill.
const (
	everyPass = iota // small: listed whole at every pass
	reconcile        // listed whole every Config.Reconcile (no change feed)
	updated          // listed by updated_after at every pass, whole every Config.Reconcile
	byEvents         // the events feed names what to refetch
)

// object is one Front object type herd keeps at the top level; messages and
// comments are read per conversation.
type object struct {
	Table string // table under the front schema
	Path  string // list endpoint
	Fresh int    // everyPass, reconcile, updated or byEvents
}

// objects is every top-level object type, in backfill order: the small
// reference tables first, conversations (the long part) last.
var objects = []object{
	{Table: "teams", Path: "/teams", Fresh: everyPass},
	{Table: "teammates", Path: "/teammates", Fresh: everyPass},
	{Table: "inboxes", Path: "/inboxes", Fresh: everyPass},
	{Table: "tags", Path: "/tags", Fresh: everyPass},
	{Table: "accounts", Path: "/accounts", Fresh: reconcile},
	{Table: "contacts", Path: "/contacts", Fresh: updated},
	{Table: "conversations", Path: "/conversations", Fresh: byEvents},
}

// Tables lists the tables herd keeps under the front schema.
func Tables() []string {
	t := make([]string, 0, len(objects)+2)
	for _, o := range objects {
		t = append(t, o.Table)
	}
	return append(t, "messages", "comments")
}

func (s *Syncer) firstPage(path string, q url.Values) string {
	if q == nil {
		q = url.Values{}
	}
	q.Set("limit", strconv.Itoa(s.cfg.PageSize))
	return s.api.url(path, q)
}

// conversationDeleted reports whether a conversation is in the trash
// (status "deleted"): Front keeps it there for a while, then forgets it.
func conversationDeleted(data json.RawMessage) bool {
	var c struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(data, &c)
	return c.Status == "deleted"
}

// children reads every message and comment of a conversation, all pages.
func (s *Syncer) children(ctx context.Context, convID string) (msgs, comments []row, err error) {
	fetched := s.now()
	for _, c := range []struct {
		table string
		into  *[]row
	}{{"messages", &msgs}, {"comments", &comments}} {
		u := s.firstPage("/conversations/"+url.PathEscape(convID)+"/"+c.table, nil)
		err := s.api.all(ctx, u, func(items []json.RawMessage) error {
			for _, it := range items {
				r, err := newRow(it, fetched)
				if err != nil {
					return err
				}
				r.conv = convID
				r.version = fetched // children: the read's time, the same for the whole set
				*c.into = append(*c.into, r)
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("list the %s of conversation %s: %w", c.table, convID, err)
		}
	}
	return msgs, comments, nil
}

// whole is a conversation read whole: the conversation, its messages and
// its comments.
type whole struct {
	conv           row
	msgs, comments []row
	fetched        time.Time // when the children were read (their version)
	// readAt is Front's clock (the Date of its answer) at the earlier of
	// the two reads, kept in children_synced_at; zero when Front did not
	// say (then NULL: the next event about it refetches it).
	readAt time.Time
}

// writeConversations writes conversations and, for each whose state is not
// older than the stored one, all its messages and comments; children that
// a conversation no longer has (all of them, when it is deleted) are marked
// deleted. Two round trips whatever the number of conversations. It reports
// which conversations were written.
func (s *Syncer) writeConversations(ctx context.Context, tx pgx.Tx, ws []whole) ([]bool, error) {
	convs := make([]row, len(ws))
	for i, w := range ws {
		convs[i] = w.conv
	}
	written := make([]bool, len(ws))
	if err := upsertEach(ctx, tx, "conversations", convs, written); err != nil {
		return nil, err
	}
	b := &pgx.Batch{}
	var msgs, comments []row
	for i, w := range ws {
		if !written[i] {
			continue
		}
		msgs = append(msgs, w.msgs...)
		comments = append(comments, w.comments...)
		for _, c := range []struct {
			table string
			rows  []row
		}{{"front.messages", w.msgs}, {"front.comments", w.comments}} {
			ids := make([]string, len(c.rows))
			for i, r := range c.rows {
				ids[i] = r.id
			}
			b.Queue(`UPDATE `+c.table+` SET deleted = true, version = $3, synced_at = now()
				WHERE conversation_id = $1 AND NOT deleted AND (NOT (id = ANY($2)) OR $4) AND version <= $3`,
				w.conv.id, ids, w.fetched, w.conv.deleted)
		}
		var readAt *time.Time
		if !w.readAt.IsZero() {
			readAt = &w.readAt
		}
		b.Queue(`UPDATE front.conversations SET children_synced_at = $2 WHERE id = $1`, w.conv.id, readAt)
		s.fresh.Applied(w.conv.version)
	}
	queueUpserts(b, "messages", msgs)
	queueUpserts(b, "comments", comments)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("write the messages and comments of %d conversations: %w", len(ws), err)
	}
	n := 0
	for _, w := range written {
		if w {
			n++
		}
	}
	s.m.rows.WithLabelValues("conversations").Add(float64(n))
	s.m.rows.WithLabelValues("messages").Add(float64(len(msgs)))
	s.m.rows.WithLabelValues("comments").Add(float64(len(comments)))
	return written, nil
}

// refetch reads a conversation whole (the conversation, its messages, its
// comments) and writes it unless the warehouse holds a newer state; evs,
// the events that named it, are recorded in the same transaction with the
// outcome. It returns applied or stale.
func (s *Syncer) refetch(ctx context.Context, convID string, evs []event, via string) (string, error) {
	fetched := s.now()
	data, at, err := s.api.getAt(ctx, s.api.url("/conversations/"+url.PathEscape(convID), nil))
	gone := errors.Is(err, errNotFound)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusForbidden {
		// The token may not read this conversation (a private inbox): no
		// retry will change that, and failing would stall the feed.
		s.log.Warn("the Front API token may not read a conversation an event names; skipping it", "conversation", convID, "err", err)
		return "ignored", recordEvents(ctx, s.db, evs, via, "ignored")
	}
	if err != nil && !gone {
		return "", fmt.Errorf("retrieve conversation %s from Front: %w", convID, err)
	}
	var conv row
	var msgs, comments []row
	if !gone {
		if conv, err = newRow(data, fetched); err != nil {
			return "", err
		}
		conv.deleted = conversationDeleted(data)
		if !conv.deleted {
			if msgs, comments, err = s.children(ctx, convID); err != nil {
				return "", err
			}
		}
	}
	outcome := "applied"
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if gone {
			// Forgotten by Front (emptied from the trash): keep the last
			// state herd saw, flagged.
			tag, err := tx.Exec(ctx, `UPDATE front.conversations SET deleted = true, version = $2, synced_at = now()
				WHERE id = $1 AND version <= $2`, convID, fetched)
			if err != nil {
				return fmt.Errorf("mark conversation %s deleted: %w", convID, err)
			}
			for _, t := range []string{"front.messages", "front.comments"} {
				if _, err := tx.Exec(ctx, `UPDATE `+t+` SET deleted = true, synced_at = now() WHERE conversation_id = $1 AND NOT deleted`, convID); err != nil {
					return fmt.Errorf("mark the parts of conversation %s deleted: %w", convID, err)
				}
			}
			if tag.RowsAffected() == 0 {
				outcome = "stale"
			}
		} else {
			ok, err := s.writeConversations(ctx, tx, []whole{{conv, msgs, comments, fetched, at}})
			if err != nil {
				return err
			}
			if !ok[0] {
				outcome = "stale"
			}
		}
		return recordEvents(ctx, tx, evs, via, outcome)
	})
	if err != nil {
		return "", fmt.Errorf("apply conversation %s: %w", convID, err)
	}
	return outcome, nil
}
