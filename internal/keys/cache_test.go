package keys

import (
	"fmt"
	"testing"

	"github.com/keyward/keyward/internal/store"
)

func cached(c *cache, name string) *entry {
	e, _ := c.get("h", name, "")
	return e
}

func fill(c *cache, name string) {
	_, gen := c.get("h", name, "v1")
	c.put(gen, &entry{meta: store.KeyVersion{HSM: "h", Name: name, Version: "v1"}}, true)
}

// The cache holds at most its size, and evicts by CLOCK: a version looked
// up since the hand last passed stays, one not looked up goes.
func TestCacheEvictsTheUnused(t *testing.T) {
	c := newCache(3)
	for _, n := range []string{"a", "b", "c"} {
		fill(c, n)
	}
	cached(c, "a") // a and c used; b not
	cached(c, "c")
	fill(c, "d") // the hand clears a's mark, evicts b
	if cached(c, "b") != nil || cached(c, "a") == nil || cached(c, "c") == nil || cached(c, "d") == nil {
		t.Fatalf("after d: a %v b %v c %v d %v", cached(c, "a") != nil, cached(c, "b") != nil, cached(c, "c") != nil, cached(c, "d") != nil)
	}
	for i := range 100 {
		fill(c, fmt.Sprint("k", i))
	}
	if n := c.size(); n > 3 {
		t.Fatalf("the cache holds %d, more than its size", n)
	}
}

// Invalidating a key drops its versions only; an HSM's change drops its
// keys only; a smaller size empties the cache; size 0 caches nothing.
func TestCacheInvalidatesByKey(t *testing.T) {
	c := newCache(10)
	fill(c, "a")
	fill(c, "b")
	c.invalidate("H", "A")
	if cached(c, "a") != nil || cached(c, "b") == nil {
		t.Fatal("invalidating a dropped the wrong keys")
	}
	fill(c, "a") // a slot freed by invalidation is used again
	_, gen := c.get("other", "x", "")
	c.put(gen, &entry{meta: store.KeyVersion{HSM: "other", Name: "x", Version: "v1"}}, true)
	c.invalidateHSM("h")
	if cached(c, "a") != nil || cached(c, "b") != nil {
		t.Fatal("the HSM's keys stayed")
	}
	if e, _ := c.get("other", "x", ""); e == nil {
		t.Fatal("another HSM's key went")
	}
	c.setMax(0)
	fill(c, "a")
	if c.size() != 0 {
		t.Fatalf("a cache of size 0 holds %d", c.size())
	}
}
