// Package gen makes the benchmark's events: the JSON bodies the load
// generator sends and the equivalent stream messages and rows, built the same
// way every time so that every figure of a run measures the same data.
package gen

import (
	"strconv"
	"time"

	"github.com/herdhq/herd"
)

// UserAgent is the browser the generated events claim to come from.
const UserAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"

// The body of one event around its messageId and user: what analytics.js
// sends for a track call, minus the fields that only add bytes.
const (
	eventHead = `{"type":"track","event":"Product Viewed","messageId":"`
	eventUser = `","userId":"user-`
	eventTail = `","properties":{"product_id":"sku-1234","price":19.99,"currency":"EUR","category":"books"},` +
		`"context":{"library":{"name":"analytics.js","version":"5.2.0"},` +
		`"page":{"url":"https://shop.example.com/p/sku-1234?utm_source=news&utm_medium=email","path":"/p/sku-1234","title":"A book","referrer":"https://www.example.org/"},` +
		`"userAgent":"` + UserAgent + `","locale":"en-GB"}}`
)

// Users is how many distinct user ids the events spread over.
const Users = 1000

// MessageID is the id of event seq in a run whose ids start with prefix.
func MessageID(prefix string, seq int64) string {
	return prefix + "-" + strconv.FormatInt(seq, 10)
}

// AppendEvent appends the JSON of event seq to b.
func AppendEvent(b []byte, prefix string, seq int64) []byte {
	b = append(b, eventHead...)
	b = append(b, prefix...)
	b = append(b, '-')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, eventUser...)
	b = strconv.AppendInt(b, seq%Users, 10)
	b = append(b, eventTail...)
	return b
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

// Event is event seq as the collector turns it into a stream message: the
// same columns filled, so that a backlog published straight to the stream
// and a raw COPY of these rows carry what an HTTP request would have.
func Event(sourceID int64, prefix string, seq int64, at time.Time) herd.Event {
	at = at.UTC()
	return herd.Event{
		MessageID:  MessageID(prefix, seq),
		SourceID:   sourceID,
		Type:       herd.TypeTrack,
		Event:      "Product Viewed",
		UserID:     "user-" + strconv.FormatInt(seq%Users, 10),
		Timestamp:  at,
		ReceivedAt: at,
		Context: []byte(`{"library":{"name":"analytics.js","version":"5.2.0"},` +
			`"page":{"url":"https://shop.example.com/p/sku-1234?utm_source=news&utm_medium=email","path":"/p/sku-1234","title":"A book","referrer":"https://www.example.org/"},` +
			`"userAgent":"` + UserAgent + `","locale":"en-GB"}`),
		Properties: []byte(`{"product_id":"sku-1234","price":19.99,"currency":"EUR","category":"books"}`),
		Enrichment: herd.Enrichment{
			URL:            "https://shop.example.com/p/sku-1234?utm_source=news&utm_medium=email",
			Path:           "/p/sku-1234",
			Referrer:       "https://www.example.org/",
			Title:          "A book",
			Search:         "?utm_source=news&utm_medium=email",
			UTMSource:      "news",
			UTMMedium:      "email",
			IP:             "127.0.0.1",
			UserAgent:      UserAgent,
			LibraryName:    "analytics.js",
			LibraryVersion: "5.2.0",
		},
	}
}
