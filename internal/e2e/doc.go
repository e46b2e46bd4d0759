// Package e2e holds end-to-end tests of the event path: real HTTP requests
// against the collector, real JetStream, the writer and a real Postgres,
// checked by reading rows back.
package e2e
