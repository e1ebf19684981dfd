package identity

import (
	"context"
	"crypto/rand"
	"testing"
	"time"
)

// TestAssertionReplayOutlivesARestart: a used certificate assertion is
// refused again until it expires, also by a new Directory over the same
// store (a restarted server), and accepted ids of other principals or
// expired ones do not collide.
func TestAssertionReplayOutlivesARestart(t *testing.T) {
	ctx := context.Background()
	_, dir, c, db := newTestService(t)
	now := c.now()
	until := now.Add(10 * time.Minute)
	first, err := dir.firstUse(ctx, "p1", "jti-1", until, now)
	if err != nil || !first {
		t.Fatalf("first use: %v %v", first, err)
	}
	if again, _ := dir.firstUse(ctx, "p1", "jti-1", until, now.Add(time.Minute)); again {
		t.Fatal("a replay within the assertion's life was accepted")
	}
	restarted := NewDirectory(db, "tenant-1", rand.Reader, c.now)
	if again, _ := restarted.firstUse(ctx, "p1", "jti-1", until, now.Add(2*time.Minute)); again {
		t.Fatal("a replay after a restart was accepted")
	}
	if other, _ := restarted.firstUse(ctx, "p2", "jti-1", until, now); !other {
		t.Fatal("another principal's assertion with the same id was refused")
	}
	if later, _ := restarted.firstUse(ctx, "p1", "jti-1", now.Add(time.Hour), until.Add(time.Second)); !later {
		t.Fatal("an id whose record expired is still refused")
	}
}
