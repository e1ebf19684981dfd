package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/keyward/keyward/internal/backup/format"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/store"
)

// ErrBadBackup is returned for a backup blob that is malformed, altered or
// made under another security domain.
var ErrBadBackup = fault.New(fault.Invalid, "BadParameter", "the backup blob is not valid for this HSM")

func backupAAD(domainID string) []byte { return []byte("keyward key backup\x00" + domainID) }

// Backup returns an opaque blob holding every version of a live key: a
// format.KeyBackup, each version's material still sealed as stored, the
// whole sealed again under the domain key.
func (s *Service) Backup(ctx context.Context, h *domain.HSM, name string) ([]byte, error) {
	b := format.KeyBackup{Format: format.Version, DomainID: h.DomainID}
	err := s.store.View(ctx, func(tx store.Tx) error {
		key, _, err := liveVersion(ctx, tx, h.Name, name, "")
		if err != nil {
			return err
		}
		b.Key = format.FromKey(key)
		var after int64
		for {
			vs, err := tx.ListKeyVersions(ctx, h.Name, name, after, 100)
			if err != nil {
				return err
			}
			if len(vs) == 0 {
				return nil
			}
			b.Versions = append(b.Versions, format.FromKeyVersions(vs)...)
			after = vs[len(vs)-1].Seq
		}
	})
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("keys: encoding backup: %w", err)
	}
	return h.Key.Encrypt(plain, backupAAD(h.DomainID))
}

// openBackup opens a key backup blob sealed under h's domain key and
// checks that every version's material opens here, before anything is
// written.
func openBackup(h *domain.HSM, blob []byte) (*format.KeyBackup, error) {
	plain, err := h.Key.Decrypt(blob, backupAAD(h.DomainID))
	if err != nil {
		return nil, ErrBadBackup
	}
	defer clear(plain)
	var b format.KeyBackup
	if err := json.Unmarshal(plain, &b); err != nil || b.Format != format.Version || b.DomainID != h.DomainID || len(b.Versions) == 0 {
		return nil, ErrBadBackup
	}
	if err := checkName(b.Key.Name); err != nil {
		return nil, ErrBadBackup
	}
	for i := range b.Versions {
		if b.Versions[i].Name != b.Key.Name {
			return nil, ErrBadBackup
		}
		ops, err := restoredOps(kcrypto.KeyType(b.Versions[i].Kty), b.Versions[i].Ops)
		if err != nil {
			return nil, ErrBadBackup
		}
		b.Versions[i].Ops = ops
		v := b.Versions[i].Store()
		if _, err := unseal(h, &v); err != nil {
			return nil, ErrBadBackup
		}
	}
	return &b, nil
}

// restoredOps applies today's rules on key operations to a version from a
// backup, which may predate them. A version that carries import beside
// other operations (or on a key that is not RSA) loses import: it keeps
// working for everything else, and opens no transfer blob, which a key
// that also decrypts or was never generated here must not.
func restoredOps(kty kcrypto.KeyType, ops []string) ([]string, error) {
	if ops == nil {
		return nil, nil
	}
	ops, err := checkOps(ops)
	if err != nil {
		return nil, err
	}
	if checkKEKOps(kty, ops) != nil {
		ops = slices.DeleteFunc(ops, func(op string) bool { return op == OpImport })
	}
	if allowed, ok := onlyOps(kty); ok {
		ops = slices.DeleteFunc(ops, func(op string) bool { return !slices.Contains(allowed, op) })
	}
	return ops, nil
}

// Restore recreates a key from a backup blob, with its name, versions and
// attributes. It fails with a conflict when the name exists, live or
// deleted.
func (s *Service) Restore(ctx context.Context, h *domain.HSM, blob []byte) (*Version, error) {
	b, err := openBackup(h, blob)
	if err != nil {
		return nil, err
	}
	latest := b.Versions[len(b.Versions)-1].Store()
	err = s.store.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.GetKey(ctx, h.Name, b.Key.Name); err == nil {
			return ErrConflict.With("a key named %s already exists, live or deleted", b.Key.Name)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		k := b.Key.Store()
		k.HSM = h.Name
		if err := tx.PutKey(ctx, &k); err != nil {
			return err
		}
		for i := range b.Versions {
			v := b.Versions[i].Store()
			v.HSM = h.Name
			if err := tx.InsertKeyVersion(ctx, &v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.view(h, &latest, nil), nil
}
