package rbac

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

func TestInitialAdminsDenyByDefault(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dir := identity.NewDirectory(db, "t", rand.Reader, time.Now)
	admins, _ := dir.CreateGroup(ctx, "Security Team", "sec")
	alice, _ := dir.CreateUser(ctx, "Alice", "alice@x.test", "password1")
	bob, _ := dir.CreateUser(ctx, "Bob", "bob@x.test", "password1")
	app, _ := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "app")
	if err := dir.AddMember(ctx, admins.ID, alice.ID); err != nil {
		t.Fatal(err)
	}
	h := &domain.HSM{Name: "h", Admins: []string{admins.ID, app.ID}}
	a := InitialAdmins{Dir: dir}

	cases := map[string]struct {
		caller *identity.Caller
		allow  bool
	}{
		"admin by group":  {&identity.Caller{ObjectID: alice.ID}, true},
		"admin directly":  {&identity.Caller{ObjectID: app.ID}, true},
		"not an admin":    {&identity.Caller{ObjectID: bob.ID}, false},
		"unknown object":  {&identity.Caller{ObjectID: "00000000-0000-0000-0000-000000000000"}, false},
		"no caller":       {nil, false},
		"group id itself": {&identity.Caller{ObjectID: "sec"}, false},
	}
	for name, c := range cases {
		for _, action := range []Action{KeysCreate, KeysSign, DeletedKeysPurge, RNG} {
			err := a.Authorize(ctx, Request{HSM: h, Caller: c.caller, Action: action, Scope: "/keys"})
			if c.allow != (err == nil) {
				t.Errorf("%s / %s: err = %v", name, action, err)
			}
			if err != nil && !errors.Is(err, ErrDenied) {
				t.Errorf("%s / %s: denial %v is not ErrDenied", name, action, err)
			}
		}
	}
}
