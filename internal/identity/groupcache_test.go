package identity

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store/sqlite"
)

// TestGroupCacheIsBounded: the review filled the directory's group cache
// with made-up ids through an ARM $filter=assignedTo('…') (88 MB → 361 MB);
// the cache holds at most maxCachedGroups entries.
func TestGroupCacheIsBounded(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "groups.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	d := NewDirectory(db, "tenant", rand.Reader, time.Now)
	for i := range maxCachedGroups + 500 {
		if _, err := d.GroupsOf(context.Background(), fmt.Sprintf("made-up-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	d.mu.Lock()
	n := len(d.groups)
	d.mu.Unlock()
	if n > maxCachedGroups {
		t.Fatalf("%d cached entries, bound %d", n, maxCachedGroups)
	}
}
