package storetest

import (
	"testing"

	"github.com/keyward/keyward/internal/store"
)

// testMemberships: memberships bounded in time are kept with their window,
// listed from both sides, and PutMembership replaces a window.
func testMemberships(t *testing.T, s store.Store) {
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, p := range []*store.Principal{principal("g1", store.KindGroup, ""), principal("g2", store.KindGroup, ""),
			principal("a", store.KindUser, "a"), principal("b", store.KindUser, "b")} {
			if err := tx.InsertPrincipal(ctx, p); err != nil {
				return err
			}
		}
		if err := tx.AddMember(ctx, "g2", "a"); err != nil {
			return err
		}
		return tx.PutMembership(ctx, &store.Membership{GroupID: "g1", MemberID: "a", Since: t0, Until: t0.Add(60e9)})
	})
	wantErr(t, "a window for an unknown member", update(t, s, func(tx store.Tx) error {
		return tx.PutMembership(ctx, &store.Membership{GroupID: "g1", MemberID: "nobody", Until: t0})
	}), store.ErrConflict)
	ms, err := view(t, s, func(tx store.Tx) ([]store.Membership, error) { return tx.Memberships(ctx, "a") })
	if err != nil || len(ms) != 2 || ms[0].GroupID != "g1" || !ms[0].Since.Equal(t0) || !ms[0].Until.Equal(t0.Add(60e9)) ||
		ms[1].GroupID != "g2" || !ms[1].Since.IsZero() || !ms[1].Until.IsZero() {
		t.Fatalf("Memberships of a: %+v, %v", ms, err)
	}
	if !ms[0].CountsAt(t0) || ms[0].CountsAt(t0.Add(60e9)) || ms[0].CountsAt(t0.Add(-1e9)) || !ms[1].CountsAt(t0) {
		t.Fatalf("CountsAt is wrong for %+v", ms)
	}
	// Unbounded listings still show the bounded membership.
	groups, err := view(t, s, func(tx store.Tx) ([]string, error) { return tx.GroupsOf(ctx, "a") })
	if err != nil || len(groups) != 2 {
		t.Fatalf("GroupsOf a: %v, %v", groups, err)
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		return tx.PutMembership(ctx, &store.Membership{GroupID: "g1", MemberID: "a", Until: t0.Add(120e9)})
	})
	mustUpdate(t, s, func(tx store.Tx) error {
		return tx.PutMembership(ctx, &store.Membership{GroupID: "g1", MemberID: "b", Until: t0.Add(30e9)})
	})
	ms, err = view(t, s, func(tx store.Tx) ([]store.Membership, error) { return tx.GroupMemberships(ctx, "g1") })
	if err != nil || len(ms) != 2 || ms[0].MemberID != "a" || !ms[0].Since.IsZero() || !ms[0].Until.Equal(t0.Add(120e9)) || ms[1].MemberID != "b" {
		t.Fatalf("GroupMemberships of g1: %+v, %v", ms, err)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.RemoveMember(ctx, "g1", "a") })
	ms, err = view(t, s, func(tx store.Tx) ([]store.Membership, error) { return tx.Memberships(ctx, "a") })
	if err != nil || len(ms) != 1 {
		t.Fatalf("after removal: %+v, %v", ms, err)
	}
}
