package console

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

// static serves the single-page app from memory: index.html for the
// app's page paths, the assets by name, each with an ETag and no-cache.
type static struct {
	files map[string]asset
}

type asset struct {
	body  []byte
	etag  string
	ctype string
}

func newStatic(fsys fs.FS) (*static, error) {
	st := &static{files: map[string]asset{}}
	if fsys == nil {
		return nil, errors.New("console: no web app to serve")
	}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		st.files["/"+p] = asset{body: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, ctype: ct}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, ok := st.files["/index.html"]; !ok {
		return nil, errors.New("console: the web app has no index.html")
	}
	return st, nil
}

// pagePath reports the paths the app routes itself.
func pagePath(p string) bool {
	switch p {
	case "/", "/sql", "/queries", "/login", "/ops":
		return true
	}
	return strings.HasPrefix(p, "/ops/") || strings.HasPrefix(p, "/queries/")
}

func (st *static) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if pagePath(p) {
		p = "/index.html"
	}
	a, ok := st.files[p]
	if !ok || strings.HasSuffix(p, ".sha256") {
		writeError(w, http.StatusNotFound, "no such page: "+r.URL.Path)
		return
	}
	st.write(w, r, a)
}

func (st *static) index(w http.ResponseWriter, r *http.Request) {
	st.write(w, r, st.files["/index.html"])
}

func (st *static) write(w http.ResponseWriter, r *http.Request, a asset) {
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(a.body)
}
