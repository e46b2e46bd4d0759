package collector

import (
	"fmt"
	json "github.com/herdhq/herd/internal/fastjson"
	"time"

	"github.com/google/uuid"
	"github.com/herdhq/herd"
)

// reqInfo is what the HTTP request tells about every event in it.
type reqInfo struct {
	source     *herd.Source
	receivedAt time.Time
	pathType   string // type implied by the path, "" for batch
	ip         string // client IP chosen from the socket and trusted proxies
	userAgent  string
	// ipClean is ip as stored (anonymised when the source asks), once
	// ipCleaned: enrich computes it for the request's first event.
	ipClean   string
	ipCleaned bool
}

// buildEvent validates one item and turns it into an Event. Errors are the
// event's own: in a batch the others still go through.
func (c *Collector) buildEvent(item json.RawMessage, r *request, info *reqInfo) (herd.Event, error) {
	var ev herd.Event
	err := c.fillEvent(&ev, item, r, info)
	return ev, err
}

// fillEvent is buildEvent into an Event the caller owns (and may reuse:
// every field is set), so that a batch's events share one.
func (c *Collector) fillEvent(ev *herd.Event, item json.RawMessage, r *request, info *reqInfo) error {
	*ev = herd.Event{}
	if err := checkRaw(item, r.scanned); err != nil {
		return err
	}
	if len(item) == 0 || item[0] != '{' {
		return fmt.Errorf("event must be a JSON object")
	}
	var w wireEvent
	if r.parsed != nil && len(r.items) == 1 {
		w = *r.parsed
	} else if err := decodeEvent(item, &w); err != nil {
		return fmt.Errorf("event: %v", err)
	}
	typ := w.Type
	if typ == "" {
		typ = info.pathType
	}
	if !herd.ValidType(typ) {
		if typ == "" {
			return fmt.Errorf("event has no type: want track, page, screen, identify, group or alias")
		}
		return fmt.Errorf("unknown type %q: want track, page, screen, identify, group or alias", truncate(typ, 32))
	}
	ev.Type = typ
	ev.SourceID = info.source.ID
	ev.ReceivedAt = info.receivedAt

	var err error
	if ev.MessageID, err = idString(w.MessageID, "messageId"); err != nil {
		return err
	}
	if ev.MessageID == "" {
		ev.MessageID = uuid.NewString()
	}
	if ev.AnonymousID, err = idString(w.AnonymousID, "anonymousId"); err != nil {
		return err
	}
	if ev.UserID, err = idString(w.UserID, "userId"); err != nil {
		return err
	}
	if ev.GroupID, err = idString(w.GroupID, "groupId"); err != nil {
		return err
	}
	if ev.PreviousID, err = idString(w.PreviousID, "previousId"); err != nil {
		return err
	}
	if ev.AnonymousID == "" && ev.UserID == "" {
		return fmt.Errorf("%s needs an anonymousId or a userId", typ)
	}
	switch typ {
	case herd.TypeTrack:
		if ev.Event, err = nameString(w.Event, "event"); err != nil {
			return err
		}
		if ev.Event == "" {
			return fmt.Errorf("track needs an event name")
		}
	case herd.TypePage, herd.TypeScreen:
		if ev.Event, err = nameString(w.Name, "name"); err != nil {
			return err
		}
	case herd.TypeGroup:
		if ev.GroupID == "" {
			return fmt.Errorf("group needs a groupId")
		}
	case herd.TypeAlias:
		if ev.UserID == "" || ev.PreviousID == "" {
			return fmt.Errorf("alias needs a userId and a previousId")
		}
	}

	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *json.RawMessage
	}{{"properties", w.Properties, &ev.Properties}, {"traits", w.Traits, &ev.Traits}} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			continue
		}
		if f.raw[0] != '{' {
			return fmt.Errorf("%s must be an object", f.name)
		}
		*f.dst = f.raw
	}
	if len(w.Context) > 0 && string(w.Context) != "null" && w.Context[0] != '{' {
		return fmt.Errorf("context must be an object")
	}
	if r.bctx == nil {
		ev.Context = w.Context
	} else {
		// The limits hold for the event as stored, batch context merged in;
		// the merged size is known before the merge is built.
		rest := len(item) - len(w.Context)
		merged, size, err := r.bctx.merge(w.Context, MaxEventBytes-rest)
		if err != nil {
			return err
		}
		if n := rest + size; n > MaxEventBytes {
			return fmt.Errorf("event is %d bytes with the batch context merged in; the limit is %d", n, MaxEventBytes)
		}
		ev.Context = merged
	}

	// Time: correct the client's clock by the difference between when it says
	// it sent the request and when we received it.
	ts, hasTS, err := parseTimeValue(w.Timestamp, "timestamp")
	if err != nil {
		return err
	}
	if !hasTS {
		if ts, hasTS, err = parseTimeValue(w.OriginalTimestamp, "originalTimestamp"); err != nil {
			return err
		}
	}
	sentRaw := w.SentAt
	if len(sentRaw) == 0 {
		sentRaw = r.sentAt
	}
	sent, hasSent, err := parseTimeValue(sentRaw, "sentAt")
	if err != nil {
		return err
	}
	if hasTS || hasSent {
		// The event keeps both times by pointer: one allocation for the two.
		times := new([2]time.Time)
		if hasTS {
			times[0] = ts
			ev.OriginalTimestamp = &times[0]
		}
		if hasSent {
			times[1] = sent
			ev.SentAt = &times[1]
		}
	}
	switch {
	case hasTS && hasSent:
		ev.Timestamp = info.receivedAt.Add(-sent.Sub(ts))
	case hasTS:
		ev.Timestamp = ts
	default:
		ev.Timestamp = info.receivedAt
	}
	ev.Timestamp = ev.Timestamp.UTC()
	if ev.Timestamp.Before(minTime) {
		return fmt.Errorf("timestamp %s is before 2000-01-01", ev.Timestamp.Format(time.RFC3339))
	}
	if ev.Timestamp.After(info.receivedAt.Add(maxFuture)) {
		return fmt.Errorf("timestamp %s is more than a day in the future", ev.Timestamp.Format(time.RFC3339))
	}

	c.enrich(ev, info)
	return nil
}
