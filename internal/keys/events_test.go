package keys

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/store"
)

// TestNewVersionEvents: every new version, whoever made it (create,
// rotate), is published once committed; a write that fails to commit
// publishes nothing.
func TestNewVersionEvents(t *testing.T) {
	ctx := context.Background()
	s, fs, h := setup(t)
	hk := &hook{}
	srv := httptest.NewServer(hk)
	defer srv.Close()
	pub := events.NewPublisher([]string{srv.URL}, nil, slog.Default())
	defer pub.Close()
	s.events = Events{pub, func(*domain.HSM) string { return "/hsm" }}

	v1, err := s.Create(ctx, h, "k", CreateParams{Type: kcrypto.EC})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.Rotate(ctx, h, "k")
	if err != nil {
		t.Fatal(err)
	}
	fs.fail = true
	if _, err := s.Rotate(ctx, h, "k"); err == nil {
		t.Fatal("a rotation that failed to commit succeeded")
	}
	fs.fail = false
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && len(hk.events()) < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a third event would arrive by now
	got := hk.events()
	if len(got) != 2 {
		t.Fatalf("%d events, want 2: %+v", len(got), got)
	}
	for i, v := range []*Version{v1, v2} {
		if got[i].Type != events.KeyNewVersionCreated || got[i].Data.Version != v.Version || got[i].Subject != "k" {
			t.Fatalf("event %d = %+v, want KeyNewVersionCreated of %s", i, got[i], v.Version)
		}
	}
}

// TestCacheFollowsOtherWriters: a change committed through another
// service over the same store (as a second node's would arrive) reaches
// the cache: a disabled version stops signing at once.
func TestCacheFollowsOtherWriters(t *testing.T) {
	ctx := context.Background()
	s, fs, h := setup(t)
	other := NewService(fs.Store, nil, nil, Events{})
	if _, err := s.Create(ctx, h, "k", CreateParams{Type: kcrypto.EC}); err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, 32)
	if _, err := s.Sign(ctx, h, "k", "", "ES256", digest); err != nil { // fills the cache
		t.Fatal(err)
	}
	off := false
	if _, err := other.Update(ctx, h, "k", "", UpdateParams{Attributes: Attributes{Enabled: &off}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(ctx, h, "k", "", "ES256", digest); err == nil {
		t.Fatal("a version disabled through another service still signs from the cache")
	}
}

// TestRotatorNeedsTheLease: a round does nothing while another holder has
// the rotation lease, and runs once it expired.
func TestRotatorNeedsTheLease(t *testing.T) {
	ctx := context.Background()
	s, fs, h := setup(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: t0}
	s.now = clock.now
	if _, err := s.Create(ctx, h, "k", CreateParams{Type: kcrypto.EC}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRotationPolicy(ctx, h, "k", RotationPolicy{LifetimeActions: []LifetimeAction{{Action: "Rotate", TimeAfterCreate: "P7D"}}}); err != nil {
		t.Fatal(err)
	}
	r := NewRotator(s, func(context.Context) ([]*domain.HSM, error) { return []*domain.HSM{h}, nil }, nil, slog.Default())
	versions := func() int {
		p, err := s.ListVersions(ctx, h, "k", "", 25)
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Items)
	}
	clock.set(t0.AddDate(0, 0, 7))
	if held, err := store.TakeLease(ctx, fs.Store, RotationLease, "other-node", clock.now(), time.Hour); err != nil || !held {
		t.Fatalf("taking the lease: %v, %v", held, err)
	}
	if err := r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := versions(); n != 1 {
		t.Fatalf("rotated without the lease: %d versions", n)
	}
	clock.set(t0.Add(2*time.Hour).AddDate(0, 0, 7))
	if err := r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := versions(); n != 2 {
		t.Fatalf("after the other holder's lease expired: %d versions, want 2", n)
	}
}

// TestCacheFlush: store.ChangeAll (a node that lost track of the others)
// drops every cached version, and a fill that started before it.
func TestCacheFlush(t *testing.T) {
	c := newCache(100)
	_, gen := c.get("h", "k", "")
	c.put(gen, &entry{meta: store.KeyVersion{HSM: "h", Name: "k", Version: "v1"}}, true)
	c.put(gen, &entry{meta: store.KeyVersion{HSM: "other", Name: "k", Version: "v1"}}, true)
	c.apply([]store.Change{{Kind: store.ChangeAll}})
	if len(c.entries) != 0 || len(c.latest) != 0 {
		t.Fatalf("after a flush: %d entries, %d latest", len(c.entries), len(c.latest))
	}
	c.put(gen, &entry{meta: store.KeyVersion{HSM: "h", Name: "k", Version: "v1"}}, true)
	if len(c.entries) != 0 {
		t.Fatal("a fill from before the flush was kept")
	}
}
