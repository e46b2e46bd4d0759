package collector

import (
	json "github.com/herdhq/herd/internal/fastjson"
	"net/url"
	"strings"

	"github.com/herdhq/herd"
)

// eventContext is the part of context and properties the enrichment reads.
type eventContext struct {
	Page     pageProps
	Campaign struct {
		Source, Medium, Name, Term, Content string
	}
	Library struct {
		Name, Version string
	}
	UserAgent  string
	IP         string
	SessionID  json.RawMessage // sessionId
	SessionID2 json.RawMessage // session_id
}

// pageProps is context.page, or a page call's properties.
type pageProps struct {
	URL, Path, Referrer, Title, Search string
}

// readContext reads what enrichment needs from a context object. A member
// of the wrong type is skipped; the others are still read.
func readContext(raw []byte, ctx *eventContext) {
	it, ok := newObjIter(raw)
	if !ok {
		return
	}
	for {
		m, ok := it.next()
		if !ok {
			return
		}
		switch {
		case m.is("page"):
			readPage(m.val, &ctx.Page)
		case m.is("campaign"):
			c := &ctx.Campaign
			readStrings(m.val, campaignNames[:], &c.Source, &c.Medium, &c.Name, &c.Term, &c.Content)
		case m.is("library"):
			readStrings(m.val, libraryNames[:], &ctx.Library.Name, &ctx.Library.Version)
		case m.is("useragent"):
			_ = stringField(&ctx.UserAgent, "", m.val)
		case m.is("ip"):
			_ = stringField(&ctx.IP, "", m.val)
		case m.is("sessionid"):
			ctx.SessionID = m.val
		case m.is("session_id"):
			ctx.SessionID2 = m.val
		}
	}
}

// The members readStrings looks for, lower case, in the order of its
// destinations.
var (
	pageNames     = [...]string{"url", "path", "referrer", "title", "search"}
	campaignNames = [...]string{"source", "medium", "name", "term", "content"}
	libraryNames  = [...]string{"name", "version"}
)

// readPage reads context.page or a page call's properties.
func readPage(raw []byte, p *pageProps) {
	readStrings(raw, pageNames[:], &p.URL, &p.Path, &p.Referrer, &p.Title, &p.Search)
}

// readStrings sets dst[i] from the string member of the object raw named
// names[i]; members of other types are skipped.
func readStrings(raw []byte, names []string, dst ...*string) {
	it, ok := newObjIter(raw)
	if !ok {
		return
	}
	for {
		m, ok := it.next()
		if !ok {
			return
		}
		for i, name := range names {
			if m.is(name) {
				_ = stringField(dst[i], "", m.val)
				break
			}
		}
	}
}

// enrich fills the derived columns. Malformed optional fields are ignored:
// enrichment never refuses an event.
func (c *Collector) enrich(ev *herd.Event, info *reqInfo) {
	var ctx eventContext
	if len(ev.Context) > 0 {
		readContext(ev.Context, &ctx)
	}
	e := &ev.Enrichment
	e.URL, e.Path, e.Referrer, e.Title, e.Search = ctx.Page.URL, ctx.Page.Path, ctx.Page.Referrer, ctx.Page.Title, ctx.Page.Search
	if ev.Type == herd.TypePage && len(ev.Properties) > 0 {
		var p pageProps
		readPage(ev.Properties, &p)
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
	if e.IP == info.ip {
		// The request's own address: cleaned once for all its events.
		if !info.ipCleaned {
			info.ipClean, info.ipCleaned = c.cleanIP(info.ip, anonymize), true
		}
		e.IP = info.ipClean
	} else {
		e.IP = c.cleanIP(e.IP, anonymize)
	}
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
