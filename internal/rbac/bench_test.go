package rbac

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/postgres"
	"github.com/keyward/keyward/internal/store/sqlite"
	"github.com/keyward/keyward/internal/testenv"
)

// BenchmarkAuthorize decides requests on an HSM at the scale of issue 17:
// 100,000 role assignments, 10,000 users in 1,000 groups (half of them
// inside another group), a third of the assignments to users, the rest to
// groups, at 10,000 key scopes (ten each, the most a key scope takes). The caller is granted through a group
// inside a group.
//
//	go test ./internal/rbac -run '^$' -bench Authorize
func BenchmarkAuthorize(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		benchAuthorize(b, db)
	})
	b.Run("postgres", func(b *testing.B) {
		db, err := postgres.Open(context.Background(), testenv.StartPostgres(b))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		benchAuthorize(b, db)
	})
}

func benchAuthorize(b *testing.B, db store.Store) {
	ctx := context.Background()
	const groups, users, assignments, keys = 1000, 10000, 100000, 10000
	h := &domain.HSM{ID: "bench", Name: "bench"}
	user := "u00005"
	err := db.Update(ctx, func(tx store.Tx) error {
		ins := func(id, kind string) error {
			return tx.InsertPrincipal(ctx, &store.Principal{ID: id, Kind: kind, DisplayName: id})
		}
		for g := range groups {
			if err := ins(fmt.Sprintf("g%04d", g), store.KindGroup); err != nil {
				return err
			}
		}
		for g := range groups {
			if g < groups/2 { // g0000..g0499 each inside g0500..g0999
				if err := tx.AddMember(ctx, fmt.Sprintf("g%04d", groups/2+g), fmt.Sprintf("g%04d", g)); err != nil {
					return err
				}
			}
		}
		for u := range users { // ten users in each group
			if err := ins(fmt.Sprintf("u%05d", u), store.KindUser); err != nil {
				return err
			}
			if err := tx.AddMember(ctx, fmt.Sprintf("g%04d", u%groups), fmt.Sprintf("u%05d", u)); err != nil {
				return err
			}
		}
		roles := []string{CryptoAuditorID, CryptoUserID, ServiceEncryptionID, BackupUserID}
		for i := range assignments {
			principal := fmt.Sprintf("g%04d", i%groups)
			if i%3 == 0 {
				principal = fmt.Sprintf("u%05d", i%users)
			}
			scope := fmt.Sprintf("/keys/k%04d", i%keys)
			if err := tx.InsertRoleAssignment(ctx, &store.RoleAssignment{HSM: h.Name, ID: fmt.Sprintf("a%06d", i), Scope: scope,
				RoleDefinitionID: roles[i%len(roles)], PrincipalID: principal}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	dir := identity.NewDirectory(db, "t", rand.Reader, time.Now)
	s := NewService(db, dir, time.Now)
	caller := &identity.Caller{ObjectID: user}
	// a000505 grants Crypto User to g0505 (which holds g0005, which holds
	// the caller) at /keys/k0505.
	allow := Request{HSM: h, Caller: caller, Action: KeysSign, Scope: "/keys/k0505"}
	deny := Request{HSM: h, Caller: caller, Action: KeysSign, Scope: "/keys/k9999"}
	if err := s.Authorize(ctx, allow); err != nil {
		b.Fatalf("expected allow: %v", err)
	}
	if err := s.Authorize(ctx, deny); err == nil {
		b.Fatal("expected deny")
	}
	b.Run("allow", func(b *testing.B) {
		for b.Loop() {
			if err := s.Authorize(ctx, allow); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("deny", func(b *testing.B) {
		for b.Loop() {
			if err := s.Authorize(ctx, deny); err == nil {
				b.Fatal("allowed")
			}
		}
	})
	b.Run("change", func(b *testing.B) { // one assignment made, the next decision
		i := 0
		for b.Loop() {
			i++
			err := db.Update(ctx, func(tx store.Tx) error {
				return tx.InsertRoleAssignment(ctx, &store.RoleAssignment{HSM: h.Name, ID: fmt.Sprintf("new%06d", i), Scope: "/keys/k0001",
					RoleDefinitionID: CryptoUserID, PrincipalID: user, Created: time.Now()})
			})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Authorize(ctx, allow); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("assign", func(b *testing.B) { // the API's path: checks, insert, then a decision
		for b.Loop() {
			a, err := s.Assign(ctx, h, Assignment{ID: uuid.NewString(), Scope: "/keys/another", RoleID: CryptoUserID, PrincipalID: user})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Unassign(ctx, h, a.ID); err != nil {
				b.Fatal(err)
			}
			if err := s.Authorize(ctx, allow); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rebuild", func(b *testing.B) { // after a custom role's change, or a restore
		for b.Loop() {
			s.invalidate(h.Name)
			if err := s.Authorize(ctx, allow); err != nil {
				b.Fatal(err)
			}
		}
	})
}
