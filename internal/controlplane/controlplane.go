// Package controlplane creates and removes Managed HSMs: the registry
// entry with its domain key, the initial administrators' roles, and, on
// removal, the HSM with everything it holds.
package controlplane

import (
	"context"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/store"
)

// Service manages HSMs, resource groups and managed identities.
type Service struct {
	HSMs  *domain.Registry
	RBAC  *rbac.Service
	Keys  *keys.Service
	Store store.Store
	Dir   *identity.Directory
}

// Create makes a new HSM, not activated, whose initial administrators
// hold Managed HSM Administrator at "/": both in one transaction, so there
// is never an HSM without its administrators.
func (s *Service) Create(ctx context.Context, p domain.CreateParams) (h *domain.HSM, err error) {
	err = s.Store.Update(ctx, func(tx store.Tx) (err error) {
		if h, err = s.HSMs.CreateTx(ctx, tx, p); err != nil {
			return err
		}
		return s.RBAC.SeedInitialRolesTx(ctx, tx, h, nil)
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// Delete removes an HSM with all its keys and roles. The caches let go
// of it through the store's change feed.
func (s *Service) Delete(ctx context.Context, name string) error {
	return s.HSMs.Delete(ctx, name)
}
