// Package fault classifies errors for the edge of the service.
//
// Domain packages decide, where an operation fails, what kind of failure it
// is: bad input, something missing, a conflict, a refusal. They say so by
// returning (or wrapping) a *fault.Error. The HTTP layer maps each Kind to a
// status in one table and never guesses from error text. Anything that is
// not a *fault.Error is internal: its detail goes to the server log only.
package fault

import (
	"errors"
	"fmt"
)

// Kind is the class of a failure. It decides the HTTP status.
type Kind string

// The kinds of failure the domain can report.
const (
	Invalid         Kind = "invalid"         // the request is malformed or names something unsupported
	NotFound        Kind = "notfound"        // the object does not exist
	Conflict        Kind = "conflict"        // the object's state forbids the change
	Forbidden       Kind = "forbidden"       // the caller or the object's policy refuses the operation
	Unauthenticated Kind = "unauthenticated" // no valid credential
	TooLarge        Kind = "toolarge"        // the request body exceeds the limit
	Unavailable     Kind = "unavailable"     // the service cannot serve now; retry later
	Internal        Kind = "internal"        // a bug or an infrastructure failure
)

// Error is a failure with a kind, a stable code and a message that is safe to
// show the caller. Err, when set, is the cause; it is logged, never sent.
type Error struct {
	Kind Kind
	// Code is the stable machine-readable name of the failure, e.g.
	// "KeyNotFound". Empty means the default code of the kind.
	Code string
	// Msg is written for the caller; it never contains secrets or internals.
	Msg string
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same kind and code, so that
// sentinels declared with New match the errors derived from them by Wrapf.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && t.Code == e.Code && t.Code != ""
}

// New returns a sentinel error of kind k with code and public message msg.
func New(k Kind, code, msg string) *Error { return &Error{Kind: k, Code: code, Msg: msg} }

// Errorf returns an error of kind k with a formatted public message.
func Errorf(k Kind, code, format string, args ...any) *Error {
	return &Error{Kind: k, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Invalidf is shorthand for a bad-input error with the default code.
func Invalidf(format string, args ...any) *Error {
	return Errorf(Invalid, "", format, args...)
}

// With returns a copy of the sentinel e with a more specific public message.
// The copy still matches e under errors.Is.
func (e *Error) With(format string, args ...any) *Error {
	c := *e
	c.Msg = fmt.Sprintf(format, args...)
	return &c
}

// KindOf returns the kind of err, or Internal when err carries none.
func KindOf(err error) Kind {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Kind
	}
	return Internal
}

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var fe *Error
	ok := errors.As(err, &fe)
	return fe, ok
}
