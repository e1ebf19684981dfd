package identity

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestThrottleLocksOutAPrincipal: the 20th failure from one source within
// the window locks the principal (any case of its name) out for that
// source for the lockout, then it may try again; the principal's own
// workloads elsewhere, and other principals, are not affected.
func TestThrottleLocksOutAPrincipal(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := NewThrottle(ThrottleConfig{Now: c.now})
	th.Succeed("app", "10.9.9.9") // where the app runs
	for i := range 19 {
		if th.Fail("App", "192.0.2.7") {
			t.Fatalf("locked after %d failures", i+1)
		}
	}
	if _, err := th.Check("app", "192.0.2.7"); err != nil {
		t.Fatalf("locked before the limit: %v", err)
	}
	if !th.Fail("app", "192.0.2.7") {
		t.Fatal("the 20th failure did not lock the principal out")
	}
	until, err := th.Check("APP", "192.0.2.7")
	if !errors.Is(err, ErrLockedOut) || !until.Equal(c.t.Add(time.Minute)) {
		t.Fatalf("check while locked: %v until %s", err, until)
	}
	for _, src := range []string{"10.9.9.9", "198.51.100.1"} {
		if _, err := th.Check("app", src); err != nil {
			t.Fatalf("the guesser locked the principal out for %s: %v", src, err)
		}
	}
	if _, err := th.Check("other", "192.0.2.7"); err != nil {
		t.Fatalf("another principal: %v", err)
	}
	c.t = c.t.Add(time.Minute)
	if _, err := th.Check("app", "192.0.2.7"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	if th.Fail("app", "192.0.2.7") {
		t.Fatal("one failure after a lockout locked again")
	}
}

// TestThrottleSpreadGuessing: failures against one principal spread over
// many sources lock it out for every unfamiliar source, but not for the
// sources it signed in from.
func TestThrottleSpreadGuessing(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := NewThrottle(ThrottleConfig{Now: c.now})
	th.Succeed("alice@contoso.test", "10.9.9.9")
	for i := range 100 {
		th.Fail("alice@contoso.test", fmt.Sprintf("192.0.2.%d", i))
	}
	if _, err := th.Check("alice@contoso.test", "203.0.113.1"); !errors.Is(err, ErrLockedOut) {
		t.Fatalf("an unfamiliar source after spread guessing: %v", err)
	}
	if _, err := th.Check("alice@contoso.test", "10.9.9.9"); err != nil {
		t.Fatalf("alice's familiar source: %v", err)
	}
	c.t = c.t.Add(25 * time.Hour) // familiarity fades
	for i := range 100 {
		th.Fail("alice@contoso.test", fmt.Sprintf("192.0.2.%d", i))
	}
	if _, err := th.Check("alice@contoso.test", "10.9.9.9"); !errors.Is(err, ErrLockedOut) {
		t.Fatalf("a source alice last used a day ago: %v", err)
	}
}

// TestThrottleWindow: failures spread wider than the window never lock.
func TestThrottleWindow(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := NewThrottle(ThrottleConfig{Now: c.now})
	for i := range 100 {
		if th.Fail("app", "") {
			t.Fatalf("locked at failure %d, one a minute", i+1)
		}
		c.t = c.t.Add(time.Minute)
	}
}

// TestThrottleLocksOutASource: password spraying, one try per user from one
// address, locks the address out.
func TestThrottleLocksOutASource(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := NewThrottle(ThrottleConfig{Now: c.now})
	for i := range 100 {
		th.Fail(fmt.Sprintf("user%d@contoso.test", i), "192.0.2.1")
	}
	if _, err := th.Check("fresh@contoso.test", "192.0.2.1"); !errors.Is(err, ErrLockedOut) {
		t.Fatalf("spraying source: %v", err)
	}
	if _, err := th.Check("fresh@contoso.test", "192.0.2.2"); err != nil {
		t.Fatalf("another source: %v", err)
	}
}

// TestThrottleMemoryIsBounded: made-up names cannot grow the table past
// its bound, and a flood smaller than the bound does not free a locked-out
// principal.
func TestThrottleMemoryIsBounded(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := NewThrottle(ThrottleConfig{Now: c.now, MaxEntries: 1000})
	for range 20 {
		th.Fail("victim", "192.0.2.1")
	}
	for i := range 50000 {
		th.Fail(fmt.Sprintf("made-up-%d", i), "")
		if len(th.entries) > 1000 || th.order.Len() != len(th.entries) {
			t.Fatalf("%d entries (list %d) after %d names", len(th.entries), th.order.Len(), i+1)
		}
		if i == 500 {
			if _, err := th.Check("victim", "192.0.2.1"); !errors.Is(err, ErrLockedOut) {
				t.Fatal("a small flood freed a locked-out principal")
			}
		}
	}
}
