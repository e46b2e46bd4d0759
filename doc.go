// Package herd holds the domain of the event pipeline: the Event that travels
// from collector to warehouse, sources and their write keys, and error kinds.
//
// It imports only the standard library; every technology (HTTP, JetStream,
// Postgres) lives in a package of its own that speaks in these types.
package herd
