package keys

import (
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
type cache struct {
	// hits and misses count lookups, for the metrics.
	hits, misses atomic.Uint64

	mu      sync.RWMutex
	max     int
	gen     uint64
	entries map[versionRef]*entry
	latest  map[keyRef]string
}

type keyRef struct{ hsm, name string }

type versionRef struct {
	keyRef
	version string
}

type entry struct {
	meta store.KeyVersion
	key  kcrypto.Key
}

func newCache(max int) *cache {
	return &cache{max: max, entries: map[versionRef]*entry{}, latest: map[keyRef]string{}}
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
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return e, c.gen
}

func (c *cache) put(gen uint64, e *entry, isLatest bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.entries) >= c.max {
		clear(c.entries)
		clear(c.latest)
	}
	k := ref(e.meta.HSM, e.meta.Name)
	c.entries[versionRef{k, e.meta.Version}] = e
	if isLatest {
		c.latest[k] = e.meta.Version
	}
}

// invalidate drops every cached version of a key.
func (c *cache) invalidate(hsm, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	k := ref(hsm, name)
	delete(c.latest, k)
	for r := range c.entries {
		if r.keyRef == k {
			delete(c.entries, r)
		}
	}
}

// invalidateAll drops every cached version.
func (c *cache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
	clear(c.latest)
}

// invalidateHSM drops every cached version of every key of an HSM.
func (c *cache) invalidateHSM(hsm string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	hsm = strings.ToLower(hsm)
	for k := range c.latest {
		if k.hsm == hsm {
			delete(c.latest, k)
		}
	}
	for r := range c.entries {
		if r.hsm == hsm {
			delete(c.entries, r)
		}
	}
}
