package enrich

import (
	"strings"

	"github.com/mssola/useragent"
)

// Device types stored in device_type.
const (
	DeviceDesktop = "desktop"
	DeviceMobile  = "mobile"
	DeviceTablet  = "tablet"
	DeviceBot     = "bot"
)

// Bot reasons stored in bot_reason.
const (
	BotCrawler  = "crawler"  // search engines, link previews, SEO and AI crawlers
	BotMonitor  = "monitor"  // uptime and performance checkers
	BotHeadless = "headless" // automated browsers
	BotTool     = "tool"     // HTTP libraries and command-line clients
	BotEmptyUA  = "empty_ua" // set by the collector: a browser always sends one
	BotPattern  = "pattern"  // a request no browser produces
)

// uaInfo is what a user agent string says, independent of the event.
type uaInfo struct {
	browser, version, os, osVersion, device string
	botReason                               string
	// browserLike: the agent claims to be a web browser (and is not a known
	// bot), so the event-level checks for browser behaviour apply.
	browserLike bool
}

// maxCachedUA bounds the key size: legitimate agents are a few hundred
// bytes; longer ones are parsed every time rather than filling the cache.
const maxCachedUA = 512

func (e *Enricher) userAgent(ua string) uaInfo {
	if len(ua) <= maxCachedUA {
		if info, ok := e.uas.get(ua); ok {
			return info
		}
	}
	info := parseUA(ua)
	if len(ua) <= maxCachedUA {
		e.uas.put(ua, info)
	}
	return info
}

// Markers matched against the lower-cased agent. Order matters only for the
// reason reported: the first list that matches wins.
var (
	headlessMarkers = []string{"headlesschrome", "headless", "phantomjs", "puppeteer", "playwright", "selenium",
		"webdriver", "slimerjs", "htmlunit", "zombie.js", "nightmarejs", "splash"}
	monitorMarkers = []string{"uptimerobot", "pingdom", "statuscake", "site24x7", "newrelicpinger", "datadog",
		"gtmetrix", "betteruptime", "better uptime", "checkly", "uptime-kuma", "uptime kuma", "nagios", "zabbix",
		"freshping", "hetrixtools", "chrome-lighthouse", "lighthouse", "pagespeed", "dareboost", "catchpoint",
		"synthetic", "monitoring", "healthcheck", "kube-probe", "elb-healthchecker"}
	crawlerMarkers = []string{"googlebot", "bingbot", "bingpreview", "adsbot", "mediapartners-google",
		"google-inspectiontool", "googleother", "feedfetcher", "apis-google", "slurp", "duckduckbot", "baiduspider",
		"yandex", "sogou", "exabot", "applebot", "facebookexternalhit", "facebookcatalog", "meta-externalagent",
		"ia_archiver", "archive.org", "semrush", "ahrefs", "mj12bot", "dotbot", "petalbot", "gptbot", "chatgpt-user",
		"oai-searchbot", "ccbot", "claudebot", "claude-web", "anthropic-ai", "perplexitybot", "bytespider", "amazonbot",
		"twitterbot", "linkedinbot", "slackbot", "discordbot", "telegrambot", "whatsapp", "skypeuripreview",
		"embedly", "quora link preview", "pinterestbot", "redditbot", "crawler", "crawl", "spider", "scraper",
		"/bot", "bot/", "bot-", "bot;", "bot)", "bot ", "robot", "+http"}
	toolPrefixes = []string{"curl/", "wget/", "python-requests", "python-urllib", "python-httpx", "python/",
		"aiohttp", "go-http-client", "java/", "apache-httpclient", "libwww-perl", "lwp::", "httpie", "postmanruntime",
		"insomnia", "axios/", "node-fetch", "undici", "node/", "got ", "ruby", "php/", "guzzlehttp", "scrapy",
		"http_request", "winhttp", "powershell", "rest-client", "okhttp/3", "reqwest", "hackney", "faraday",
		"restsharp", "http.rb", "fasthttp", "colly", "heritrix", "wordpress/", "mechanize"}
)

// parseUA classifies an agent. Parsing is the expensive step of enrichment
// (regular expressions inside the parser), which is why results are cached.
func parseUA(ua string) uaInfo {
	var info uaInfo
	lower := strings.ToLower(ua)
	p := useragent.New(ua)
	info.browser, info.version = p.Browser()
	os := p.OSInfo()
	info.os, info.osVersion = normalizeOS(os.Name, p.Platform(), lower), os.Version

	switch {
	case containsAny(lower, headlessMarkers):
		info.botReason = BotHeadless
	case containsAny(lower, monitorMarkers):
		info.botReason = BotMonitor
	case isTool(lower):
		info.botReason = BotTool
	case p.Bot(), containsAny(strings.ReplaceAll(lower, "cubot", ""), crawlerMarkers):
		// "cubot" is a phone brand whose devices say "CUBOT X30 Build/...".
		info.botReason = BotCrawler
	}
	if info.botReason != "" {
		info.device = DeviceBot
		return info
	}
	if strings.HasPrefix(ua, "Mozilla/") && (info.browser == "" || info.browser == "Mozilla") && info.os == "" {
		// "Mozilla/5.0" and nothing a browser would add: a script pretending.
		info.botReason = BotPattern
		info.device = DeviceBot
		return info
	}
	switch {
	case strings.Contains(lower, "ipad"), strings.Contains(lower, "tablet"), strings.Contains(lower, "kindle"),
		strings.Contains(lower, "silk/"), strings.Contains(lower, "playbook"),
		strings.Contains(lower, "android") && !strings.Contains(lower, "mobile"):
		// Android tablets are the Android agents without the Mobile token.
		info.device = DeviceTablet
	case p.Mobile(), strings.Contains(lower, "iphone"), strings.Contains(lower, "ipod"),
		strings.Contains(lower, "android"), strings.Contains(lower, "windows phone"):
		info.device = DeviceMobile
	case info.os != "" || strings.HasPrefix(ua, "Mozilla/"):
		info.device = DeviceDesktop
	}
	info.browserLike = strings.HasPrefix(ua, "Mozilla/") && info.browser != "" && info.browser != "Mozilla"
	return info
}

func normalizeOS(name, platform, lower string) string {
	switch {
	case name == "":
		return ""
	case platform == "iPad":
		return "iPadOS"
	case name == "iPhone OS" || platform == "iPhone" || platform == "iPod" || platform == "iPod touch":
		return "iOS"
	case name == "Mac OS X":
		return "macOS"
	case strings.Contains(lower, "cros"):
		return "Chrome OS"
	case name == "Windows" || strings.HasPrefix(name, "Windows"):
		return "Windows"
	}
	return name
}

func containsAny(s string, subs []string) bool {
	for _, m := range subs {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

func isTool(lower string) bool {
	for _, p := range toolPrefixes {
		if strings.HasPrefix(lower, p) {
			return true
		}
	}
	return false
}
