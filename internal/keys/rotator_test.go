package keys

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/kcrypto"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time       { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(t time.Time)      { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *fakeClock) days(n int) time.Time { return c.now().AddDate(0, 0, n) }

type hook struct {
	mu  sync.Mutex
	got []events.Event
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var e events.Event
	json.NewDecoder(r.Body).Decode(&e)
	h.mu.Lock()
	h.got = append(h.got, e)
	h.mu.Unlock()
}

func (h *hook) events() []events.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]events.Event(nil), h.got...)
}

func TestRotatorFollowsPolicies(t *testing.T) {
	ctx := context.Background()
	s, _, h := setup(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: t0}
	s.now = clock.now
	hk := &hook{}
	srv := httptest.NewServer(hk)
	defer srv.Close()
	pub := events.NewPublisher([]string{srv.URL}, nil, slog.Default())
	defer pub.Close()
	r := NewRotator(s, func(context.Context) ([]*domain.HSM, error) { return []*domain.HSM{h}, nil }, nil, slog.Default())
	var recorded []string
	r.record = func(_ context.Context, _ *domain.HSM, op, key, _ string, err error) {
		recorded = append(recorded, op+" "+key)
	}

	versions := func(name string) int {
		p, err := s.ListVersions(ctx, h, name, "", 25)
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Items)
	}
	at := func(days int) {
		clock.set(t0.AddDate(0, 0, days))
		if err := r.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(name string, exp time.Time, p RotationPolicy) {
		a := Attributes{}
		if !exp.IsZero() {
			a.Expires = &exp
		}
		if _, err := s.Create(ctx, h, name, CreateParams{Type: kcrypto.EC, Attributes: a}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetRotationPolicy(ctx, h, name, p); err != nil {
			t.Fatal(err)
		}
	}
	mk("after-create", time.Time{}, RotationPolicy{ExpiryTime: "P90D", LifetimeActions: []LifetimeAction{{Action: "Rotate", TimeAfterCreate: "P30D"}}})
	mk("before-expiry", t0.AddDate(0, 0, 40), RotationPolicy{ExpiryTime: "P60D", LifetimeActions: []LifetimeAction{{Action: "Rotate", TimeBeforeExpiry: "P10D"}}})
	mk("notify", t0.AddDate(0, 0, 20), RotationPolicy{ExpiryTime: "P60D", LifetimeActions: []LifetimeAction{{Action: "Notify", TimeBeforeExpiry: "P7D"}}})
	// Events from here on: the creations above would add new-version
	// events of their own (TestNewVersionEvents).
	s.events = Events{pub, func(*domain.HSM) string { return "/hsm" }}

	newVersions := func() (n int) {
		for _, e := range hk.events() {
			if e.Type == events.KeyNewVersionCreated {
				n++
			}
		}
		return n
	}
	at(12)
	at(29)
	// By day 29 the expired "notify" key may have sent its near-expiry event
	// (delivery is asynchronous); nothing may have rotated.
	if versions("after-create") != 1 || versions("before-expiry") != 1 || newVersions() != 0 {
		t.Fatalf("day 29: %d, %d versions, %d new-version events", versions("after-create"), versions("before-expiry"), newVersions())
	}
	at(30)
	if versions("after-create") != 2 {
		t.Fatalf("day 30: after-create has %d versions", versions("after-create"))
	}
	latest, _ := s.Get(ctx, h, "after-create", "")
	if !latest.Expires.Equal(t0.AddDate(0, 0, 30+90)) {
		t.Fatalf("the new version expires %v, want 90 days after day 30", latest.Expires)
	}
	at(30)
	at(31)
	if versions("after-create") != 2 || versions("before-expiry") != 2 {
		t.Fatalf("day 31: %d, %d versions", versions("after-create"), versions("before-expiry"))
	}
	// A long gap (the server was down): one rotation, not one per period.
	at(200)
	if versions("after-create") != 3 {
		t.Fatalf("after a gap: %d versions, want 3", versions("after-create"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && len(hk.events()) < 4 {
		time.Sleep(10 * time.Millisecond)
	}
	near := 0
	for _, e := range hk.events() {
		if e.SpecVersion != "1.0" || e.Source != "/hsm" || e.Data.ObjectType != "Key" {
			t.Fatalf("event = %+v", e)
		}
		if e.Type == events.KeyNearExpiry {
			near++
			if e.Subject != "notify" || e.Data.EXP == nil {
				t.Fatalf("near-expiry event = %+v", e)
			}
		}
	}
	if near != 1 {
		t.Fatalf("%d near-expiry events, want 1 (events: %+v)", near, hk.events())
	}
	if len(recorded) < 4 {
		t.Fatalf("audited actions: %v", recorded)
	}
}

// A deleted key is purged when its retention ends, even with purge
// protection on (which refuses only purges asked for early); a key
// recovered in time, or not yet due, stays.
func TestRotatorPurgesWhenRetentionEnds(t *testing.T) {
	ctx := context.Background()
	s, _, h := setup(t)
	h.RetentionDays, h.PurgeProtection = 7, true
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: t0}
	s.now = clock.now
	r := NewRotator(s, func(context.Context) ([]*domain.HSM, error) { return []*domain.HSM{h}, nil }, nil, slog.Default())
	var recorded []string
	r.record = func(_ context.Context, _ *domain.HSM, op, key, _ string, err error) {
		recorded = append(recorded, op+" "+key)
	}
	for _, name := range []string{"due", "recovered", "later"} {
		if _, err := s.Create(ctx, h, name, CreateParams{Type: kcrypto.EC}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"due", "recovered"} {
		if _, err := s.Delete(ctx, h, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Recover(ctx, h, "recovered"); err != nil {
		t.Fatal(err)
	}
	clock.set(t0.AddDate(0, 0, 3))
	if _, err := s.Delete(ctx, h, "later"); err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, h, "due"); err == nil {
		t.Fatal("an early purge under purge protection was allowed")
	}
	clock.set(t0.AddDate(0, 0, 7))
	if err := r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDeleted(ctx, h, "due"); err == nil {
		t.Fatal("the key whose retention ended is still there")
	}
	if _, err := s.GetDeleted(ctx, h, "later"); err != nil {
		t.Fatalf("a key not yet due was purged: %v", err)
	}
	if _, err := s.Get(ctx, h, "recovered", ""); err != nil {
		t.Fatalf("the recovered key: %v", err)
	}
	if len(recorded) != 1 || recorded[0] != "KeyPurge due" {
		t.Fatalf("recorded %v", recorded)
	}
}
