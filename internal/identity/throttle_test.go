package identity

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestThrottleLocksOutAPrincipal: the 20th failure within the window locks
// the principal (any case of its name) out for the lockout, then it may try
// again; other principals are not affected.
func TestThrottleLocksOutAPrincipal(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := NewThrottle(ThrottleConfig{Now: c.now})
	for i := range 19 {
		if th.Fail("App", fmt.Sprintf("10.0.0.%d", i)) {
			t.Fatalf("locked after %d failures", i+1)
		}
	}
	if _, err := th.Check("app", "10.9.9.9"); err != nil {
		t.Fatalf("locked before the limit: %v", err)
	}
	if !th.Fail("app", "10.0.1.1") {
		t.Fatal("the 20th failure did not lock the principal out")
	}
	until, err := th.Check("APP", "10.9.9.9")
	if !errors.Is(err, ErrLockedOut) || !until.Equal(c.t.Add(time.Minute)) {
		t.Fatalf("check while locked: %v until %s", err, until)
	}
	if _, err := th.Check("other", "10.9.9.9"); err != nil {
		t.Fatalf("another principal: %v", err)
	}
	c.t = c.t.Add(time.Minute)
	if _, err := th.Check("app", "10.9.9.9"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	if th.Fail("app", "10.0.1.1") {
		t.Fatal("one failure after a lockout locked again")
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
		th.Fail("victim", "")
	}
	for i := range 50000 {
		th.Fail(fmt.Sprintf("made-up-%d", i), "")
		if len(th.entries) > 1000 || th.order.Len() != len(th.entries) {
			t.Fatalf("%d entries (list %d) after %d names", len(th.entries), th.order.Len(), i+1)
		}
		if i == 500 {
			if _, err := th.Check("victim", ""); !errors.Is(err, ErrLockedOut) {
				t.Fatal("a small flood freed a locked-out principal")
			}
		}
	}
}
