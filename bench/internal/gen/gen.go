// Package gen makes the benchmark's events: the JSON bodies the load
// generator sends and the equivalent stream messages and rows, built the same
// way every time so that every figure of a run measures the same data.
//
// The events look like what herd's browser SDK sends from real visitors, so
// that the collector's enrichment does the work it does in production: a
// browser user agent drawn from a mix of browsers, versions and devices (and
// a few crawlers), a page URL that often carries utm_* parameters or a click
// id, and a referrer from a search engine, a social site, another site, the
// same site or none. Event seq's shape is a fixed function of seq.
package gen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/collector/enrich"
)

// UserAgent is the most common browser among the generated events.
const UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"

// Users is how many distinct visitors (user, anonymous and session ids) the
// events spread over.
const Users = 1000

// Library is the SDK the events claim to come from.
const (
	LibraryName    = "herd-js"
	LibraryVersion = "1.0.0"
	Host           = "https://shop.example.com"
)

// uaFamily is a browser's user agent with its version left to fill; weight
// is how many versions of it are in the mix, so its share.
type uaFamily struct {
	format   string // %[1]d: major version; %[2]d: minor
	versions []int
}

func versions(from, n int) []int {
	v := make([]int, n)
	for i := range v {
		v[i] = from + i
	}
	return v
}

