package collector

import (
	json "github.com/herdhq/herd/internal/fastjson"
	"net/url"
	"strings"

	"github.com/herdhq/herd"
)

// eventContext is the part of context and properties the enrichment reads.
type eventContext struct {
	Page struct {
		URL      string `json:"url"`
		Path     string `json:"path"`
		Referrer string `json:"referrer"`
		Title    string `json:"title"`
		Search   string `json:"search"`
	} `json:"page"`
	Campaign struct {
		Source  string `json:"source"`
		Medium  string `json:"medium"`
		Name    string `json:"name"`
		Term    string `json:"term"`
		Content string `json:"content"`
	} `json:"campaign"`
	Library struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"library"`
	UserAgent  string          `json:"userAgent"`
	IP         string          `json:"ip"`
	SessionID  json.RawMessage `json:"sessionId"`
	SessionID2 json.RawMessage `json:"session_id"`
}

type pageProps struct {
	URL      string `json:"url"`
	Path     string `json:"path"`
	Referrer string `json:"referrer"`
	Title    string `json:"title"`
	Search   string `json:"search"`
}

// enrich fills the derived columns. Malformed optional fields are ignored:
// enrichment never refuses an event.
func (c *Collector) enrich(ev *herd.Event, info *reqInfo) {
	var ctx eventContext
	if len(ev.Context) > 0 {
		_ = json.Unmarshal(ev.Context, &ctx)
	}
	e := &ev.Enrichment
	e.URL, e.Path, e.Referrer, e.Title, e.Search = ctx.Page.URL, ctx.Page.Path, ctx.Page.Referrer, ctx.Page.Title, ctx.Page.Search
	if ev.Type == herd.TypePage && len(ev.Properties) > 0 {
		var p pageProps
		_ = json.Unmarshal(ev.Properties, &p)
		e.URL = first(p.URL, e.URL)
		e.Path = first(p.Path, e.Path)
		e.Referrer = first(p.Referrer, e.Referrer)
		e.Title = first(p.Title, e.Title)
		e.Search = first(p.Search, e.Search)
	}
	if e.URL != "" && (e.Path == "" || e.Search == "") {
		if u, err := url.Parse(e.URL); err == nil {
			e.Path = first(e.Path, u.Path)
			if e.Search == "" && u.RawQuery != "" {
				e.Search = "?" + u.RawQuery
			}
		}
	}
	e.UTMSource, e.UTMMedium, e.UTMCampaign = ctx.Campaign.Source, ctx.Campaign.Medium, ctx.Campaign.Name
	e.UTMTerm, e.UTMContent = ctx.Campaign.Term, ctx.Campaign.Content
	noCampaign := e.UTMSource == "" && e.UTMMedium == "" && e.UTMCampaign == ""
	if e.Search != "" && (noCampaign || strings.Contains(e.Search, "clid=")) {
		// ParseQuery returns what it could read along with an error for a
		// bad pair: a stray "%" must not hide the utm_* next to it.
		q, _ := url.ParseQuery(trimQ(e.Search))
		if noCampaign {
			e.UTMSource, e.UTMMedium, e.UTMCampaign = q.Get("utm_source"), q.Get("utm_medium"), q.Get("utm_campaign")
			e.UTMTerm, e.UTMContent = q.Get("utm_term"), q.Get("utm_content")
		}
		e.GCLID, e.FBCLID = q.Get("gclid"), q.Get("fbclid")
	}
	e.LibraryName, e.LibraryVersion = ctx.Library.Name, ctx.Library.Version
	if s, err := idString(ctx.SessionID, "sessionId"); err == nil && s != "" {
		e.SessionID = s
	} else if s, err := idString(ctx.SessionID2, "session_id"); err == nil {
		e.SessionID = s
	}
	e.UserAgent = ctx.UserAgent
	if info.source.Kind != herd.KindServer {
		// A server source's own agent is its HTTP library's, not the
		// visitor's: only context.userAgent speaks for the visitor there.
		e.UserAgent = first(e.UserAgent, info.userAgent)
		if e.UserAgent == "" {
			// Every browser sends a User-Agent; its absence is a script.
			e.IsBot, e.BotReason, e.DeviceType = true, "empty_ua", "bot"
		}
	}
	e.IP = info.ip
	if info.source.Kind == herd.KindServer && ctx.IP != "" {
		e.IP = ctx.IP
	}
	anonymize := info.source.AnonymizeIP || c.cfg.AnonymizeIP
	e.IP = c.cleanIP(e.IP, anonymize)
	if anonymize && ctx.IP != "" {
		// context.ip is stored with the rest of context: anonymise it
		// there too, or the full address would reach the warehouse.
		ev.Context = replaceContextIP(ev.Context, c.cleanIP(ctx.IP, true))
	}
	if c.enricher != nil {
		c.enricher.Enrich(ev)
	}
}

// Enricher adds what needs heavier machinery (user agent parsing, geo).
type Enricher interface {
	Enrich(ev *herd.Event)
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func trimQ(s string) string {
	if len(s) > 0 && s[0] == '?' {
		return s[1:]
	}
	return s
}

// replaceContextIP returns the context object with its ip member set to ip
// (removed when ip is empty). Only anonymising sources pay for the rewrite.
func replaceContextIP(raw json.RawMessage, ip string) json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return raw
	}
	if ip == "" {
		delete(m, "ip")
	} else {
		b, _ := json.Marshal(ip)
		m["ip"] = b
	}
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}
