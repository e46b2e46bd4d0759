package enrich

import (
	"strings"

	"github.com/herdhq/herd"
)

// Referrer classes stored in referrer_class. referral (another site) and
// campaign (tagged with utm_* but neither referrer nor a known medium) are
// there so that "direct" means what it says: nothing tells where the
// visitor came from.
const (
	ClassPaid     = "paid"
	ClassEmail    = "email"
	ClassInternal = "internal"
	ClassSearch   = "search"
	ClassSocial   = "social"
	ClassReferral = "referral"
	ClassCampaign = "campaign"
	ClassDirect   = "direct"
)

// Registrable domains, matched against the referrer host and each of its
// parent domains.
var (
	searchDomains = set("bing.com", "duckduckgo.com", "search.yahoo.com", "yahoo.co.jp", "baidu.com", "ecosia.org",
		"search.brave.com", "startpage.com", "qwant.com", "naver.com", "seznam.cz", "ask.com", "search.aol.com",
		"so.com", "sogou.com", "kagi.com", "you.com", "perplexity.ai")
	socialDomains = set("facebook.com", "fb.com", "fb.me", "instagram.com", "t.co", "twitter.com", "x.com",
		"linkedin.com", "lnkd.in", "reddit.com", "news.ycombinator.com", "youtube.com", "youtu.be", "pinterest.com",
		"tiktok.com", "threads.net", "bsky.app", "vk.com", "weibo.com", "quora.com", "tumblr.com", "discord.com",
		"t.me", "telegram.org", "whatsapp.com", "snapchat.com", "medium.com", "producthunt.com", "mastodon.social")
	emailDomains = set("mail.google.com", "outlook.live.com", "outlook.office.com", "outlook.office365.com",
		"mail.yahoo.com", "mail.proton.me", "mail.aol.com", "mail.yandex.ru", "mail.zoho.com", "fastmail.com",
		"mail.yandex.com", "webmail.gmx.net", "icloud.com")
	// search engines present under many country domains: google.fr, yandex.ru.
	searchPrefixes = []string{"google.", "yandex.", "yahoo."}

	paidMedia   = set("cpc", "ppc", "cpm", "cpv", "cpa", "paid", "paidsearch", "paid_search", "paid-search", "paidsocial", "paid_social", "paid-social", "display", "banner", "ads", "ad", "retargeting", "affiliate")
	emailMedia  = set("email", "e-mail", "e_mail", "newsletter", "mail")
	socialMedia = set("social", "social-network", "social_network", "social-media", "social_media", "sm")
	searchMedia = set("organic", "search")
)

func set(xs ...string) map[string]struct{} {
	m := make(map[string]struct{}, len(xs))
	for _, x := range xs {
		m[x] = struct{}{}
	}
	return m
}

// classify fills the referrer host and class from what the event already
// carries: referrer and page URL, utm_* and click ids.
func classify(e *herd.Enrichment) {
	ref := hostOf(e.Referrer)
	e.ReferrerHost = ref
	medium := strings.ToLower(e.UTMMedium)
	_, paid := paidMedia[medium]
	_, emailM := emailMedia[medium]
	site := bare(ref)
	switch {
	case e.GCLID != "" || paid || strings.HasPrefix(medium, "paid"):
		e.ReferrerClass = ClassPaid
	case emailM || inDomains(site, emailDomains) || strings.HasPrefix(site, "mail.") || strings.HasPrefix(site, "webmail."):
		e.ReferrerClass = ClassEmail
	case ref != "" && sameSite(site, bare(hostOf(e.URL))):
		e.ReferrerClass = ClassInternal
	case ref != "" && isSearch(site):
		e.ReferrerClass = ClassSearch
	case ref != "" && inDomains(site, socialDomains), e.FBCLID != "" && ref == "":
		// fbclid is added to every outbound Facebook link, ads or not.
		e.ReferrerClass = ClassSocial
	case inSet(medium, socialMedia):
		e.ReferrerClass = ClassSocial
	case inSet(medium, searchMedia):
		e.ReferrerClass = ClassSearch
	case ref != "":
		e.ReferrerClass = ClassReferral
	case e.UTMSource != "" || e.UTMMedium != "" || e.UTMCampaign != "":
		e.ReferrerClass = ClassCampaign
	default:
		e.ReferrerClass = ClassDirect
	}
}

func inSet(s string, m map[string]struct{}) bool { _, ok := m[s]; return ok }

// hostOf returns the lower-cased host of an absolute URL, without port or
// credentials, or "" when s is not one. It slices s rather than parsing it
// with net/url: referrers are on most events and only the host is needed.
func hostOf(s string) string {
	i := strings.Index(s, "://")
	if i <= 0 {
		return ""
	}
	h := s[i+3:]
	if j := strings.IndexAny(h, "/?#"); j >= 0 {
		h = h[:j]
	}
	if j := strings.LastIndexByte(h, '@'); j >= 0 {
		h = h[j+1:]
	}
	if strings.HasPrefix(h, "[") {
		if j := strings.IndexByte(h, ']'); j > 0 {
			return strings.ToLower(h[1:j])
		}
		return ""
	}
	if j := strings.LastIndexByte(h, ':'); j >= 0 {
		h = h[:j]
	}
	h = strings.TrimSuffix(h, ".")
	for k := 0; k < len(h); k++ {
		if c := h[k]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// bare drops the "www." and "m." prefixes that do not change the site.
func bare(h string) string {
	for _, p := range []string{"www.", "m.", "mobile."} {
		h = strings.TrimPrefix(h, p)
	}
	return h
}

func sameSite(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	return a == b || strings.HasSuffix(a, "."+b) || strings.HasSuffix(b, "."+a)
}

// inDomains reports whether h or one of its parent domains is in m.
func inDomains(h string, m map[string]struct{}) bool {
	for h != "" {
		if _, ok := m[h]; ok {
			return true
		}
		i := strings.IndexByte(h, '.')
		if i < 0 {
			return false
		}
		h = h[i+1:]
	}
	return false
}

func isSearch(h string) bool {
	if inDomains(h, searchDomains) {
		return true
	}
	for _, p := range searchPrefixes {
		if strings.HasPrefix(h, p) {
			return true
		}
	}
	return false
}