var uaFamilies = []uaFamily{
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Safari/537.36", versions(112, 16)},
	{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Safari/537.36", versions(116, 10)},
	{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Safari/537.36", versions(120, 6)},
	{"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Mobile Safari/537.36", versions(112, 16)},
	{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_%[2]d like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.%[2]d Mobile/15E148 Safari/604.1", versions(0, 7)},
	{"Mozilla/5.0 (iPhone; CPU iPhone OS 16_%[2]d like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.%[2]d Mobile/15E148 Safari/604.1", versions(0, 7)},
	{"Mozilla/5.0 (iPad; CPU OS 17_%[2]d like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.%[2]d Mobile/15E148 Safari/604.1", versions(0, 4)},
	{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.%[2]d Safari/605.1.15", versions(0, 6)},
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Safari/537.36 Edg/%[1]d.0.0.0", versions(118, 9)},
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:%[1]d.0) Gecko/20100101 Firefox/%[1]d.0", versions(115, 13)},
	{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:%[1]d.0) Gecko/20100101 Firefox/%[1]d.0", versions(120, 8)},
	{"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:%[1]d.0) Gecko/20100101 Firefox/%[1]d.0", versions(120, 8)},
	{"Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/%[1]d.0 Chrome/115.0.0.0 Mobile Safari/537.36", versions(22, 4)},
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Safari/537.36 OPR/%[1]d.0.0.0", versions(106, 4)},
	{"Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.6478.71 Mobile Safari/537.36", versions(120, 7)},
	// A few crawlers and a headless browser: the bot checks run on every
	// event, and these are what they find.
	{"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", versions(0, 1)},
	{"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", versions(0, 1)},
	{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/%[1]d.0.0.0 Safari/537.36", versions(124, 1)},
}

// page is a page of the shop with the query string it was reached with.
type page struct {
	path, title string
	query       string // without "?"; may be empty
}

var pages = func() []page {
	paths := []struct{ path, title string }{
		{"/", "Shop – Home"},
		{"/p/sku-1234", "A book – Shop"},
		{"/p/sku-2077", "Headphones – Shop"},
		{"/p/sku-3190", "Coffee grinder – Shop"},
		{"/c/books", "Books – Shop"},
		{"/c/audio", "Audio – Shop"},
		{"/search", "Search – Shop"},
		{"/cart", "Your cart – Shop"},
		{"/checkout/shipping", "Checkout – Shop"},
		{"/blog/how-to-brew", "How to brew – Shop blog"},
	}
	queries := []string{
		"", "", "", "",
		"utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale&utm_content=hero",
		"utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=buy%20books&gclid=EAIaIQobChMI8pLx",
		"utm_source=facebook&utm_medium=social&utm_campaign=launch&fbclid=IwAR2xQ7",
		"utm_source=partner-blog&utm_medium=referral",
		"ref=home&variant=b",
	}
	var ps []page
	for _, p := range paths {
		for _, q := range queries {
			if p.path == "/search" && q == "" {
				q = "q=coffee+grinder"
			}
			ps = append(ps, page{path: p.path, title: p.title, query: q})
		}
	}
	return ps
}()

var referrers = []string{
	"", "", "",
	"https://www.google.com/",
	"https://www.google.de/",
	"https://www.bing.com/search?q=shop",
	"https://duckduckgo.com/",
	"https://t.co/x8Jd2kQ",
	"https://www.facebook.com/",
	"https://www.reddit.com/r/books/comments/1abc/",
	"https://blog.example.org/best-of-2024",
	"https://shop.example.com/c/books",
	"https://shop.example.com/",
	"https://mail.google.com/",
}

var userAgents = func() []string {
	var uas []string
	for _, f := range uaFamilies {
		for _, v := range f.versions {
			s := f.format
			switch {
			case strings.Contains(s, "%[1]d") && strings.Contains(s, "%[2]d"):
				s = fmt.Sprintf(s, v, v)
			case strings.Contains(s, "%[1]d"):
				s = fmt.Sprintf(s, v)
			case strings.Contains(s, "%[2]d"):
				s = strings.ReplaceAll(s, "%[2]d", strconv.Itoa(v))
			}
			uas = append(uas, s)
		}
	}
	return uas
}()

// UserAgents is how many distinct user agents the events carry.
func UserAgents() int { return len(userAgents) }

// variant is everything about event seq's shape but its ids, precomputed as
// JSON fragments so that the load generator spends little on building bodies.
type variant struct {
	page, ref, ua int
	isPage        bool
}

// mix scatters consecutive numbers (splitmix64's finalizer) so that the
// user agent, page and referrer of neighbouring events are not correlated.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func variantOf(seq int64) variant {
	h := mix(uint64(seq))
	return variant{
		ua:     int(h % uint64(len(userAgents))),
		page:   int((h >> 16) % uint64(len(pages))),
		ref:    int((h >> 32) % uint64(len(referrers))),
		isPage: (h>>48)%4 == 0, // one event in four is a page view
	}
}

// fragments are the JSON pieces of every page × referrer: the context's
// page and campaign members, and a page call's properties.
type fragment struct {
	pageCtx   string // `"page":{...}` and, with utm_*, `,"campaign":{...}`
	pageProps string // a page call's properties object
	title     string
}

var fragments = func() [][]fragment {
	fs := make([][]fragment, len(pages))
	for i, p := range pages {
		fs[i] = make([]fragment, len(referrers))
		for j, ref := range referrers {
			u, search := Host+p.path, ""
			if p.query != "" {
				search = "?" + p.query
				u += search
			}
			props := map[string]string{"path": p.path, "referrer": ref, "search": search, "title": p.title, "url": u}
			pj := marshal(props)
			ctx := `"page":` + string(pj)
			if c := campaign(p.query); c != "" {
				ctx += `,"campaign":` + c
			}
			props["name"] = p.title
			pp := marshal(props)
			fs[i][j] = fragment{pageCtx: ctx, pageProps: string(pp), title: p.title}
		}
	}
	return fs
}()

// campaign is context.campaign as herd's SDK builds it from the query
// string (utm_campaign becomes name), or "" without utm_* parameters.
func campaign(query string) string {
	q, _ := url.ParseQuery(query)
	c := map[string]string{}
	for _, k := range []string{"source", "medium", "term", "content"} {
		if v := q.Get("utm_" + k); v != "" {
			c[k] = v
		}
	}
	if v := q.Get("utm_campaign"); v != "" {
		c["name"] = v
	}
	if len(c) == 0 {
		return ""
	}
	return string(marshal(c))
}

// marshal is JSON as a browser's JSON.stringify writes it: "&" and "<" as
// they are.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

var uaFragments = func() []string {
	fs := make([]string, len(userAgents))
	for i, ua := range userAgents {
		fs[i] = `"userAgent":` + string(marshal(ua))
	}
	return fs
}()

const (
	trackHead   = `{"type":"track","event":"Product Viewed","messageId":"`
	pageHead    = `{"type":"page","name":`
	propsTrack  = `{"product_id":"sku-1234","price":19.99,"currency":"EUR","category":"books"}`
	contextTail = `,"locale":"en-GB","screen":{"width":1920,"height":1080,"density":1},"timezone":"Europe/Berlin","sessionId":"sess-`
)

// MessageID is the id of event seq in a run whose ids start with prefix.
func MessageID(prefix string, seq int64) string {
	return prefix + "-" + strconv.FormatInt(seq, 10)
}

// appendContext appends event seq's context object.
func appendContext(b []byte, v variant, user int64) []byte {
	f := &fragments[v.page][v.ref]
	b = append(b, `{"library":{"name":"`+LibraryName+`","version":"`+LibraryVersion+`"},`...)
	b = append(b, f.pageCtx...)
	b = append(b, ',')
	b = append(b, uaFragments[v.ua]...)
	b = append(b, contextTail...)
	b = strconv.AppendInt(b, user, 10)
	return append(b, `"}`...)
}

// AppendEvent appends the JSON of event seq to b.
func AppendEvent(b []byte, prefix string, seq int64) []byte {
	v := variantOf(seq)
	f := &fragments[v.page][v.ref]
	user := seq % Users
	if v.isPage {
		b = append(b, pageHead...)
		b = strconv.AppendQuote(b, f.title)
		b = append(b, `,"messageId":"`...)
	} else {
		b = append(b, trackHead...)
	}
	b = append(b, prefix...)
	b = append(b, '-')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `","anonymousId":"anon-`...)
	b = strconv.AppendInt(b, user, 10)
	if user%3 != 0 { // two visitors in three are signed in
		b = append(b, `","userId":"user-`...)
		b = strconv.AppendInt(b, user, 10)
	}
	b = append(b, `","properties":`...)
	if v.isPage {
		b = append(b, f.pageProps...)
	} else {
		b = append(b, propsTrack...)
	}
	b = append(b, `,"context":`...)
	b = appendContext(b, v, user)
	return append(b, '}')
}

// AppendBatch appends a /v1/batch body holding events first..first+n-1.
func AppendBatch(b []byte, prefix string, first int64, n int) []byte {
	b = append(b, `{"batch":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendEvent(b, prefix, first+int64(i))
	}
	return append(b, "]}"...)
}

// enricher fills the user agent and referrer columns of the events built
// here as the collector's would.
var enricher = func() *enrich.Enricher {
	e, err := enrich.New(enrich.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		panic(err)
	}
	return e
}()

// Event is event seq as the collector turns it into a stream message: the
// same columns filled, so that a backlog published straight to the stream
// and a raw COPY of these rows carry what an HTTP request would have.
func Event(sourceID int64, prefix string, seq int64, at time.Time) herd.Event {
	at = at.UTC()
	v := variantOf(seq)
	p := pages[v.page]
	user := seq % Users
	ev := herd.Event{
		MessageID:   MessageID(prefix, seq),
		SourceID:    sourceID,
		Type:        herd.TypeTrack,
		Event:       "Product Viewed",
		AnonymousID: "anon-" + strconv.FormatInt(user, 10),
		Timestamp:   at,
		ReceivedAt:  at,
		Context:     appendContext(nil, v, user),
		Properties:  []byte(propsTrack),
	}
	if user%3 != 0 {
		ev.UserID = "user-" + strconv.FormatInt(user, 10)
	}
	if v.isPage {
		ev.Type, ev.Event = herd.TypePage, p.title
		ev.Properties = []byte(fragments[v.page][v.ref].pageProps)
	}
	e := &ev.Enrichment
	e.URL, e.Path, e.Title, e.Referrer = Host+p.path, p.path, p.title, referrers[v.ref]
	if p.query != "" {
		e.URL += "?" + p.query
		e.Search = "?" + p.query
		q, _ := url.ParseQuery(p.query)
		e.UTMSource, e.UTMMedium, e.UTMCampaign = q.Get("utm_source"), q.Get("utm_medium"), q.Get("utm_campaign")
		e.UTMTerm, e.UTMContent = q.Get("utm_term"), q.Get("utm_content")
		e.GCLID, e.FBCLID = q.Get("gclid"), q.Get("fbclid")
	}
	e.IP, e.UserAgent = "127.0.0.1", userAgents[v.ua]
	e.SessionID = "sess-" + strconv.FormatInt(user, 10)
	e.LibraryName, e.LibraryVersion = LibraryName, LibraryVersion
	enricher.Enrich(&ev)
	return ev
}
