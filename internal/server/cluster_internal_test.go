package server

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) DatabaseTime(context.Context) (time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t, nil
}

// A node whose clock runs ahead of the database's (a wrong NTP source)
// takes no lease: it cannot take the rotation lease from the node that
// holds it, so it cannot purge keys whose retention has not ended or fail
// another node's live backup job. Back in step, it may again.
func TestSkewedNodeTakesNoLease(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	dbClock := &fixedClock{t: now}
	local := now.Add(8 * 24 * time.Hour) // eight days ahead
	g := newClockGuard(dbClock, func() time.Time { return local }, slog.Default())
	guarded := leaseGuarded{Store: db, allow: g.allow}

	if _, err := store.TakeLease(ctx, guarded, "keys.rotator", "ahead", local, time.Minute); !errors.Is(err, ErrClockSkew) {
		t.Fatalf("a lease before the skew is known: %v", err)
	}
	if err := g.measure(ctx); err != nil {
		t.Fatal(err)
	}
	if held, err := store.TakeLease(ctx, db, "keys.rotator", "in-step", now, time.Minute); err != nil || !held {
		t.Fatalf("the node in step: %v %v", held, err)
	}
	// Judged by its own clock, the in-step node's lease has long expired.
	if held, err := store.TakeLease(ctx, guarded, "keys.rotator", "ahead", local, time.Minute); !errors.Is(err, ErrClockSkew) || held {
		t.Fatalf("the node eight days ahead took the lease: %v %v", held, err)
	}
	local = now.Add(500 * time.Millisecond)
	if err := g.measure(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := store.TakeLease(ctx, guarded, "other", "ahead", local, time.Minute); err != nil {
		t.Fatalf("back in step: %v", err)
	}
}

// However many probes come at once (they need no token), readiness is
// checked for real at most once per readinessEvery.
func TestReadinessIsCheckedOncePerSecond(t *testing.T) {
	var rd readiness
	var wg sync.WaitGroup
	calls := 0
	var mu sync.Mutex
	run := func(context.Context) (int, map[string]any) {
		mu.Lock()
		calls++
		mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		return 200, map[string]any{"status": "ready"}
	}
	for range 200 {
		wg.Add(1)
		go func() { defer wg.Done(); rd.check(context.Background(), run) }()
	}
	wg.Wait()
	if calls != 1 {
		t.Fatalf("%d real checks for 200 probes at once", calls)
	}
	rd.at = rd.at.Add(-readinessEvery)
	rd.check(context.Background(), run)
	if calls != 2 {
		t.Fatalf("no new check after a second: %d", calls)
	}
}
