package collector

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/valyala/fasthttp"
)

// TestBrotliBest: static files compressed once at start decode to the
// file, and brotli's best level beats gzip's on a script.
func TestBrotliBest(t *testing.T) {
	src := []byte(strings.Repeat("function track(e){return send('/v1/t',{event:e,ts:Date.now()})}\n", 400))
	br := brotliBest(src)
	got, err := io.ReadAll(brotli.NewReader(bytes.NewReader(br)))
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("decoded %d bytes (%v), want the %d of the file", len(got), err, len(src))
	}
	if gz := fasthttp.AppendGzipBytesLevel(nil, src, fasthttp.CompressBestCompression); len(br) >= len(gz) {
		t.Errorf("brotli %d bytes, gzip %d", len(br), len(gz))
	}
}
