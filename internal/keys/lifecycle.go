package keys

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/store"
)

// CreateParams describe a key to generate.
type CreateParams struct {
	Type           kcrypto.KeyType
	Size           int // RSA: 2048 (default), 3072, 4096; oct: 128, 192, 256 (default)
	PublicExponent int
	Curve          kcrypto.Curve // EC: default P-256
	Ops            []string      // nil: the type's defaults
	Attributes     Attributes
	Tags           map[string]string
	ReleasePolicy  *ReleasePolicy // an exportable key's, and only its
}

// ImportParams describe key material to import.
type ImportParams struct {
	Key           kcrypto.JSONWebKey
	Ops           []string
	Attributes    Attributes
	Tags          map[string]string
	ReleasePolicy *ReleasePolicy
}

// UpdateParams change a version. Nil fields are left unchanged; Tags, when
// not nil, replaces all tags.
type UpdateParams struct {
	Ops        []string
	Attributes Attributes
	Tags       map[string]string
	// ReleasePolicy, when not nil, replaces the version's policy, unless
	// that one is immutable.
	ReleasePolicy *ReleasePolicy
}

// Create generates a new key, or a new version of an existing one.
func (s *Service) Create(ctx context.Context, h *domain.HSM, name string, p CreateParams) (*Version, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var k kcrypto.Key
	var err error
	switch p.Type {
	case kcrypto.RSA:
		if p.Curve != "" {
			return nil, fault.Invalidf("crv applies to EC keys only")
		}
		if p.Size == 0 {
			p.Size = 2048
		}
		k, err = kcrypto.GenerateRSA(s.rand, p.Size, p.PublicExponent)
	case kcrypto.EC:
		// Azure ignores key_size for EC keys, and callers send it:
		// sigstore's Azure signer creates {"kty":"EC","key_size":2048}.
		p.Size = 0
		if p.Curve == "" {
			p.Curve = kcrypto.P256
		}
		k, err = kcrypto.GenerateEC(s.rand, p.Curve)
	case kcrypto.Oct:
		if p.Size == 0 {
			p.Size = 256
		}
		k, err = kcrypto.GenerateOct(s.rand, p.Size)
	case kcrypto.MLDSA, kcrypto.MLKEM: // Keyward's post-quantum keys: the parameter set is crv
		if p.Size != 0 {
			return nil, fault.Invalidf("key_size does not apply to %s keys: the parameter set is crv", p.Type)
		}
		if p.Type == kcrypto.MLDSA {
			if p.Curve == "" {
				p.Curve = kcrypto.MLDSA65
			}
			k, err = kcrypto.GenerateMLDSA(s.rand, p.Curve)
		} else {
			if p.Curve == "" {
				p.Curve = kcrypto.MLKEM768
			}
			k, err = kcrypto.GenerateMLKEM(s.rand, p.Curve)
		}
	default:
		return nil, fault.Invalidf("unknown key type %q", p.Type)
	}
	if err != nil {
		return nil, err
	}
	return s.addVersion(ctx, h, name, k, p.Ops, p.Attributes, p.Tags, p.ReleasePolicy)
}

// ErrKEKOps refuses key operations a key-exchange key cannot have.
var ErrKEKOps = fault.New(fault.Invalid, "BadParameter",
	"A key-exchange key (KEK) is an RSA-HSM key whose only operation is import.")

// checkKEKOps refuses import beside other operations, or on a key that is
// not RSA: a key-exchange key does nothing but open transfer blobs.
func checkKEKOps(kty kcrypto.KeyType, ops []string) error {
	if slices.Contains(ops, OpImport) && (kty != kcrypto.RSA || len(ops) != 1) {
		return ErrKEKOps
	}
	return nil
}

// onlyOps are the operations of a key type that cannot do every one of
// Azure's, and false for the others: a post-quantum key does one thing,
// its default operations.
func onlyOps(kty kcrypto.KeyType) ([]string, bool) {
	if kty != kcrypto.MLDSA && kty != kcrypto.MLKEM {
		return nil, false
	}
	return defaultOps[kty], true
}

// checkTypeOps refuses an operation the key's type can never do.
func checkTypeOps(kty kcrypto.KeyType, ops []string) error {
	allowed, ok := onlyOps(kty)
	if !ok {
		return nil
	}
	for _, op := range ops {
		if !slices.Contains(allowed, op) {
			return fault.Invalidf("an %s key can only %s, not %s", kty, strings.Join(allowed, " and "), op)
		}
	}
	return nil
}

// TransferParams import a key sent under a key-exchange key (BYOK).
type TransferParams struct {
	KEKName, KEKVersion string
	Ciphertext          []byte // CKM_RSA_AES_KEY_WRAP
	Type                kcrypto.KeyType
	Curve               kcrypto.Curve
	Ops                 []string
	Attributes          Attributes
	Tags                map[string]string
	ReleasePolicy       *ReleasePolicy
}

// ErrNoKEK is a transfer blob whose key-exchange key is not a usable key
// of this HSM.
var ErrNoKEK = fault.New(fault.Invalid, "BadParameter", "The key transfer blob's key-exchange key (header.kid) is not a key of this HSM.")

// ImportTransfer adds a key sent from another HSM under one of h's
// key-exchange keys (BYOK) as a new version of name. The KEK must be
// usable for import now; its private part never leaves.
func (s *Service) ImportTransfer(ctx context.Context, h *domain.HSM, name string, p TransferParams) (*Version, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := kcrypto.TransferAvailable(); err != nil {
		return nil, err
	}
	kek, err := s.usable(ctx, h, p.KEKName, p.KEKVersion, OpImport)
	if fault.KindOf(err) == fault.NotFound {
		return nil, ErrNoKEK
	}
	if err != nil {
		return nil, err
	}
	if len(kek.meta.Ops) != 1 { // a key that also decrypts opens the blob for anyone
		return nil, ErrKEKOps
	}
	if slices.Contains(p.Ops, OpImport) {
		return nil, ErrKEKOps.With("A key-exchange key is generated in the HSM: imported material cannot be one.")
	}
	k, err := kcrypto.OpenTransferBlob(kek.key, p.Ciphertext, p.Type, p.Curve)
	if err != nil {
		return nil, err
	}
	return s.addVersion(ctx, h, name, k, p.Ops, p.Attributes, p.Tags, p.ReleasePolicy)
}

// Import adds imported key material as a new version of name.
func (s *Service) Import(ctx context.Context, h *domain.HSM, name string, p ImportParams) (*Version, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if slices.Contains(p.Ops, OpImport) {
		return nil, ErrKEKOps.With("A key-exchange key is generated in the HSM: imported material cannot be one.")
	}
	k, err := kcrypto.Import(p.Key)
	if err != nil {
		return nil, err
	}
	return s.addVersion(ctx, h, name, k, p.Ops, p.Attributes, p.Tags, p.ReleasePolicy)
}

func (s *Service) addVersion(ctx context.Context, h *domain.HSM, name string, k kcrypto.Key, ops []string, a Attributes, tags map[string]string, policy *ReleasePolicy) (*Version, error) {
	if ops == nil {
		ops = defaultOps[k.Type()]
	}
	ops, err := checkOps(ops)
	if err != nil {
		return nil, err
	}
	if err := checkKEKOps(k.Type(), ops); err != nil {
		return nil, err
	}
	if err := checkTypeOps(k.Type(), ops); err != nil {
		return nil, err
	}
	if slices.Contains(ops, OpImport) {
		if err := kcrypto.KeyExchangeKeysAvailable(); err != nil {
			return nil, err
		}
	}
	if err := checkTags(tags); err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Second)
	v := store.KeyVersion{HSM: h.Name, Name: name, Version: newVersionID(s.rand), Kty: string(k.Type()), Ops: ops,
		Enabled: true, Created: now, Updated: now, Tags: tags}
	if err := applyAttributes(&v, a); err != nil {
		return nil, err
	}
	if v.ReleasePolicy, err = releaseFields(k, ops, a.Exportable, policy); err != nil {
		return nil, err
	}
	v.Exportable = len(v.ReleasePolicy) > 0
	pub, err := json.Marshal(k.Public())
	if err != nil {
		return nil, fmt.Errorf("keys: encoding public key: %w", err)
	}
	v.Public = pub
	err = s.store.Update(ctx, func(tx store.Tx) error {
		key, err := tx.GetKey(ctx, h.Name, name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			key = &store.Key{HSM: h.Name, Name: name, Created: now}
			if err := tx.PutKey(ctx, key); err != nil {
				return err
			}
		case err != nil:
			return err
		case !key.Deleted.IsZero():
			return deletedConflict(name)
		default:
			latest, err := tx.LatestKeyVersion(ctx, h.Name, name)
			if err != nil {
				return err
			}
			// A name is a key-exchange key's for good, or never: a new
			// version cannot turn a KEK's name into a key that decrypts.
			if slices.Contains(latest.Ops, OpImport) != slices.Contains(v.Ops, OpImport) {
				return ErrKEKOps.With("A new version keeps the key's import operation as it is (a key-exchange key's name stays one).")
			}
			v.Seq = latest.Seq
		}
		v.Name = key.Name // keep the first spelling of a case-insensitive name
		v.Seq++
		if v.Sealed, err = seal(h, k, v.Name, v.Version); err != nil {
			return err
		}
		return tx.InsertKeyVersion(ctx, &v)
	})
	if err != nil {
		return nil, err
	}
	s.publish(h, events.KeyNewVersionCreated, v.Name, v.Version, v.NotBefore, v.Expires)
	return s.view(h, &v, nil), nil
}

func deletedConflict(name string) error {
	return ErrConflict.With("Key %s is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.", name)
}

// newVersionID returns 32 lowercase hex characters, as Azure's versions.
func newVersionID(rand io.Reader) string {
	b := make([]byte, 16)
	if _, err := io.ReadFull(rand, b); err != nil {
		panic("keys: reading randomness: " + err.Error())
	}
	return hex.EncodeToString(b)
}

func applyAttributes(v *store.KeyVersion, a Attributes) error {
	if a.Enabled != nil {
		v.Enabled = *a.Enabled
	}
	if a.NotBefore != nil {
		v.NotBefore = a.NotBefore.UTC()
	}
	if a.Expires != nil {
		v.Expires = a.Expires.UTC()
	}
	if !v.NotBefore.IsZero() && !v.Expires.IsZero() && !v.NotBefore.Before(v.Expires) {
		return fault.Invalidf("nbf must be before exp")
	}
	return nil
}

// materialAAD binds sealed key material to its domain, key and version.
func materialAAD(domainID, name, version string) []byte {
	return []byte("keyward key material\x00" + domainID + "\x00" + strings.ToLower(name) + "\x00" + version)
}

func seal(h *domain.HSM, k kcrypto.Key, name, version string) ([]byte, error) {
	raw, err := kcrypto.MarshalPrivate(k)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	return h.Key.Encrypt(raw, materialAAD(h.DomainID, name, version))
}

func unseal(h *domain.HSM, v *store.KeyVersion) (kcrypto.Key, error) {
	raw, err := h.Key.Decrypt(v.Sealed, materialAAD(h.DomainID, v.Name, v.Version))
	if err != nil {
		return nil, fmt.Errorf("keys: unsealing %s/%s: %w", v.Name, v.Version, err)
	}
	defer clear(raw)
	return kcrypto.ParsePrivate(raw)
}

// view turns a stored version into what callers see.
func (s *Service) view(h *domain.HSM, v *store.KeyVersion, key *store.Key) *Version {
	out := &Version{Name: v.Name, Version: v.Version, Type: kcrypto.KeyType(v.Kty), Ops: v.Ops, Enabled: v.Enabled,
		NotBefore: v.NotBefore, Expires: v.Expires, Created: v.Created, Updated: v.Updated, Tags: v.Tags,
		Exportable: v.Exportable, ReleasePolicy: decodePolicy(v.ReleasePolicy), RecoverableDays: h.RetentionDays, RecoveryLevel: recoveryLevel(h)}
	_ = json.Unmarshal(v.Public, &out.Public) // written by this package; cannot fail
	if key != nil {
		out.Deleted, out.ScheduledPurge = key.Deleted, key.ScheduledPurge
	}
	return out
}

func recoveryLevel(h *domain.HSM) string {
	level := "Recoverable"
	if h.RetentionDays < 90 {
		level = "CustomizedRecoverable"
	}
	if !h.PurgeProtection {
		level += "+Purgeable"
	}
	return level
}

// liveVersion loads a version of a live key; version "" is the latest.
func liveVersion(ctx context.Context, tx store.Tx, hsm, name, version string) (*store.Key, *store.KeyVersion, error) {
	key, err := tx.GetKey(ctx, hsm, name)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !key.Deleted.IsZero()) {
		return nil, nil, notFound(name, version)
	}
	if err != nil {
		return nil, nil, err
	}
	var v *store.KeyVersion
	if version == "" {
		v, err = tx.LatestKeyVersion(ctx, hsm, name)
	} else {
		v, err = tx.GetKeyVersion(ctx, hsm, name, version)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, notFound(name, version)
	}
	return key, v, err
}

func notFound(name, version string) error {
	id := name
	if version != "" {
		id += "/" + version
	}
	return ErrKeyNotFound.With("A key with (name/id) %s was not found in this key vault", id)
}

// Get returns a version of a live key; version "" is the latest.
func (s *Service) Get(ctx context.Context, h *domain.HSM, name, version string) (*Version, error) {
	// A version the cryptographic operations keep is read from the cache,
	// which the change feed keeps current; a miss reads the store without
	// unsealing (a read of metadata need not pay for parsing the key).
	if e, _ := s.cache.get(h.Name, name, version); e != nil {
		m := e.meta
		return s.view(h, &m, nil), nil
	}
	v, err := s.readLiveVersion(ctx, h, name, version)
	if err != nil {
		return nil, err
	}
	return s.view(h, v, nil), nil
}

// readLiveVersion reads a version of a live key in a read transaction of
// its own; version "" is the latest.
func (s *Service) readLiveVersion(ctx context.Context, h *domain.HSM, name, version string) (v *store.KeyVersion, err error) {
	err = s.store.View(ctx, func(tx store.Tx) (lerr error) {
		_, v, lerr = liveVersion(ctx, tx, h.Name, name, version)
		return lerr
	})
	return v, err
}

// Page is one page of a listing. Next is the cursor of the following page,
// empty on the last one.
type Page struct {
	Items []*Version
	Next  string
}

// MaxPageSize bounds list pages, as Azure's maxresults (1..25).
const MaxPageSize = 25

func pageSize(n int) (int, error) {
	if n == 0 {
		return MaxPageSize, nil
	}
	if n < 1 || n > MaxPageSize {
		return 0, fault.Invalidf("maxresults must be between 1 and %d", MaxPageSize)
	}
	return n, nil
}

// List returns live keys (each with its latest version) after cursor.
func (s *Service) List(ctx context.Context, h *domain.HSM, cursor string, max int) (*Page, error) {
	return s.listKeys(ctx, h, false, cursor, max)
}

// ListDeleted returns deleted keys after cursor.
func (s *Service) ListDeleted(ctx context.Context, h *domain.HSM, cursor string, max int) (*Page, error) {
	return s.listKeys(ctx, h, true, cursor, max)
}

func (s *Service) listKeys(ctx context.Context, h *domain.HSM, deleted bool, cursor string, max int) (*Page, error) {
	n, err := pageSize(max)
	if err != nil {
		return nil, err
	}
	var items []store.KeyListItem
	err = s.store.View(ctx, func(tx store.Tx) (err error) {
		items, err = tx.ListKeys(ctx, h.Name, deleted, cursor, n+1)
		return err
	})
	if err != nil {
		return nil, err
	}
	page := &Page{}
	if len(items) > n {
		items = items[:n]
		page.Next = items[n-1].Key.Name
	}
	for i := range items {
		page.Items = append(page.Items, s.view(h, &items[i].Latest, &items[i].Key))
	}
	return page, nil
}

// ListVersions returns the versions of a live key, oldest first.
func (s *Service) ListVersions(ctx context.Context, h *domain.HSM, name, cursor string, max int) (*Page, error) {
	n, err := pageSize(max)
	if err != nil {
		return nil, err
	}
	var after int64
	if cursor != "" {
		if _, err := fmt.Sscanf(cursor, "%d", &after); err != nil {
			return nil, fault.Invalidf("the page token is not valid")
		}
	}
	var vs []store.KeyVersion
	err = s.store.View(ctx, func(tx store.Tx) error {
		if _, _, err := liveVersion(ctx, tx, h.Name, name, ""); err != nil {
			return err
		}
		var err error
		vs, err = tx.ListKeyVersions(ctx, h.Name, name, after, n+1)
		return err
	})
	if err != nil {
		return nil, err
	}
	page := &Page{}
	if len(vs) > n {
		vs = vs[:n]
		page.Next = fmt.Sprint(vs[n-1].Seq)
	}
	for i := range vs {
		page.Items = append(page.Items, s.view(h, &vs[i], nil))
	}
	return page, nil
}

// Update changes the attributes, operations or tags of a version.
func (s *Service) Update(ctx context.Context, h *domain.HSM, name, version string, p UpdateParams) (*Version, error) {
	var err error
	if p.Ops, err = checkOps(p.Ops); err != nil {
		return nil, err
	}
	if p.Tags != nil {
		if err := checkTags(p.Tags); err != nil {
			return nil, err
		}
	}
	var v *store.KeyVersion
	err = s.store.Update(ctx, func(tx store.Tx) (err error) {
		if _, v, err = liveVersion(ctx, tx, h.Name, name, version); err != nil {
			return err
		}
		if err := applyAttributes(v, p.Attributes); err != nil {
			return err
		}
		if err := updateRelease(v, p.Attributes.Exportable, p.ReleasePolicy); err != nil {
			return err
		}
		if p.Ops != nil {
			// A key-exchange key stays one, and no other key becomes one.
			if slices.Contains(v.Ops, OpImport) != slices.Contains(p.Ops, OpImport) {
				return ErrKEKOps.With("A key's import operation (a key-exchange key's) cannot be added or taken away: create a new key.")
			}
			if err := checkKEKOps(kcrypto.KeyType(v.Kty), p.Ops); err != nil {
				return err
			}
			if err := checkTypeOps(kcrypto.KeyType(v.Kty), p.Ops); err != nil {
				return err
			}
			v.Ops = p.Ops
		}
		if p.Tags != nil {
			v.Tags = p.Tags
		}
		v.Updated = s.now().UTC().Truncate(time.Second)
		return tx.UpdateKeyVersion(ctx, v)
	})
	if err != nil {
		return nil, err
	}
	return s.view(h, v, nil), nil
}

