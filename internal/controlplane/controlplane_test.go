package controlplane

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// TestCreateIsOneTransaction: an HSM whose administrators cannot be
// seeded (one is not in the directory) is not created at all, and one
// that can is created with its administrator's role.
func TestCreateIsOneTransaction(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seal, err := domain.OpenFileSeal(filepath.Join(t.TempDir(), "seal"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := identity.NewDirectory(db, "tenant", rand.Reader, time.Now)
	reg := domain.NewRegistry(db, seal, rand.Reader, time.Now, nil)
	s := &Service{HSMs: reg, RBAC: rbac.NewService(db, dir, time.Now), Store: db, Dir: dir}
	admin, err := dir.CreateGroup(ctx, "admins", "admins")
	if err != nil {
		t.Fatal(err)
	}

	_, err = s.Create(ctx, domain.CreateParams{Name: "orphan", Admins: []string{admin.ID, "00000000-0000-0000-0000-000000000000"}})
	if !errors.Is(err, rbac.ErrPrincipalNotFound) {
		t.Fatalf("creating with an unknown administrator: %v", err)
	}
	if _, err := reg.Get(ctx, "orphan"); !errors.Is(err, domain.ErrHSMNotFound) {
		t.Fatalf("the HSM whose roles failed exists: %v", err)
	}

	h, err := s.Create(ctx, domain.CreateParams{Name: "pool", Admins: []string{admin.ID}})
	if err != nil {
		t.Fatal(err)
	}
	as, err := s.RBAC.Assignments(ctx, h, rbac.Filter{Scope: "/", AtScope: true, PrincipalID: admin.ID})
	if err != nil || len(as) != 1 || as[0].RoleID != rbac.AdministratorID {
		t.Fatalf("the administrator's assignments: %+v, %v", as, err)
	}
}
