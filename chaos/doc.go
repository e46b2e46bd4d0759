// Package chaos runs herd's components as separate processes on 127.0.0.1
// and breaks them while a client sends events with known messageIds: writer
// and collector SIGKILLs, a Postgres restart, a NATS restart, the loss of one
// node of a 3-node JetStream cluster and a full stream. After each fault it
// checks that every acknowledged event is stored exactly once.
//
// The package holds tests only: TestChaosShort runs in `go test ./...`
// (skipped under -short) and TestChaosFull, built with -tags chaos, is the
// longer run behind `make chaos`. chaos/cmd/natsnode is the NATS server the
// suite starts, built from the nats-server module so that no system binary
// is needed.
package chaos
