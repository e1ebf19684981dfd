package keys

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/store"
)

// cache keeps unsealed, parsed versions of live keys in memory, so the
// request path neither reads the database nor decrypts and re-parses key
// material (an RSA key rebuilt per call loses its precomputed values).
//
// Its one invalidation path is the store's change feed (apply): every
// committed change to a key drops its name, and a change to an HSM drops
// all of that HSM's keys. A fill that raced with an invalidation is
// dropped: fills remember the generation they started in.
//
// It holds at most max versions. When full, a fill evicts by the CLOCK
// rule, LRU's usual approximation: a lookup marks its entry used (an
// atomic store under the read lock, so lookups never wait for each
// other), and the hand passes over used entries, clearing their mark,
// until it finds one not used since it last passed.
type cache struct {
	// hits and misses count lookups, for the metrics.
	hits, misses atomic.Uint64

	mu      sync.RWMutex
	max     int
	gen     uint64
	entries map[versionRef]*entry
	latest  map[keyRef]string
	// versions are the cached versions of each key, for invalidation.
	versions map[keyRef][]string
	// ring holds the cached versions in CLOCK order; hand is the next
	// slot the eviction looks at. A slot whose entry is gone is free.
	ring []versionRef
	hand int
}

type keyRef struct{ hsm, name string }

type versionRef struct {
	keyRef
	version string
}

type entry struct {
	meta store.KeyVersion
	key  kcrypto.Key
	used atomic.Bool // looked up since the hand last passed
	slot int         // its place in the ring
}

func newCache(max int) *cache {
	return &cache{max: max, entries: map[versionRef]*entry{}, latest: map[keyRef]string{}, versions: map[keyRef][]string{}}
}

func ref(hsm, name string) keyRef { return keyRef{strings.ToLower(hsm), strings.ToLower(name)} }

// apply drops what committed changes name; it is the cache's store
// subscription.
func (c *cache) apply(changes []store.Change) {
	for _, ch := range changes {
		switch ch.Kind {
		case store.ChangeKey:
			c.invalidate(ch.HSM, ch.ID)
		case store.ChangeHSM:
			c.invalidateHSM(ch.HSM)
		case store.ChangeAll:
			c.invalidateAll()
		}
	}
}

// get returns the entry of a version, "" meaning the latest.
func (c *cache) get(hsm, name, version string) (*entry, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	k := ref(hsm, name)
	if version == "" {
		version = c.latest[k]
	}
	e := c.entries[versionRef{k, version}]
	if e != nil {
		e.used.Store(true)
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return e, c.gen
}

func (c *cache) put(gen uint64, e *entry, isLatest bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || c.max <= 0 {
		return
	}
	k := ref(e.meta.HSM, e.meta.Name)
	r := versionRef{k, e.meta.Version}
	if old := c.entries[r]; old != nil {
		e.slot = old.slot
	} else {
		e.slot = c.freeSlot()
		c.ring[e.slot] = r
		c.versions[k] = append(c.versions[k], r.version)
	}
	c.entries[r] = e
	if isLatest {
		c.latest[k] = e.meta.Version
	}
}

// freeSlot returns a ring slot for a new entry: a new one while the ring
// is not full, else the first the hand finds free or unused, evicting
// that entry. Two passes find one: the first clears every mark.
func (c *cache) freeSlot() int {
	if len(c.ring) < c.max {
		c.ring = append(c.ring, versionRef{})
		return len(c.ring) - 1
	}
	for {
		i := c.hand
		c.hand = (c.hand + 1) % len(c.ring)
		e := c.entries[c.ring[i]]
		if e == nil || e.slot != i {
			return i // free: its entry is gone, or lives in another slot now
		}
		if e.used.Swap(false) {
			continue
		}
		c.remove(c.ring[i])
		return i
	}
}

// remove drops one cached version.
func (c *cache) remove(r versionRef) {
	delete(c.entries, r)
	vs := c.versions[r.keyRef]
	if i := slices.Index(vs, r.version); i >= 0 {
		vs = slices.Delete(vs, i, i+1)
	}
	if len(vs) == 0 {
		delete(c.versions, r.keyRef)
	} else {
		c.versions[r.keyRef] = vs
	}
	if c.latest[r.keyRef] == r.version {
		delete(c.latest, r.keyRef)
	}
}

// invalidate drops every cached version of a key.
func (c *cache) invalidate(hsm, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	k := ref(hsm, name)
	for _, v := range slices.Clone(c.versions[k]) {
		c.remove(versionRef{k, v})
	}
	delete(c.latest, k)
}

// invalidateAll drops every cached version.
func (c *cache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
	clear(c.latest)
	clear(c.versions)
	c.ring, c.hand = c.ring[:0], 0
}

// invalidateHSM drops every cached version of every key of an HSM.
func (c *cache) invalidateHSM(hsm string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	hsm = strings.ToLower(hsm)
	for k, vs := range c.versions {
		if k.hsm == hsm {
			for _, v := range slices.Clone(vs) {
				c.remove(versionRef{k, v})
			}
		}
	}
	for k := range c.latest {
		if k.hsm == hsm {
			delete(c.latest, k)
		}
	}
}

// setMax changes how many versions the cache holds; a smaller size takes
// effect as entries are evicted, or at once by emptying it.
func (c *cache) setMax(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n < len(c.ring) {
		c.gen++
		clear(c.entries)
		clear(c.latest)
		clear(c.versions)
		c.ring, c.hand = c.ring[:0], 0
	}
	c.max = n
}

// size is how many versions the cache holds.
func (c *cache) size() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
