package herd

import (
	"errors"
	"fmt"
)

// Error kinds. Adapters map them onto their own vocabulary (HTTP statuses,
// exit codes).
var (
	ErrInvalid      = errors.New("invalid")      // malformed input: 400
	ErrUnauthorized = errors.New("unauthorized") // missing or unknown write key: 401
	ErrTooLarge     = errors.New("too large")    // over a size limit: 413
	ErrRateLimited  = errors.New("rate limited") // 429
	ErrUnavailable  = errors.New("unavailable")  // cannot make durable now: 503
	ErrNotFound     = errors.New("not found")
)

// Errorf returns an error of the given kind with a message for the client.
// errors.Is(err, kind) holds, and Error() is the message alone.
func Errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }
