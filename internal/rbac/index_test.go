package rbac

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// TestPatchedIndexIsRebuiltIndex makes random changes to an HSM's
// assignments and custom roles, committed in batches, and checks after
// each batch that the index the service patched from the change feed is
// the index a rebuild from the store gives: the same list, in order, and
// the same grants for every principal.
func TestPatchedIndexIsRebuiltIndex(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := &domain.HSM{ID: "pool", Name: "Pool"}
	s := NewService(db, identity.NewDirectory(db, "t", rand.Reader, time.Now), time.Now)
	rng := mrand.New(mrand.NewPCG(1, 2))
	roles := []string{CryptoUserID, CryptoAuditorID, BackupUserID}
	custom := "6a1f7b4c-0d3e-4b8a-9c2d-5e6f7a8b9c0d"
	var live []string
	next := 0
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	patches := 0
	for batch := range 60 {
		err := db.Update(ctx, func(tx store.Tx) error {
			for range 1 + rng.IntN(5) {
				switch op := rng.IntN(10); {
				case op < 6 || len(live) == 0:
					next++
					clock = clock.Add(time.Duration(rng.IntN(2)) * time.Second) // equal times too: ordered by id
					id := fmt.Sprintf("%08x-0000-4000-8000-%012x", rng.Uint32(), next)
					a := &store.RoleAssignment{HSM: h.Name, ID: id, Scope: fmt.Sprintf("/keys/k%d", rng.IntN(4)),
						RoleDefinitionID: roles[rng.IntN(len(roles))], PrincipalID: fmt.Sprintf("p%d", rng.IntN(6)), Created: clock}
					if rng.IntN(4) == 0 {
						a.Scope = "/"
					}
					if err := tx.InsertRoleAssignment(ctx, a); err != nil {
						return err
					}
					live = append(live, id)
				case op < 9:
					i := rng.IntN(len(live))
					if err := tx.DeleteRoleAssignment(ctx, h.Name, live[i]); err != nil {
						return err
					}
					live = slices.Delete(live, i, i+1)
				default: // a custom role appears or changes: a rebuild
					if err := tx.PutRoleDefinition(ctx, &store.RoleDefinition{HSM: h.Name, ID: custom, Name: "signer",
						Permissions: []store.Permission{{DataActions: []string{string(KeysSign)}}}, AssignableScopes: []string{"/"},
						Created: clock, Updated: clock.Add(time.Duration(batch))}); err != nil {
						return err
					}
					roles = append(roles[:3], custom)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s.ixs.mu.Lock()
		pending := len(s.ixs.pending[strings.ToLower(h.Name)])
		s.ixs.mu.Unlock()
		if pending > 0 && s.ixs.ix[strings.ToLower(h.Name)] != nil {
			patches++
		}
		got, err := s.index(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		var customs []*store.RoleDefinition
		var all []*store.RoleAssignment
		db.View(ctx, func(tx store.Tx) error {
			customs, _ = tx.ListRoleDefinitions(ctx, h.Name)
			all, err = tx.ListRoleAssignments(ctx, h.Name)
			return err
		})
		if want := buildIndex(customs, all); describe(got) != describe(want) {
			t.Fatalf("batch %d: the patched index differs from a rebuild:\n%s\nwant\n%s", batch, describe(got), describe(want))
		}
	}
	if patches < 30 {
		t.Fatalf("only %d of 60 batches were patched", patches)
	}
}

// describe writes an index's list and grants out, for comparison.
func describe(ix *index) string {
	var b strings.Builder
	for _, a := range ix.all {
		fmt.Fprintf(&b, "%s ", a.ID)
	}
	principals := slices.Sorted(func(yield func(string) bool) {
		for p := range ix.byPrincipal {
			if !yield(p) {
				return
			}
		}
	})
	for _, p := range principals {
		fmt.Fprintf(&b, "\n%s:", p)
		for _, g := range ix.byPrincipal[p] {
			fmt.Fprintf(&b, " %s/%s/%s/%d", g.assignment, g.role, g.scope, len(g.actions))
		}
	}
	return b.String()
}