// Delete soft-deletes a key with all its versions and returns the latest.
func (s *Service) Delete(ctx context.Context, h *domain.HSM, name string) (*Version, error) {
	var key *store.Key
	var v *store.KeyVersion
	err := s.store.Update(ctx, func(tx store.Tx) (err error) {
		if key, v, err = liveVersion(ctx, tx, h.Name, name, ""); err != nil {
			return err
		}
		key.Deleted = s.now().UTC().Truncate(time.Second)
		key.ScheduledPurge = key.Deleted.AddDate(0, 0, h.RetentionDays)
		return tx.PutKey(ctx, key)
	})
	if err != nil {
		return nil, err
	}
	return s.view(h, v, key), nil
}

func deletedKey(ctx context.Context, tx store.Tx, hsm, name string) (*store.Key, *store.KeyVersion, error) {
	key, err := tx.GetKey(ctx, hsm, name)
	if errors.Is(err, store.ErrNotFound) || (err == nil && key.Deleted.IsZero()) {
		return nil, nil, ErrKeyNotFound.With("Deleted Key not found: %s", name)
	}
	if err != nil {
		return nil, nil, err
	}
	v, err := tx.LatestKeyVersion(ctx, hsm, name)
	return key, v, err
}

// GetDeleted returns a deleted key.
func (s *Service) GetDeleted(ctx context.Context, h *domain.HSM, name string) (*Version, error) {
	var key *store.Key
	var v *store.KeyVersion
	err := s.store.View(ctx, func(tx store.Tx) (err error) {
		key, v, err = deletedKey(ctx, tx, h.Name, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.view(h, v, key), nil
}

// Recover brings a deleted key back with all its versions.
func (s *Service) Recover(ctx context.Context, h *domain.HSM, name string) (*Version, error) {
	var v *store.KeyVersion
	err := s.store.Update(ctx, func(tx store.Tx) error {
		key, latest, err := deletedKey(ctx, tx, h.Name, name)
		if err != nil {
			return err
		}
		v = latest
		key.Deleted, key.ScheduledPurge = time.Time{}, time.Time{}
		return tx.PutKey(ctx, key)
	})
	if err != nil {
		return nil, err
	}
	return s.view(h, v, nil), nil
}

// Purge removes a deleted key for good.
func (s *Service) Purge(ctx context.Context, h *domain.HSM, name string) error {
	if h.PurgeProtection {
		return ErrOperationForbidden.With("purge protection is on for this HSM: deleted keys are purged only when their retention ends")
	}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		if _, _, err := deletedKey(ctx, tx, h.Name, name); err != nil {
			return err
		}
		return tx.PurgeKey(ctx, h.Name, name)
	})
	if err != nil {
		return err
	}
	return nil
}

// PurgeDue purges a deleted key whose retention has ended (its scheduled
// purge date has come), as Azure does by itself, purge protection or not.
// It reports whether it purged: a key recovered, or not yet due, stays.
func (s *Service) PurgeDue(ctx context.Context, h *domain.HSM, name string) (bool, error) {
	purged := false
	err := s.store.Update(ctx, func(tx store.Tx) error {
		key, _, err := deletedKey(ctx, tx, h.Name, name)
		if errors.Is(err, ErrKeyNotFound) {
			return nil
		}
		if err != nil || key.ScheduledPurge.IsZero() || s.now().Before(key.ScheduledPurge) {
			return err
		}
		purged = true
		return tx.PurgeKey(ctx, h.Name, name)
	})
	return purged && err == nil, err
}

// RandomBytes returns n random bytes, 1 to 128.
func (s *Service) RandomBytes(n int) ([]byte, error) {
	if n < 1 || n > 128 {
		return nil, fault.Invalidf("count must be between 1 and 128")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return nil, fmt.Errorf("keys: reading randomness: %w", err)
	}
	return b, nil
}
