package fault

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

// TestSentinelsMatchOnlyThemselves: two sentinels of one kind and code are
// different errors; what is derived from a sentinel (With, Wrap, %w, and
// derivations of those) matches it, and nothing else does.
func TestSentinelsMatchOnlyThemselves(t *testing.T) {
	a := New(NotFound, "ResourceNotFound", "a was not found")
	b := New(NotFound, "ResourceNotFound", "b was not found")
	if errors.Is(a, b) || errors.Is(b, a) {
		t.Fatal("two sentinels with one kind and code match each other")
	}
	aw := a.With("the a named %s was not found", "x")
	derived := map[string]error{
		"With":          aw,
		"With.With":     aw.With("more specific"),
		"Wrap":          Wrap(a, errors.New("disk on fire")),
		"With.Wrap":     Wrap(aw, errors.New("disk on fire")),
		"Wrap.With":     Wrap(a, errors.New("disk on fire")).With("other words"),
		"%w":            fmt.Errorf("doing: %w", aw),
		"Join":          errors.Join(errors.New("other"), aw),
		"Wrap of other": Wrap(a, b),
	}
	for name, err := range derived {
		if !errors.Is(err, a) {
			t.Errorf("%s: does not match its sentinel", name)
		}
		if errors.Is(err, b) {
			t.Errorf("%s: matches another sentinel", name)
		}
		if fe, _ := As(err); fe.Kind != NotFound || fe.Code != "ResourceNotFound" {
			t.Errorf("%s: As = %+v", name, fe)
		}
	}
	if errors.Is(a, aw) {
		t.Error("a sentinel matches an error derived from it")
	}
	if errors.Is(aw, a.With("the a named %s was not found", "x")) {
		t.Error("two derivations of one sentinel match each other")
	}
	one := Errorf(NotFound, "ResourceNotFound", "a was not found")
	if errors.Is(one, a) || errors.Is(a, one) {
		t.Error("a one-off error with a sentinel's kind and code matches it")
	}
	if !errors.Is(one, one) {
		t.Error("a one-off error does not match itself")
	}
}

// TestWrapKeepsTheCauseOutOfTheMessage: the public message is the
// sentinel's; the cause is in Error() (for the log) and, unless it is
// itself a fault, visible to errors.Is and errors.As.
func TestWrapKeepsTheCauseOutOfTheMessage(t *testing.T) {
	refused := New(Unauthenticated, "invalid_client", "the assertion was refused")
	cause := fmt.Errorf("fetching https://issuer.internal/keys: %w", &fs.PathError{Op: "open", Path: "/etc/secret", Err: context.DeadlineExceeded})
	err := Wrap(refused, cause)
	if err.Msg != refused.Msg || strings.Contains(err.Msg, "issuer.internal") {
		t.Fatalf("Msg = %q", err.Msg)
	}
	if err.Error() != refused.Msg+": "+cause.Error() || err.Cause() != cause {
		t.Fatalf("Error() = %q, Cause() = %v", err.Error(), err.Cause())
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("errors.Is does not see a non-fault cause")
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != "/etc/secret" {
		t.Error("errors.As does not see a non-fault cause")
	}
	if KindOf(err) != Unauthenticated {
		t.Errorf("KindOf = %s", KindOf(err))
	}
	// A fault cause stays behind: one error, one classification.
	corrupt := New(Invalid, "BadParameter", "the data does not authenticate")
	bad := New(Invalid, "BadParameter", "the backup is not valid")
	for _, c := range []error{corrupt, fmt.Errorf("block 3: %w", corrupt.With("block 3 does not authenticate"))} {
		err := Wrap(bad, c)
		if !errors.Is(err, bad) || errors.Is(err, corrupt) {
			t.Errorf("Wrap(bad, %v): Is(bad)=%v Is(corrupt)=%v", c, errors.Is(err, bad), errors.Is(err, corrupt))
		}
		if fe, _ := As(err); fe != err {
			t.Errorf("As found %v, not the outer error", fe)
		}
		if !errors.Is(err.Cause(), corrupt) {
			t.Error("Cause() does not reach the fault cause")
		}
	}
	// With keeps the cause; a nil cause keeps the parent's.
	if w := err.With("other words"); w.Cause() != cause || w.Msg != "other words" {
		t.Errorf("With dropped the cause: %v", w)
	}
	if w := Wrap(err, nil); w.Cause() != cause || !errors.Is(w, refused) {
		t.Errorf("Wrap(nil) = %v", w)
	}
	if Wrap(refused, nil).Error() != refused.Msg {
		t.Error("Wrap without a cause has a cause")
	}
}

// TestWithDoesNotChangeTheSentinel: deriving copies; the sentinel, shared
// by every caller, keeps its message.
func TestWithDoesNotChangeTheSentinel(t *testing.T) {
	s := New(Conflict, "Conflict", "busy")
	_ = s.With("other")
	_ = Wrap(s, errors.New("cause"))
	if s.Msg != "busy" || s.Cause() != nil || s.parent != nil {
		t.Fatalf("the sentinel changed: %+v", s)
	}
}

func TestKindOf(t *testing.T) {
	if KindOf(errors.New("plain")) != Internal {
		t.Error("a plain error is not internal")
	}
	if KindOf(fmt.Errorf("x: %w", Invalidf("bad"))) != Invalid {
		t.Error("a wrapped fault lost its kind")
	}
	if _, ok := As(errors.New("plain")); ok {
		t.Error("As found a fault in a plain error")
	}
}
