package herd

import "time"

// Source kinds. Browser sources are subject to origin checks; server sources
// may state the client IP in context.ip.
const (
	KindBrowser = "browser"
	KindServer  = "server"
)

// Source is a producer of events identified by its write key.
type Source struct {
	ID             int64    `json:"id"`
	Name           string   `json:"name"`
	WriteKey       string   `json:"write_key"`
	Kind           string   `json:"kind"`
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
	AnonymizeIP    bool     `json:"anonymize_ip,omitempty"`
	Revoked        bool     `json:"revoked,omitempty"`
	// RateLimit is the most events per second the source may send; nil
	// means the collector's default, 0 unlimited.
	RateLimit *float64  `json:"rate_limit,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}
