// Package web holds the console's web app, built from src/ by esbuild into
// dist/ (committed, so go build needs no Node.js): index.html, app.js, app.css.
package web

import (
	"embed"
	"io/fs"
)

// FS is the built app as embedded, under the directory "dist".
//
//go:embed dist/index.html dist/app.js dist/app.css
var FS embed.FS

// Dist is FS rooted at dist/: "index.html", "app.js", "app.css", ready for
// http.FileServerFS or http.FS.
var Dist fs.FS = mustSub(FS, "dist")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // dir is a constant that go:embed has already checked
	}
	return sub
}
