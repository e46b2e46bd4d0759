package writer

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// contentCodes are the SQLSTATEs that Postgres raises because of a value an
// event carries, whatever the schema: a string or JSON text it cannot hold
// or parse, a time or number out of its range, a JSON document too large or
// too deep. Only these make the writer record an event in herd.rejects.
// Every other error (a partition missing, a constraint or column an
// operator added, a privilege, the connection, the disk) says nothing about
// the event: retrying the same rows later can succeed, so they are retried,
// never rejected.
var contentCodes = map[string]bool{
	"22P02": true, // invalid_text_representation: bad JSON, bad number
	"22P03": true, // invalid_binary_representation
	"22P05": true, // untranslatable_character: \u0000 in JSON
	"22021": true, // character_not_in_repertoire: invalid UTF-8
	"22007": true, // invalid_datetime_format
	"22008": true, // datetime_field_overflow
	"22003": true, // numeric_value_out_of_range
	"22030": true, // duplicate_json_object_key_value
	"22032": true, // invalid_json_text
	"54000": true, // program_limit_exceeded: value too large for jsonb or text (not an index row: isIndexRowError)
	"54001": true, // statement_too_complex: JSON nested too deep
}

// isContentError reports whether Postgres refused a value of the rows
// themselves: retrying the same rows would fail the same way, whatever an
// operator does, so the offending event is isolated and rejected.
func isContentError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && contentCodes[pe.Code] && !isIndexRowError(pe)
}

// isIndexRowError reports whether a program_limit_exceeded error is about an
// index entry ("index row size 3544 exceeds btree version 4 maximum 2704",
// "index row requires 9000 bytes"): herd's own indexes hold no value a
// client chooses the size of, so the index is one an operator added, and
// dropping it (or indexing a hash) lets the same events in.
func isIndexRowError(pe *pgconn.PgError) bool {
	return pe.Code == "54000" && strings.Contains(pe.Message, "index row")
}

// operatorError is a value error that herd's own columns do not raise: an
// index, constraint or trigger added to herd.events by hand refuses the row.
// The event is kept in the stream and retried, not rejected.
type operatorError struct{ err error }

func (e *operatorError) Error() string {
	return "refused by something added to herd.events by hand (herd's own columns take the row): " + e.err.Error()
}

// isPartitionError reports whether a row found no partition of herd.events
// (one was dropped by hand, or the cache of known partitions is stale).
func isPartitionError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23514" && strings.Contains(pe.Message, "no partition")
}

// Failure reasons, the label of herd_writer_batch_failures_total.
const (
	reasonPartition  = "partition"  // no partition for a row: recreated, retried
	reasonConstraint = "constraint" // a constraint or index herd did not create (NOT NULL, unique, check, foreign key, an index too narrow for a value)
	reasonSchema     = "schema"     // a table, column, type or privilege is not as herd expects
	reasonData       = "data"       // a data exception not caused by the event (a column type changed by hand)
	reasonConnection = "connection" // connection lost or refused
	reasonResources  = "resources"  // disk full, out of memory, too many connections
	reasonShutdown   = "shutdown"   // server shutting down, statement canceled
	reasonConflict   = "conflict"   // serialization failure, deadlock
	reasonOther      = "other"
)

// failureReason names the kind of a write failure that is not the event's
// fault, for the metric and for the hint in the log.
func failureReason(err error) string {
	if isPartitionError(err) {
		return reasonPartition
	}
	var oe *operatorError
	if errors.As(err, &oe) {
		return reasonConstraint
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		var ce *pgconn.ConnectError
		switch {
		case errors.As(err, &ce), pgconn.SafeToRetry(err), errors.Is(err, context.DeadlineExceeded):
			return reasonConnection
		}
		return reasonOther
	}
	if isIndexRowError(pe) {
		return reasonConstraint
	}
	switch pe.Code[:2] {
	case "23":
		return reasonConstraint
	case "42":
		return reasonSchema
	case "22":
		return reasonData
	case "08":
		return reasonConnection
	case "53":
		return reasonResources
	case "57":
		return reasonShutdown
	case "40":
		return reasonConflict
	}
	return reasonOther
}

// failureHint says what an operator should do about a failure of that
// kind. The events stay in the stream in every case.
func failureHint(reason string) string {
	switch reason {
	case reasonPartition:
		return "a partition of herd.events is missing (dropped by hand?); the writer recreates it and retries"
	case reasonConstraint:
		return "herd.events (or a table herd writes) has a constraint herd does not satisfy, such as a NOT NULL column without a default, a unique index, a CHECK or a foreign key added by hand, or an index on a column whose values can be too large for an index entry (index on md5(col) instead); drop or relax it and the writer catches up"
	case reasonSchema:
		return "a table, column or privilege herd needs is missing or changed; restore it (compare with the migrations in schemas/) and the writer catches up"
	case reasonData:
		return "Postgres refused a value that herd's own columns accept; was a column type of herd.events changed by hand? restore it and the writer catches up"
	case reasonResources:
		return "Postgres is out of a resource (disk, memory, connections); free it and the writer catches up"
	}
	return "check that Postgres is up and reachable; the writer retries"
}

// persistent reports whether a failure of that kind needs an operator:
// retrying alone will not fix it.
func persistent(reason string) bool {
	switch reason {
	case reasonConstraint, reasonSchema, reasonData, reasonResources, reasonOther:
		return true
	}
	return false
}
