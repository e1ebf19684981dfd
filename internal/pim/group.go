package pim

import (
	"context"
	"errors"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// groupProvisioner makes group access real as a directory membership
// bounded in time: the directory counts it only inside its window, so
// access ends at its end time even before anything removes it.
type groupProvisioner struct{}

func (groupProvisioner) Check(ctx context.Context, tx store.Tx, t Target, principalID string) (string, error) {
	g, err := tx.GetPrincipal(ctx, t.GroupID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && g.Kind != store.KindGroup) {
		return "", ErrTargetNotFound.With("The group %s does not exist.", t.GroupID)
	}
	if err != nil {
		return "", err
	}
	if principalID == "" {
		return "", nil
	}
	if principalID == t.GroupID {
		return "", ErrBadRequest.With("A group cannot be a member of itself.")
	}
	p, err := tx.GetPrincipal(ctx, principalID)
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrTargetNotFound.With("The principal %s does not exist.", principalID)
	}
	if err != nil {
		return "", err
	}
	return p.Kind, nil
}

func (groupProvisioner) membership(ctx context.Context, tx store.Tx, t Target, principalID string) (*store.Membership, error) {
	ms, err := tx.Memberships(ctx, principalID)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.GroupID == t.GroupID {
			return &m, nil
		}
	}
	return nil, nil
}

func (p groupProvisioner) Grant(ctx context.Context, tx store.Tx, t Target, principalID string, start, end time.Time, _ string) error {
	if t.AccessID != "member" {
		return nil // Keyward's groups have no owners: ownership is recorded only
	}
	m, err := p.membership(ctx, tx, t, principalID)
	if err != nil {
		return err
	}
	if m != nil && m.Since.IsZero() && m.Until.IsZero() {
		return nil // a standing member already
	}
	// Since is always set: a membership PIM made is never a standing one,
	// which PIM leaves alone (and which the outside-PIM alert reports).
	return tx.PutMembership(ctx, &store.Membership{GroupID: t.GroupID, MemberID: principalID, Since: start, Until: end})
}

func (p groupProvisioner) Revoke(ctx context.Context, tx store.Tx, t Target, principalID, _ string) error {
	if t.AccessID != "member" {
		return nil
	}
	m, err := p.membership(ctx, tx, t, principalID)
	if err != nil || m == nil || (m.Since.IsZero() && m.Until.IsZero()) {
		return err
	}
	err = tx.RemoveMember(ctx, t.GroupID, principalID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}
