package rbac

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// BenchmarkAuthorize decides requests on an HSM with 10,000 role
// assignments and 1,000 groups; the caller belongs to 20 groups, two
// levels deep, and is granted through one of them at a key scope.
//
//	go test ./internal/rbac -run '^$' -bench Authorize
func BenchmarkAuthorize(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const groups, assignments, keys = 1000, 10000, 500
	h := &domain.HSM{ID: "bench", Name: "bench"}
	user := "caller"
	err = db.Update(ctx, func(tx store.Tx) error {
		ins := func(id, kind string) error {
			return tx.InsertPrincipal(ctx, &store.Principal{ID: id, Kind: kind, DisplayName: id})
		}
		if err := ins(user, store.KindUser); err != nil {
			return err
		}
		for g := range groups {
			if err := ins(fmt.Sprintf("g%04d", g), store.KindGroup); err != nil {
				return err
			}
		}
		for g := range 10 { // member of g0000..g0009, each inside another group
			if err := tx.AddMember(ctx, fmt.Sprintf("g%04d", g), user); err != nil {
				return err
			}
			if err := tx.AddMember(ctx, fmt.Sprintf("g%04d", 500+g), fmt.Sprintf("g%04d", g)); err != nil {
				return err
			}
		}
		roles := []string{CryptoAuditorID, CryptoUserID, ServiceEncryptionID, BackupUserID}
		for i := range assignments {
			principal := fmt.Sprintf("g%04d", i%groups)
			if i%3 == 0 {
				principal = fmt.Sprintf("user-%d", i)
			}
			scope := fmt.Sprintf("/keys/k%03d", i%keys)
			if err := tx.InsertRoleAssignment(ctx, &store.RoleAssignment{HSM: h.Name, ID: fmt.Sprintf("a%05d", i), Scope: scope,
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
	// a00505 grants Crypto User to g0505 (which holds g0005, which holds
	// the caller) at /keys/k005.
	allow := Request{HSM: h, Caller: caller, Action: KeysSign, Scope: "/keys/k005"}
	deny := Request{HSM: h, Caller: caller, Action: KeysSign, Scope: "/keys/k499"}
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
	b.Run("rebuild", func(b *testing.B) { // the cost after every role change
		for b.Loop() {
			s.invalidate(h.Name)
			if err := s.Authorize(ctx, allow); err != nil {
				b.Fatal(err)
			}
		}
	})
}
