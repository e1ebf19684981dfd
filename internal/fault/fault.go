// Package fault classifies errors for the edge of the service.
//
// Domain packages decide, where an operation fails, what kind of failure it
// is: bad input, something missing, a conflict, a refusal. They say so by
// returning (or wrapping) a *fault.Error. The HTTP layer maps each Kind to a
// status in one table and never guesses from error text. Anything that is
// not a *fault.Error is internal: its detail goes to the server log only.
//
// # Sentinels
//
// A sentinel is a package-level *Error made with New, documented with when
// it is returned. Callers test for it with errors.Is, which is true only
// for that sentinel and for the errors derived from it: sentinel.With(...),
// Wrap(sentinel, cause), their own derivations, and anything that wraps one
// of those with %w. A derived error keeps a pointer to its parent, and Is
// walks those pointers. Two sentinels never match each other, even when
// they share a kind and a code (several are "NotFound"/"ResourceNotFound"):
// the code decides what the client reads, not what the server concludes.
//
// # Public message and cause
//
// Msg is written for the caller. Wrap attaches an internal cause (a network
// error, a parse failure of a remote document, a store error) that the
// server logs and the client never reads: Error() includes it, Msg does not.
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
// show the caller. Build one with New (a sentinel), Errorf or Invalidf (a
// one-off), With or Wrap (derived from another); a literal has no parent and
// no cause. The fields of a sentinel are shared by every caller: never
// assign to them.
type Error struct {
	Kind Kind
	// Code is the stable machine-readable name of the failure, e.g.
	// "KeyNotFound". Empty means the default code of the kind.
	Code string
	// Msg is written for the caller; it never contains secrets or internals.
	Msg string

	parent *Error // what this error was derived from, by With or Wrap
	cause  error  // logged, never sent; see Wrap
}

// Error returns the public message and, after a colon, the cause if any.
// It is for logs: clients are shown Msg.
func (e *Error) Error() string {
	if e.cause != nil {
		return e.Msg + ": " + e.cause.Error()
	}
	return e.Msg
}

// Cause returns the internal cause given to Wrap, or nil.
func (e *Error) Cause() error { return e.cause }

// Unwrap returns the cause given to Wrap, so that errors.Is and errors.As
// see through to it (context.DeadlineExceeded, a *net.OpError, ...), except
// when the cause is or wraps a *fault.Error: then it returns nil. An error
// has one classification, its own; were a wrapped fault visible, one error
// would match two sentinels (errors.Is(Wrap(keys.ErrBadBackup,
// kcrypto.ErrDecryption), kcrypto.ErrDecryption) would hold, and a caller
// testing the second would misread a bad backup as a failed decryption).
// Use Cause to reach such a cause on purpose.
func (e *Error) Unwrap() error {
	if e.cause == nil {
		return nil
	}
	var fe *Error
	if errors.As(e.cause, &fe) {
		return nil
	}
	return e.cause
}

// Is reports whether target is e or one of the errors e was derived from
// (by With or Wrap). It compares pointers, never kinds or codes, so a
// sentinel matches only itself and its derivations.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	for p := e; p != nil; p = p.parent {
		if p == t {
			return true
		}
	}
	return false
}

// New returns a sentinel error of kind k with code and public message msg.
// Declare it once, at package level: every call returns a distinct error
// that matches no other under errors.Is.
func New(k Kind, code, msg string) *Error { return &Error{Kind: k, Code: code, Msg: msg} }

// Errorf returns an error of kind k with a formatted public message. It
// matches no sentinel: return a sentinel's With when callers may test for
// the failure.
func Errorf(k Kind, code, format string, args ...any) *Error {
	return &Error{Kind: k, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Invalidf is shorthand for a bad-input error with the default code.
func Invalidf(format string, args ...any) *Error {
	return Errorf(Invalid, "", format, args...)
}

// With returns an error derived from e with a more specific public message:
// the same kind, code and cause. It matches e (and what e matches) under
// errors.Is; e does not match it.
func (e *Error) With(format string, args ...any) *Error {
	c := *e
	c.Msg = fmt.Sprintf(format, args...)
	c.parent = e
	return &c
}

// Wrap returns an error derived from e that keeps cause for the server log.
// The client reads e's message only: Msg is e.Msg, and Error() adds the
// cause. The result matches e under errors.Is; it also matches the cause's
// own sentinels (errors.Is, errors.As) unless the cause is a *fault.Error
// (see Unwrap). A nil cause keeps e's.
func Wrap(e *Error, cause error) *Error {
	c := *e
	c.parent = e
	if cause != nil {
		c.cause = cause
	}
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

// As returns the outermost *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var fe *Error
	ok := errors.As(err, &fe)
	return fe, ok
}
