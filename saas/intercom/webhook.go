package intercom

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/herdhq/herd/saas"
)

// notification is the part of an Intercom webhook notification herd reads.
type notification struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	Topic     string `json:"topic"`
	CreatedAt int64  `json:"created_at"`
	Data      struct {
		Item json.RawMessage `json:"item"`
	} `json:"data"`
}

// Webhook implements saas.Connector: it applies one verified notification by
// refetching the object it names, so that the row holds Intercom's current
// state whatever order notifications arrive in.
func (s *Syncer) Webhook(ctx context.Context, body []byte) error {
	var n notification
	if err := json.Unmarshal(body, &n); err != nil || n.ID == "" {
		return saas.Permanent(fmt.Errorf("intercom webhook: not a notification: %.200s", body))
	}
	var item struct {
		Type string          `json:"type"`
		ID   json.RawMessage `json:"id"`
	}
	_ = json.Unmarshal(n.Data.Item, &item)
	id := jsonString(item.ID)
	kind := item.Type
	if kind == "user" || kind == "lead" {
		kind = "contact" // older payloads name the contact's role
	}
	obj := objectByKind(kind)
	if obj == nil || id == "" {
		s.m.webhooks.WithLabelValues("ignored").Inc()
		s.log.Debug("intercom webhook about an object herd does not keep", "notification", n.ID, "topic", n.Topic, "item_type", item.Type)
		return nil
	}
	if err := s.refetch(ctx, obj, id); err != nil {
		s.m.webhooks.WithLabelValues("failed").Inc()
		return fmt.Errorf("intercom webhook %s (%s on %s %s): %w", n.ID, n.Topic, kind, id, err)
	}
	s.m.webhooks.WithLabelValues("applied").Inc()
	return nil
}

// refetch brings one object up to date from the API.
func (s *Syncer) refetch(ctx context.Context, obj *object, id string) error {
	return s.refetchIf(ctx, obj, id, false)
}

// refetchIf is refetch, unguarded when force (a repair).
func (s *Syncer) refetchIf(ctx context.Context, obj *object, id string, force bool) error {
	if obj.Parts {
		return s.fetchConversationIf(ctx, id, force)
	}
	b, err := s.api.do(ctx, "GET", obj.GetPath+url.PathEscape(id), nil, nil)
	if isNotFound(err) {
		return s.markDeleted(ctx, obj, id)
	}
	if err != nil {
		return err
	}
	g := guard
	if force {
		g = "true"
	}
	_, err = s.upsertItemsIf(ctx, s.db, obj, []json.RawMessage{b}, g)
	return err
}
