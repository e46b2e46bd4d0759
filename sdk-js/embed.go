// Package sdkjs holds herd's browser SDK, built from src/ by esbuild into
// dist/ (committed, so go build needs no Node.js), and the HTML around it:
// the copy-paste snippet and the demo page.
package sdkjs

import (
	_ "embed"
	"encoding/json"
	"strings"
)

// Script is the minified browser build (an IIFE defining window.herd), served
// by the collector at /sdk.js.
//
//go:embed dist/sdk.js
var Script []byte

// ESM is the ES module build for bundlers (export createHerd).
//
//go:embed dist/herd.esm.js
var ESM []byte

//go:embed dist/snippet.js
var snippetJS string

//go:embed demo.html
var demoHTML string

// Snippet returns the <script> element a site pastes into its pages: it
// defines window.herd as a queue of calls and loads sdk.js from apiHost,
// which replays them. apiHost is the collector's base URL, optionally with a
// path ("https://www.example.com/herd"); empty means the page's own origin.
func Snippet(writeKey, apiHost string) string {
	js := strings.NewReplacer(
		`"__HERD_WRITE_KEY__"`, jsString(writeKey),
		`"__HERD_API_HOST__"`, jsString(strings.TrimRight(apiHost, "/")),
	).Replace(strings.TrimSpace(snippetJS))
	return "<script>\n" + js + "\n</script>"
}

// DemoPage returns an HTML page that loads the snippet, sends a page view on
// open, and has a tagged button and a few single-page-app links to try.
func DemoPage(writeKey, apiHost string) []byte {
	return []byte(strings.Replace(demoHTML, "<!--HERD_SNIPPET-->", Snippet(writeKey, apiHost), 1))
}

// jsString quotes s as a JavaScript string literal that is also safe inside
// an HTML <script> element: json.Marshal escapes <, > and &, so "</script>"
// cannot end the element, and U+2028/U+2029.
func jsString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}
