// Package keys is the lifecycle of Managed HSM keys.
//
// A key is a name inside an HSM with one or more versions. Each version
// is immutable key material (generated here or imported) plus mutable
// attributes: enabled, not-before, expiry, allowed operations, tags. The
// latest version is the one with the highest sequence number; creating a
// key on an existing name, importing onto it, or rotating it adds a version.
//
// Delete is soft: the key and all its versions move to the deleted state,
// kept for the HSM's retention period, from which Recover brings them back
// and Purge removes them for good (refused under purge protection). A
// deleted name cannot be reused until it is purged or recovered.
//
// Private material never leaves the package unencrypted: it is sealed under
// the HSM's domain key, bound to the security domain, key name and version.
// Backups carry that sealed material inside a blob sealed again under the
// domain key, so they restore only into an HSM holding the same domain.
package keys

import (
	"crypto/rand"
	"io"
	"regexp"
	"slices"
	"time"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/store"
)

// Errors returned by the service. Each is a sentinel for errors.Is; the
// returned errors carry a more precise message.
var (
	ErrKeyNotFound        = fault.New(fault.NotFound, "KeyNotFound", "the key was not found")
	ErrConflict           = fault.New(fault.Conflict, "Conflict", "the key is in a state that does not allow this operation")
	ErrOperationForbidden = fault.New(fault.Forbidden, "Forbidden", "the operation is not allowed on this key")
)

// Key operations, as in JWK key_ops.
const (
	OpEncrypt   = "encrypt"
	OpDecrypt   = "decrypt"
	OpSign      = "sign"
	OpVerify    = "verify"
	OpWrapKey   = "wrapKey"
	OpUnwrapKey = "unwrapKey"
	OpImport    = "import"
	OpExport    = "export"
)

var allOps = []string{OpEncrypt, OpDecrypt, OpSign, OpVerify, OpWrapKey, OpUnwrapKey, OpImport, OpExport}

// defaultOps are the operations a new key allows when none are given.
var defaultOps = map[kcrypto.KeyType][]string{
	kcrypto.RSA: {OpEncrypt, OpDecrypt, OpSign, OpVerify, OpWrapKey, OpUnwrapKey},
	kcrypto.EC:  {OpSign, OpVerify},
	kcrypto.Oct: {OpEncrypt, OpDecrypt, OpWrapKey, OpUnwrapKey},
	// Keyward's post-quantum keys.
	kcrypto.MLDSA: {OpSign, OpVerify},
	kcrypto.MLKEM: {OpWrapKey, OpUnwrapKey},
}

// Attributes are the settable attributes of a version. Nil fields are
// left as they are (on update) or take their defaults (on create).
type Attributes struct {
	Enabled    *bool
	NotBefore  *time.Time
	Expires    *time.Time
	Exportable *bool
}

// Version is what callers see of one key version: never private material.
type Version struct {
	Name       string
	Version    string
	Type       kcrypto.KeyType
	Public     kcrypto.JSONWebKey
	Ops        []string
	Enabled    bool
	NotBefore  time.Time // zero when unset
	Expires    time.Time // zero when unset
	Created    time.Time
	Updated    time.Time
	Tags       map[string]string
	Exportable bool
	// ReleasePolicy is an exportable version's release policy.
	ReleasePolicy *ReleasePolicy

	RecoverableDays int
	RecoveryLevel   string

	// Deleted and ScheduledPurge are set for deleted keys only.
	Deleted        time.Time
	ScheduledPurge time.Time
}

// Service manages the keys of every HSM.
type Service struct {
	store  store.Store
	rand   io.Reader
	now    func() time.Time
	cache  *cache
	events Events
}

// CacheStats reports how many key lookups the cache answered (hits) and
// how many went to the store (misses).
func (s *Service) CacheStats() (hits, misses uint64) {
	return s.cache.hits.Load(), s.cache.misses.Load()
}

// DefaultCacheSize is how many unsealed key versions a node keeps in
// memory unless told otherwise: the hot set of a big tenant, at a few KiB
// each (an RSA-4096 key's precomputed values) under 100 MiB.
const DefaultCacheSize = 16384

// SetCacheSize sets how many unsealed key versions the service keeps in
// memory (0: none, every operation reads and unseals its key).
func (s *Service) SetCacheSize(n int) { s.cache.setMax(n) }

// NewService returns a key service over s that publishes to ev. rand and now may be nil for
// crypto/rand and time.Now.
func NewService(s store.Store, rnd io.Reader, now func() time.Time, ev Events) *Service {
	if rnd == nil {
		rnd = rand.Reader
	}
	if now == nil {
		now = time.Now
	}
	svc := &Service{store: s, rand: rnd, now: now, cache: newCache(DefaultCacheSize), events: ev}
	s.Subscribe(svc.cache.apply)
	return svc
}

var namePattern = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)

func checkName(name string) error {
	if !namePattern.MatchString(name) {
		return fault.Invalidf("key names have 1 to 127 letters, digits and dashes; got %q", name)
	}
	return nil
}

// checkOps validates key operations and folds repeats, keeping the first
// of each: a key's key_ops is a set, and a list with repeats would be
// stored and shown as sent.
func checkOps(ops []string) ([]string, error) {
	if ops == nil {
		return nil, nil
	}
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		if !slices.Contains(allOps, op) {
			return nil, fault.Invalidf("unknown key operation %q", op)
		}
		if !slices.Contains(out, op) {
			out = append(out, op)
		}
	}
	return out, nil
}

const maxTags = 15

func checkTags(tags map[string]string) error {
	if len(tags) > maxTags {
		return fault.Invalidf("a key has at most %d tags", maxTags)
	}
	for k, v := range tags {
		if k == "" || len(k) > 512 || len(v) > 256 {
			return fault.Invalidf("tag names have 1 to 512 characters and values at most 256")
		}
	}
	return nil
}
