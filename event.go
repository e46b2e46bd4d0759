package herd

import (
	"encoding/json"
	"time"
)

// Event types accepted by the tracking API.
const (
	TypeTrack    = "track"
	TypePage     = "page"
	TypeScreen   = "screen"
	TypeIdentify = "identify"
	TypeGroup    = "group"
	TypeAlias    = "alias"
)

// ValidType reports whether t is one of the six event types.
func ValidType(t string) bool {
	switch t {
	case TypeTrack, TypePage, TypeScreen, TypeIdentify, TypeGroup, TypeAlias:
		return true
	}
	return false
}

// Event is one validated, enriched event: exactly what the writer stores as a
// row of herd.events. It is the message body on the stream (JSON), so field
// names are part of the stream's contract; add fields, never rename them.
type Event struct {
	MessageID   string `json:"message_id"`
	SourceID    int64  `json:"source_id"`
	Type        string `json:"type"`
	Event       string `json:"event,omitempty"` // track: event name; page/screen: name
	AnonymousID string `json:"anonymous_id,omitempty"`
	UserID      string `json:"user_id,omitempty"`
	GroupID     string `json:"group_id,omitempty"`
	PreviousID  string `json:"previous_id,omitempty"`

	// Timestamp is the event time corrected for the client's clock skew:
	// ReceivedAt - (SentAt - OriginalTimestamp) when the client sent SentAt.
	Timestamp         time.Time  `json:"timestamp"`
	OriginalTimestamp *time.Time `json:"original_timestamp,omitempty"`
	SentAt            *time.Time `json:"sent_at,omitempty"`
	ReceivedAt        time.Time  `json:"received_at"`

	Context    json.RawMessage `json:"context,omitempty"`
	Properties json.RawMessage `json:"properties,omitempty"`
	Traits     json.RawMessage `json:"traits,omitempty"`

	Enrichment
}

// Enrichment holds the columns derived from the request and the event body so
// that analysts can query them without JSON paths. Empty strings are stored as
// NULL.
type Enrichment struct {
	URL         string `json:"url,omitempty"`
	Path        string `json:"path,omitempty"`
	Referrer    string `json:"referrer,omitempty"`
	Title       string `json:"title,omitempty"`
	Search      string `json:"search,omitempty"`
	UTMSource   string `json:"utm_source,omitempty"`
	UTMMedium   string `json:"utm_medium,omitempty"`
	UTMCampaign string `json:"utm_campaign,omitempty"`
	UTMTerm     string `json:"utm_term,omitempty"`
	UTMContent  string `json:"utm_content,omitempty"`

	IP             string `json:"ip,omitempty"`
	Country        string `json:"country,omitempty"`
	Region         string `json:"region,omitempty"`
	City           string `json:"city,omitempty"`
	UserAgent      string `json:"user_agent,omitempty"`
	Browser        string `json:"browser,omitempty"`
	BrowserVersion string `json:"browser_version,omitempty"`
	OS             string `json:"os,omitempty"`
	DeviceType     string `json:"device_type,omitempty"`
	IsBot          bool   `json:"is_bot,omitempty"`
	SessionID      string `json:"session_id,omitempty"`
	LibraryName    string `json:"library_name,omitempty"`
	LibraryVersion string `json:"library_version,omitempty"`

	// Fields added with the enrichment package (migration 0002).
	ReferrerHost  string `json:"referrer_host,omitempty"`
	ReferrerClass string `json:"referrer_class,omitempty"` // search, social, email, paid, internal, referral, campaign, direct
	GCLID         string `json:"gclid,omitempty"`
	FBCLID        string `json:"fbclid,omitempty"`
	OSVersion     string `json:"os_version,omitempty"`
	BotReason     string `json:"bot_reason,omitempty"` // why IsBot is set: crawler, monitor, headless, tool, empty_ua, pattern
	ASN           int64  `json:"asn,omitempty"`
	ASOrg         string `json:"as_org,omitempty"`
}

// Reject is an event, or a request body, that was refused, with the reason.
// Rejects travel on the stream too, so that the collector never needs Postgres
// and nothing refused is lost from view: the writer stores them in
// herd.rejects.
type Reject struct {
	SourceID   int64     `json:"source_id,omitempty"`
	MessageID  string    `json:"message_id,omitempty"`
	Reason     string    `json:"reason"`
	Raw        string    `json:"raw"`
	ReceivedAt time.Time `json:"received_at"`
}

// MaxRawReject bounds how much of a refused body a Reject keeps.
const MaxRawReject = 64 << 10
