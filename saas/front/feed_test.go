package front

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// An event a webhook applied is checked again by the events feed: when
// the webhook's refetch ran before Front's API showed the change, the feed
// (which waits out clockMargin) still brings it in, with no further event.
func TestFeedRechecksWebhookEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHarness(t, nil)
	f := h.fake
	conv := f.conversation(1, 0)
	h.sync()
	f.mu.Lock()
	ev := f.emit("inbound", conv, now(), false)
	f.mu.Unlock()
	if err := h.s.Webhook(ctx, f.webhookBody(ev)); err != nil {
		t.Fatal(err)
	}
	// The message behind the event shows in the API only now.
	f.mu.Lock()
	msg := f.newMessage(conv)
	f.mu.Unlock()
	h.sync()
	if got := h.one(`SELECT count(*)::text FROM front.messages WHERE id = $1 AND NOT deleted`, msg); got != "1" {
		t.Errorf("message %s: %s rows after the next pass, want 1 (event %s: %s)", msg, got, ev,
			h.one(`SELECT via || ' ' || outcome FROM front.events WHERE id = $1`, ev))
	}
	if got := h.one(`SELECT via || ' ' || outcome FROM front.events WHERE id = $1`, ev); got != "api applied" {
		t.Errorf("event %s recorded %q, want api applied", ev, got)
	}
	// Checked once: a later pass finds it done.
	before := len(f.requests())
	h.sync()
	for _, r := range f.requests()[before:] {
		if r == "/conversations/"+conv+"?" {
			t.Errorf("conversation %s refetched again by a later pass", conv)
		}
	}
}

// herd's clock may be off from Front's: the feed's stale test compares
// Front's times only (events' emitted_at with the Date of Front's answer),
// so a skew either way neither loses a change nor keeps a stale one.
func TestClockSkewLosesNothing(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{30 * time.Second, -30 * time.Second} {
		t.Run(fmt.Sprint(skew), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			f := h.fake
			h.s.now = func() time.Time { return time.Now().Add(skew) }
			conv := f.conversation(2, 1)
			h.sync()
			msg, ev := f.addMessage(conv, false)
			h.sync()
			if got := h.one(`SELECT count(*)::text FROM front.messages WHERE id = $1 AND NOT deleted`, msg); got != "1" {
				t.Errorf("herd's clock %s off: message %s has %s rows, want 1 (event %s: %s)", skew, msg, got, ev,
					h.one(`SELECT outcome FROM front.events WHERE id = $1`, ev))
			}
			h.clean()
		})
	}
}

// The small tables listed whole at every pass are rewritten only where
// Front's copy changed; one Front no longer lists is still flagged deleted.
func TestUnchangedRowsAreNotRewritten(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	f := h.fake
	kept := f.create("teams", map[string]any{"name": "Kept"})
	renamed := f.create("tags", map[string]any{"name": "before"})
	gone := f.create("inboxes", nil)
	h.sync()
	synced := func(table, id string) string {
		return h.one(`SELECT synced_at::text FROM front.`+table+` WHERE id = $1`, id)
	}
	keptAt, renamedAt := synced("teams", kept), synced("tags", renamed)
	f.update("tags", renamed, map[string]any{"name": "after"})
	f.remove("inboxes", gone)
	h.sync()
	if got := synced("teams", kept); got != keptAt {
		t.Errorf("unchanged team rewritten: synced_at %s, then %s", keptAt, got)
	}
	if got := synced("tags", renamed); got == renamedAt {
		t.Errorf("renamed tag not rewritten (synced_at %s)", got)
	}
	if got := h.one(`SELECT data->>'name' FROM front.tags WHERE id = $1`, renamed); got != "after" {
		t.Errorf("renamed tag holds %q", got)
	}
	if got := h.one(`SELECT deleted::text FROM front.teams WHERE id = $1`, kept); got != "false" {
		t.Errorf("unchanged team flagged deleted")
	}
	if got := h.one(`SELECT deleted::text FROM front.inboxes WHERE id = $1`, gone); got != "true" {
		t.Errorf("inbox Front no longer lists: deleted %s, want true", got)
	}
	h.clean()
}
