package ha

import (
	"errors"
	"fmt"
)

// Kind classifies an error for the caller: the API maps kinds to HTTP status
// codes in one table (api.statusOf), the CLI to exit codes.
type Kind int

// Error kinds.
const (
	KindInternal     Kind = iota // a bug or an unexpected failure
	KindInvalid                  // the request is malformed
	KindNotFound                 // it names something that does not exist
	KindConflict                 // refused in the cluster's current state
	KindUnavailable              // the store or a node cannot be reached now
	KindUnauthorized             // missing or wrong credentials
	KindForbidden                // not allowed by the configuration
)

// Error is an error with a kind and a message for people that says what to do.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // cause, if any
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of kind k.
func Errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error of kind k with cause err.
func Wrap(k Kind, err error, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...), Err: err}
}

// KindOf returns the kind of err (KindInternal if it has none).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}
