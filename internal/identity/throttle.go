package identity

import (
	"container/list"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/fault"
)

// ErrLockedOut is returned while a principal or a source address is locked
// out after repeated failed sign-ins (Entra's smart lockout, AADSTS50053).
// The request is refused before any secret is checked.
var ErrLockedOut = fault.New(fault.Forbidden, "invalid_grant",
	"AADSTS50053: The account is locked, you've tried to sign in too many times with an incorrect user ID or password.")

// errSourceLockedOut is ErrLockedOut for a source address.
var errSourceLockedOut = ErrLockedOut.With(
	"AADSTS50053: Sign-in was blocked because it came from an IP address with too many failed sign-ins. Try again later.")

// ThrottleConfig sets the limits of a Throttle. Zero fields take the
// defaults in brackets.
type ThrottleConfig struct {
	// PrincipalLimit failures against one client id or user name from
	// one source within Window lock that principal out for that source
	// [20].
	PrincipalLimit int
	// SpreadLimit failures against one principal from any sources within
	// Window lock it out for every source it has not signed in from
	// recently [5 × PrincipalLimit].
	SpreadLimit int
	// Familiar is how long a source stays familiar to a principal after a
	// successful sign-in from it [24 hours].
	Familiar time.Duration
	// SourceLimit failures from one source address within Window lock the
	// address out [100].
	SourceLimit int
	// Window is how long failures count [10 minutes].
	Window time.Duration
	// Lockout is how long a lockout lasts [1 minute, as Entra].
	Lockout time.Duration
	// MaxEntries bounds the principals and addresses remembered [10000];
	// beyond it the least recently failed are forgotten first.
	MaxEntries int
	// Now is the clock [time.Now].
	Now func() time.Time
}

// Throttle counts failed sign-ins and locks out for a while after too
// many, as Entra's smart lockout does with familiar and unfamiliar
// locations: failures against a principal count per source, so whoever
// guesses from one address locks out that address for that principal,
// not the principal's own workloads elsewhere; failures spread over many
// sources lock the principal out for every source it has not recently
// signed in from; and a source with too many failures overall is locked
// out for everyone. It keeps a bounded amount of memory and is safe for
// concurrent use.
type Throttle struct {
	cfg ThrottleConfig

	mu      sync.Mutex
	entries map[string]*list.Element
	order   *list.List // of *failures, least recently failed first
}

type failures struct {
	key         string
	n           int
	first       time.Time // start of the counting window
	lockedUntil time.Time
}

// NewThrottle returns a throttle with the limits of cfg.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	if cfg.PrincipalLimit <= 0 {
		cfg.PrincipalLimit = 20
	}
	if cfg.SpreadLimit <= 0 {
		cfg.SpreadLimit = 5 * cfg.PrincipalLimit
	}
	if cfg.Familiar <= 0 {
		cfg.Familiar = 24 * time.Hour
	}
	if cfg.SourceLimit <= 0 {
		cfg.SourceLimit = 100
	}
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Minute
	}
	if cfg.Lockout <= 0 {
		cfg.Lockout = time.Minute
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 10000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Throttle{cfg: cfg, entries: map[string]*list.Element{}, order: list.New()}
}

func principalKey(p string) string   { return "p\x00" + strings.ToLower(p) }
func pairKey(p, s string) string     { return "x\x00" + strings.ToLower(p) + "\x00" + s }
func familiarKey(p, s string) string { return "f\x00" + strings.ToLower(p) + "\x00" + s }
func sourceKey(s string) string      { return "s\x00" + s }

// Check returns ErrLockedOut, and when the lockout ends, if principal (a
// client id or user name) is locked out for source (an address), or
// source is. Empty arguments are not checked.
func (t *Throttle) Check(principal, source string) (time.Time, error) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if principal != "" {
		if until, ok := t.locked(pairKey(principal, source), now); ok {
			return until, ErrLockedOut
		}
		if until, ok := t.locked(principalKey(principal), now); ok && !t.familiar(principal, source, now) {
			return until, ErrLockedOut
		}
	}
	if source != "" {
		if until, ok := t.locked(sourceKey(source), now); ok {
			return until, errSourceLockedOut
		}
	}
	return time.Time{}, nil
}

// familiar tells whether principal signed in from source recently.
func (t *Throttle) familiar(principal, source string, now time.Time) bool {
	e, ok := t.entries[familiarKey(principal, source)]
	return ok && now.Before(e.Value.(*failures).lockedUntil)
}

// Succeed records a successful sign-in of principal from source: the
// source becomes familiar to the principal for a while.
func (t *Throttle) Succeed(principal, source string) {
	if principal == "" || source == "" {
		return
	}
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	key := familiarKey(principal, source)
	e, ok := t.entries[key]
	if !ok {
		t.evict(now)
		e = t.order.PushBack(&failures{key: key, first: now})
		t.entries[key] = e
	}
	t.order.MoveToBack(e)
	e.Value.(*failures).lockedUntil = now.Add(t.cfg.Familiar) // here: familiar until
}

func (t *Throttle) locked(key string, now time.Time) (time.Time, bool) {
	e, ok := t.entries[key]
	if !ok {
		return time.Time{}, false
	}
	f := e.Value.(*failures)
	return f.lockedUntil, now.Before(f.lockedUntil)
}

// Fail records a failed sign-in of principal from source, and reports
// whether it locked either out.
func (t *Throttle) Fail(principal, source string) bool {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	locked := false
	if principal != "" {
		locked = t.fail(pairKey(principal, source), t.cfg.PrincipalLimit, now) || locked
		locked = t.fail(principalKey(principal), t.cfg.SpreadLimit, now) || locked
	}
	if source != "" {
		locked = t.fail(sourceKey(source), t.cfg.SourceLimit, now) || locked
	}
	return locked
}

func (t *Throttle) fail(key string, limit int, now time.Time) bool {
	e, ok := t.entries[key]
	if !ok {
		t.evict(now)
		e = t.order.PushBack(&failures{key: key, first: now})
		t.entries[key] = e
	}
	t.order.MoveToBack(e)
	f := e.Value.(*failures)
	if now.Before(f.lockedUntil) {
		return false // failures while locked out were refused before counting
	}
	if now.Sub(f.first) > t.cfg.Window {
		f.n, f.first = 0, now
	}
	f.n++
	if f.n < limit {
		return false
	}
	f.n, f.first, f.lockedUntil = 0, now, now.Add(t.cfg.Lockout)
	return true
}

// evict makes room for one entry, forgetting the least recently failed.
// Entries still locked out are passed over a few times, so that a flood of
// made-up names cannot quickly free a locked-out one.
func (t *Throttle) evict(now time.Time) {
	for tries := 0; len(t.entries) >= t.cfg.MaxEntries; tries++ {
		e := t.order.Front()
		f := e.Value.(*failures)
		if tries < 16 && now.Before(f.lockedUntil) {
			t.order.MoveToBack(e)
			continue
		}
		t.order.Remove(e)
		delete(t.entries, f.key)
	}
}

// Failures returns how many failures of principal from source count now
// (0 while locked out: those were refused before counting).
func (t *Throttle) Failures(principal, source string) int {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[pairKey(principal, source)]
	if !ok {
		return 0
	}
	f := e.Value.(*failures)
	if now.Sub(f.first) > t.cfg.Window {
		return 0
	}
	return f.n
}
