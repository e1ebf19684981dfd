// Package storetest is the conformance suite of store.Store: every
// implementation runs it (store/sqlite in its tests, the PostgreSQL store
// in its own), so that the contract written in package store — which
// errors each method returns, which names compare without regard to case,
// in which order lists come, what the change feed delivers and how leases
// behave — holds for all of them alike.
package storetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// Run runs the suite. open returns a new, empty store for one subtest; the
// suite closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"node", testNode},
		{"principals", testPrincipals},
		{"members", testMembers},
		{"memberships", testMemberships},
		{"credentials", testCredentials},
		{"tokenKeys", testTokenKeys},
		{"signIns", testSignIns},
		{"hsms", testHSMs},
		{"keys", testKeys},
		{"keyVersions", testKeyVersions},
		{"roles", testRoles},
		{"diagnostics", testDiagnostics},
		{"shipperCursors", testShipperCursors},
		{"objects", testObjects},
		{"transactions", testTransactions},
		{"changes", testChanges},
		{"leases", testLeases},
		{"jobs", testJobs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

var ctx = context.Background()

// t0 is a whole second: stores keep seconds.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func update(t *testing.T, s store.Store, fn func(tx store.Tx) error) error {
	t.Helper()
	return s.Update(ctx, fn)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustUpdate(t *testing.T, s store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	must(t, s.Update(ctx, fn))
}

func view[T any](t *testing.T, s store.Store, fn func(tx store.Tx) (T, error)) (T, error) {
	t.Helper()
	var out T
	err := s.View(ctx, func(tx store.Tx) (err error) { out, err = fn(tx); return err })
	return out, err
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

func testNode(t *testing.T, s store.Store) {
	n, err := view(t, s, func(tx store.Tx) (*store.NodeSettings, error) { return tx.GetNode(ctx) })
	if err != nil || n.TenantID != "" || n.Seal != "" || len(n.SecretPepper) != 0 || n.ControlPlaneSeeded {
		t.Fatalf("the settings of a new store: %+v, %v", n, err)
	}
	want := store.NodeSettings{TenantID: "t", SubscriptionID: "s", Seal: "file", SecretPepper: []byte{0, 1, 2}, CheckpointKey: []byte("ck"),
		BootstrapAdmin: "admin", ControlPlaneSeeded: true}
	mustUpdate(t, s, func(tx store.Tx) error { w := want; return tx.UpdateNode(ctx, &w) })
	n, err = view(t, s, func(tx store.Tx) (*store.NodeSettings, error) { return tx.GetNode(ctx) })
	if err != nil || n.TenantID != want.TenantID || n.SubscriptionID != want.SubscriptionID || n.Seal != want.Seal ||
		!slices.Equal(n.SecretPepper, want.SecretPepper) || !slices.Equal(n.CheckpointKey, want.CheckpointKey) ||
		n.BootstrapAdmin != want.BootstrapAdmin || !n.ControlPlaneSeeded {
		t.Fatalf("GetNode after UpdateNode: %+v, %v", n, err)
	}
	// UpdateNode replaces every field.
	mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateNode(ctx, &store.NodeSettings{TenantID: "t2"}) })
	n, err = view(t, s, func(tx store.Tx) (*store.NodeSettings, error) { return tx.GetNode(ctx) })
	if err != nil || n.TenantID != "t2" || n.Seal != "" || len(n.SecretPepper) != 0 || n.ControlPlaneSeeded {
		t.Fatalf("after replacing the settings: %+v, %v", n, err)
	}
}

func testShipperCursors(t *testing.T, s store.Store) {
	_, err := view(t, s, func(tx store.Tx) (uint64, error) { return tx.ShipperCursor(ctx, "h1", "logs") })
	wantErr(t, "a cursor never saved", err, store.ErrNotFound)
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, c := range []struct {
			hsm, setting string
			seq          uint64
		}{{"h1", "Logs", 5}, {"h1", "other", 7}, {"h2", "logs", 1 << 40}, {"H1", "LOGS", 6}} {
			if err := tx.SetShipperCursor(ctx, c.hsm, c.setting, c.seq); err != nil {
				return err
			}
		}
		return nil
	})
	for _, c := range []struct {
		hsm, setting string
		want         uint64
	}{{"h1", "logs", 6}, {"h1", "OTHER", 7}, {"h2", "Logs", 1 << 40}} {
		got, err := view(t, s, func(tx store.Tx) (uint64, error) { return tx.ShipperCursor(ctx, c.hsm, c.setting) })
		if err != nil || got != c.want {
			t.Fatalf("ShipperCursor(%s, %s) = %d, %v; want %d (names without case, replaced)", c.hsm, c.setting, got, err, c.want)
		}
	}
	_, err = view(t, s, func(tx store.Tx) (uint64, error) { return tx.ShipperCursor(ctx, "h3", "logs") })
	wantErr(t, "a cursor of another HSM", err, store.ErrNotFound)
	// Deleting the setting leaves its cursor.
	mustUpdate(t, s, func(tx store.Tx) error {
		return tx.PutDiagnosticSetting(ctx, &store.DiagnosticSetting{HSM: "h1", Name: "logs", StorageAccount: "a", Enabled: true, Created: t0})
	})
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteDiagnosticSetting(ctx, "h1", "logs") })
	if got, err := view(t, s, func(tx store.Tx) (uint64, error) { return tx.ShipperCursor(ctx, "h1", "logs") }); err != nil || got != 6 {
		t.Fatalf("the cursor of a deleted setting: %d, %v", got, err)
	}
}

func principal(id, kind, name string) *store.Principal {
	return &store.Principal{ID: id, Kind: kind, DisplayName: name, Created: t0}
}

func testPrincipals(t *testing.T, s store.Store) {
	user := principal("u1", store.KindUser, "Zed")
	user.UPN, user.PasswordHash, user.DirectoryRoles = "Zed@Example.com", "hash", []string{"Global Administrator"}
	sp := principal("s1", store.KindServicePrincipal, "app")
	sp.AppID = "app-1"
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, p := range []*store.Principal{user, sp, principal("u2", store.KindUser, "Amy"), principal("u0", store.KindUser, "Amy")} {
			if err := tx.InsertPrincipal(ctx, p); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := view(t, s, func(tx store.Tx) (*store.Principal, error) { return tx.GetPrincipal(ctx, "u1") })
	if err != nil || got.UPN != user.UPN || got.DisplayName != "Zed" || !slices.Equal(got.DirectoryRoles, user.DirectoryRoles) || !got.Created.Equal(t0) {
		t.Fatalf("GetPrincipal = %+v, %v", got, err)
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		return tx.SetDirectoryRoles(ctx, "u1", []string{"Global Administrator", "Privileged Role Administrator"})
	})
	got, err = view(t, s, func(tx store.Tx) (*store.Principal, error) { return tx.GetPrincipal(ctx, "u1") })
	if err != nil || len(got.DirectoryRoles) != 2 || got.DirectoryRoles[1] != "Privileged Role Administrator" {
		t.Fatalf("after SetDirectoryRoles: %+v, %v", got, err)
	}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.SetDirectoryRoles(ctx, "nobody", nil) }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetDirectoryRoles of nobody = %v, want ErrNotFound", err)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.SetDirectoryRoles(ctx, "u1", user.DirectoryRoles) })
	got, err = view(t, s, func(tx store.Tx) (*store.Principal, error) { return tx.PrincipalByUPN(ctx, "zed@EXAMPLE.com") })
	if err != nil || got.ID != "u1" {
		t.Fatalf("PrincipalByUPN ignores case: %+v, %v", got, err)
	}
	got, err = view(t, s, func(tx store.Tx) (*store.Principal, error) { return tx.PrincipalByAppID(ctx, "app-1") })
	if err != nil || got.ID != "s1" {
		t.Fatalf("PrincipalByAppID = %+v, %v", got, err)
	}
	_, err = view(t, s, func(tx store.Tx) (*store.Principal, error) { return tx.GetPrincipal(ctx, "nobody") })
	wantErr(t, "GetPrincipal of nobody", err, store.ErrNotFound)
	_, err = view(t, s, func(tx store.Tx) (*store.Principal, error) { return tx.PrincipalByUPN(ctx, "nobody@example.com") })
	wantErr(t, "PrincipalByUPN of nobody", err, store.ErrNotFound)
	_, err = view(t, s, func(tx store.Tx) (*store.Principal, error) { return tx.PrincipalByAppID(ctx, "nope") })
	wantErr(t, "PrincipalByAppID of nothing", err, store.ErrNotFound)

	twin := principal("u3", store.KindUser, "Twin")
	twin.UPN = "ZED@example.COM"
	wantErr(t, "a user principal name taken in another case", update(t, s, func(tx store.Tx) error { return tx.InsertPrincipal(ctx, twin) }), store.ErrConflict)
	wantErr(t, "a taken id", update(t, s, func(tx store.Tx) error { return tx.InsertPrincipal(ctx, principal("u1", store.KindGroup, "g")) }), store.ErrConflict)
	sp2 := principal("s2", store.KindServicePrincipal, "app2")
	sp2.AppID = "app-1"
	wantErr(t, "a taken app id", update(t, s, func(tx store.Tx) error { return tx.InsertPrincipal(ctx, sp2) }), store.ErrConflict)

	users, err := view(t, s, func(tx store.Tx) ([]*store.Principal, error) { return tx.ListPrincipals(ctx, store.KindUser) })
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range users {
		ids = append(ids, p.ID)
	}
	if !slices.Equal(ids, []string{"u0", "u2", "u1"}) {
		t.Fatalf("users by display name, then id: %v", ids)
	}
	none, err := view(t, s, func(tx store.Tx) ([]*store.Principal, error) {
		return tx.ListPrincipals(ctx, store.KindManagedIdentity)
	})
	if err != nil || len(none) != 0 {
		t.Fatalf("no managed identities: %v, %v", none, err)
	}

	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeletePrincipal(ctx, "u2") })
	wantErr(t, "deleting twice", update(t, s, func(tx store.Tx) error { return tx.DeletePrincipal(ctx, "u2") }), store.ErrNotFound)
}

func testMembers(t *testing.T, s store.Store) {
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, p := range []*store.Principal{principal("g1", store.KindGroup, "g1"), principal("g2", store.KindGroup, "g2"),
			principal("b", store.KindUser, "b"), principal("a", store.KindUser, "a")} {
			if err := tx.InsertPrincipal(ctx, p); err != nil {
				return err
			}
		}
		for _, m := range [][2]string{{"g1", "b"}, {"g1", "a"}, {"g2", "a"}, {"g1", "g2"}} {
			if err := tx.AddMember(ctx, m[0], m[1]); err != nil {
				return err
			}
		}
		return nil
	})
	wantErr(t, "a member twice", update(t, s, func(tx store.Tx) error { return tx.AddMember(ctx, "g1", "a") }), store.ErrConflict)
	wantErr(t, "an unknown member", update(t, s, func(tx store.Tx) error { return tx.AddMember(ctx, "g1", "nobody") }), store.ErrConflict)
	members, err := view(t, s, func(tx store.Tx) ([]string, error) { return tx.Members(ctx, "g1") })
	if err != nil || !slices.Equal(members, []string{"a", "b", "g2"}) {
		t.Fatalf("Members in id order: %v, %v", members, err)
	}
	groups, err := view(t, s, func(tx store.Tx) ([]string, error) { return tx.GroupsOf(ctx, "a") })
	if err != nil || !slices.Equal(groups, []string{"g1", "g2"}) {
		t.Fatalf("GroupsOf in id order: %v, %v", groups, err)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.RemoveMember(ctx, "g1", "b") })
	wantErr(t, "removing a non-member", update(t, s, func(tx store.Tx) error { return tx.RemoveMember(ctx, "g1", "b") }), store.ErrNotFound)
	// Deleting a principal takes its memberships along, on both sides.
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeletePrincipal(ctx, "g2") })
	groups, err = view(t, s, func(tx store.Tx) ([]string, error) { return tx.GroupsOf(ctx, "a") })
	if err != nil || !slices.Equal(groups, []string{"g1"}) {
		t.Fatalf("after deleting g2: %v, %v", groups, err)
	}
	members, err = view(t, s, func(tx store.Tx) ([]string, error) { return tx.Members(ctx, "g1") })
	if err != nil || !slices.Equal(members, []string{"a"}) {
		t.Fatalf("after deleting g2, g1 has %v, %v", members, err)
	}
}

func testCredentials(t *testing.T, s store.Store) {
	mustUpdate(t, s, func(tx store.Tx) error {
		return tx.InsertPrincipal(ctx, principal("sp", store.KindServicePrincipal, "sp"))
	})
	mustUpdate(t, s, func(tx store.Tx) error {
		for i, id := range []string{"c2", "c1"} {
			c := &store.Credential{ID: id, PrincipalID: "sp", Hash: "h", Hint: "abc", Created: t0.Add(time.Duration(i) * time.Hour), Expires: t0.AddDate(1, 0, 0)}
			if err := tx.InsertCredential(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
	wantErr(t, "a taken credential id", update(t, s, func(tx store.Tx) error {
		return tx.InsertCredential(ctx, &store.Credential{ID: "c1", PrincipalID: "sp", Hash: "h", Hint: "x", Created: t0})
	}), store.ErrConflict)
	wantErr(t, "a credential of nobody", update(t, s, func(tx store.Tx) error {
		return tx.InsertCredential(ctx, &store.Credential{ID: "c9", PrincipalID: "nobody", Hash: "h", Hint: "x", Created: t0})
	}), store.ErrConflict)
	cs, err := view(t, s, func(tx store.Tx) ([]*store.Credential, error) { return tx.Credentials(ctx, "sp") })
	if err != nil || len(cs) != 2 || cs[0].ID != "c2" || cs[1].ID != "c1" || !cs[0].Expires.Equal(t0.AddDate(1, 0, 0)) {
		t.Fatalf("Credentials oldest first: %+v, %v", cs, err)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteCredential(ctx, "c2") })
	wantErr(t, "deleting a credential twice", update(t, s, func(tx store.Tx) error { return tx.DeleteCredential(ctx, "c2") }), store.ErrNotFound)
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeletePrincipal(ctx, "sp") })
	cs, err = view(t, s, func(tx store.Tx) ([]*store.Credential, error) { return tx.Credentials(ctx, "sp") })
	if err != nil || len(cs) != 0 {
		t.Fatalf("the credentials of a deleted principal: %+v, %v", cs, err)
	}
}

func testTokenKeys(t *testing.T, s store.Store) {
	mustUpdate(t, s, func(tx store.Tx) error {
		for i, id := range []string{"old", "new"} {
			if err := tx.InsertTokenKey(ctx, &store.TokenKey{ID: id, Sealed: []byte(id), Created: t0.Add(time.Duration(i) * time.Hour)}); err != nil {
				return err
			}
		}
		return nil
	})
	wantErr(t, "a taken token key id", update(t, s, func(tx store.Tx) error {
		return tx.InsertTokenKey(ctx, &store.TokenKey{ID: "old", Sealed: []byte("x"), Created: t0})
	}), store.ErrConflict)
	ks, err := view(t, s, func(tx store.Tx) ([]*store.TokenKey, error) { return tx.TokenKeys(ctx) })
	if err != nil || len(ks) != 2 || ks[0].ID != "new" || string(ks[1].Sealed) != "old" {
		t.Fatalf("TokenKeys newest first: %+v, %v", ks, err)
	}
}

func hsm(id, name string) *store.HSM {
	return &store.HSM{ID: id, Name: name, State: "active", DomainID: "d-" + id, DomainKey: []byte("sealed"), Admins: []string{"a"},
		RetentionDays: 90, Created: t0, ResourceGroup: "rg", Location: "local", Tags: map[string]string{"env": "test"}}
}

func testHSMs(t *testing.T, s store.Store) {
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, h := range []*store.HSM{hsm("2", "Zeta"), hsm("1", "alpha")} {
			if err := tx.InsertHSM(ctx, h); err != nil {
				return err
			}
		}
		return nil
	})
	wantErr(t, "a name taken in another case", update(t, s, func(tx store.Tx) error { return tx.InsertHSM(ctx, hsm("3", "ZETA")) }), store.ErrConflict)
	h, err := view(t, s, func(tx store.Tx) (*store.HSM, error) { return tx.GetHSM(ctx, "zeta") })
	if err != nil || h.Name != "Zeta" || h.ID != "2" || h.Tags["env"] != "test" || !h.Created.Equal(t0) || h.Location != "local" {
		t.Fatalf("GetHSM ignores case and keeps the spelling: %+v, %v", h, err)
	}
	_, err = view(t, s, func(tx store.Tx) (*store.HSM, error) { return tx.GetHSM(ctx, "none") })
	wantErr(t, "GetHSM of nothing", err, store.ErrNotFound)
	list, err := view(t, s, func(tx store.Tx) ([]*store.HSM, error) { return tx.ListHSMs(ctx) })
	if err != nil || len(list) != 2 {
		t.Fatalf("ListHSMs: %v, %v", list, err)
	}

	h.State, h.Deleted, h.Tags = "provisioned", t0.Add(time.Hour), map[string]string{"env": "prod"}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateHSM(ctx, h) })
	h2, err := view(t, s, func(tx store.Tx) (*store.HSM, error) { return tx.GetHSM(ctx, "Zeta") })
	if err != nil || h2.State != "provisioned" || !h2.Deleted.Equal(t0.Add(time.Hour)) || h2.Tags["env"] != "prod" {
		t.Fatalf("after UpdateHSM: %+v, %v", h2, err)
	}
	wantErr(t, "UpdateHSM of nothing", update(t, s, func(tx store.Tx) error { return tx.UpdateHSM(ctx, hsm("9", "none")) }), store.ErrNotFound)

	seeded := func(name string) bool {
		t.Helper()
		ok, err := view(t, s, func(tx store.Tx) (bool, error) { return tx.RolesSeeded(ctx, name) })
		must(t, err)
		return ok
	}
	if seeded("zeta") {
		t.Fatal("a new HSM's roles are seeded")
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.SetRolesSeeded(ctx, "ZETA") })
	mustUpdate(t, s, func(tx store.Tx) error { return tx.SetRolesSeeded(ctx, "zeta") }) // again: no error
	if !seeded("Zeta") || seeded("alpha") {
		t.Fatal("SetRolesSeeded marks its HSM only, named without regard to case")
	}
	_, err = view(t, s, func(tx store.Tx) (bool, error) { return tx.RolesSeeded(ctx, "none") })
	wantErr(t, "RolesSeeded of nothing", err, store.ErrNotFound)
	wantErr(t, "SetRolesSeeded of nothing", update(t, s, func(tx store.Tx) error { return tx.SetRolesSeeded(ctx, "none") }), store.ErrNotFound)

	// DeleteHSM takes the HSM's keys and roles along, whatever the case of
	// the name it is given.
	mustUpdate(t, s, func(tx store.Tx) error {
		if err := tx.PutKey(ctx, &store.Key{HSM: "Zeta", Name: "k", Created: t0}); err != nil {
			return err
		}
		if err := tx.InsertKeyVersion(ctx, version("Zeta", "k", "v1", 1)); err != nil {
			return err
		}
		return tx.InsertRoleAssignment(ctx, &store.RoleAssignment{HSM: "Zeta", ID: "a1", Scope: "/", RoleDefinitionID: "r", PrincipalID: "p", Created: t0})
	})
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteHSM(ctx, "ZETA") })
	wantErr(t, "DeleteHSM twice", update(t, s, func(tx store.Tx) error { return tx.DeleteHSM(ctx, "zeta") }), store.ErrNotFound)
	mustUpdate(t, s, func(tx store.Tx) error { return tx.InsertHSM(ctx, hsm("4", "Zeta")) })
	if seeded("Zeta") {
		t.Fatal("an HSM created again under a deleted one's name has its roles seeded")
	}
	_, err = view(t, s, func(tx store.Tx) (*store.Key, error) { return tx.GetKey(ctx, "Zeta", "k") })
	wantErr(t, "a key of a deleted HSM", err, store.ErrNotFound)
	as, err := view(t, s, func(tx store.Tx) ([]*store.RoleAssignment, error) { return tx.ListRoleAssignments(ctx, "Zeta") })
	if err != nil || len(as) != 0 {
		t.Fatalf("the assignments of a deleted HSM: %v, %v", as, err)
	}
}

func version(h, name, v string, seq int64) *store.KeyVersion {
	return &store.KeyVersion{HSM: h, Name: name, Version: v, Seq: seq, Kty: "EC-HSM", Ops: []string{"sign"}, Enabled: true,
		Created: t0, Updated: t0, Tags: map[string]string{}, Public: []byte("{}"), Sealed: []byte("s")}
}

func testKeys(t *testing.T, s store.Store) {
	mustUpdate(t, s, func(tx store.Tx) error {
		for i, n := range []string{"bravo", "Alpha", "charlie", "delta"} {
			if err := tx.PutKey(ctx, &store.Key{HSM: "h", Name: n, Created: t0}); err != nil {
				return err
			}
			if err := tx.InsertKeyVersion(ctx, version("h", n, n+"-1", 1)); err != nil {
				return err
			}
			if i == 0 {
				if err := tx.InsertKeyVersion(ctx, version("h", n, n+"-2", 2)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	k, err := view(t, s, func(tx store.Tx) (*store.Key, error) { return tx.GetKey(ctx, "h", "ALPHA") })
	if err != nil || k.Name != "Alpha" {
		t.Fatalf("GetKey ignores case, keeps the spelling: %+v, %v", k, err)
	}
	_, err = view(t, s, func(tx store.Tx) (*store.Key, error) { return tx.GetKey(ctx, "h", "none") })
	wantErr(t, "GetKey of nothing", err, store.ErrNotFound)
	_, err = view(t, s, func(tx store.Tx) (*store.Key, error) { return tx.GetKey(ctx, "other", "alpha") })
	wantErr(t, "GetKey in another HSM", err, store.ErrNotFound)

	// PutKey on an existing name (in another case) replaces the deletion
	// and the policy, and keeps the stored name.
	mustUpdate(t, s, func(tx store.Tx) error {
		return tx.PutKey(ctx, &store.Key{HSM: "h", Name: "DELTA", Created: t0.Add(time.Hour), Deleted: t0, ScheduledPurge: t0.AddDate(0, 0, 7), RotationPolicy: []byte(`{}`)})
	})
	k, err = view(t, s, func(tx store.Tx) (*store.Key, error) { return tx.GetKey(ctx, "h", "delta") })
	if err != nil || k.Name != "delta" || !k.Deleted.Equal(t0) || !k.ScheduledPurge.Equal(t0.AddDate(0, 0, 7)) || string(k.RotationPolicy) != `{}` {
		t.Fatalf("after PutKey: %+v, %v", k, err)
	}

	names := func(deleted bool, after string, limit int) []string {
		items, err := view(t, s, func(tx store.Tx) ([]store.KeyListItem, error) { return tx.ListKeys(ctx, "h", deleted, after, limit) })
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range items {
			out = append(out, it.Key.Name+"@"+it.Latest.Version)
		}
		return out
	}
	if got := names(false, "", 10); !slices.Equal(got, []string{"Alpha@Alpha-1", "bravo@bravo-2", "charlie@charlie-1"}) {
		t.Fatalf("live keys, by name without case, with their latest versions: %v", got)
	}
	if got := names(false, "ALPHA", 1); !slices.Equal(got, []string{"bravo@bravo-2"}) {
		t.Fatalf("one live key after ALPHA: %v", got)
	}
	if got := names(true, "", 10); !slices.Equal(got, []string{"delta@delta-1"}) {
		t.Fatalf("deleted keys: %v", got)
	}

	mustUpdate(t, s, func(tx store.Tx) error { return tx.PurgeKey(ctx, "h", "BRAVO") })
	wantErr(t, "purging twice", update(t, s, func(tx store.Tx) error { return tx.PurgeKey(ctx, "h", "bravo") }), store.ErrNotFound)
	_, err = view(t, s, func(tx store.Tx) (*store.KeyVersion, error) { return tx.GetKeyVersion(ctx, "h", "bravo", "bravo-1") })
	wantErr(t, "a version of a purged key", err, store.ErrNotFound)
}

func testKeyVersions(t *testing.T, s store.Store) {
	mustUpdate(t, s, func(tx store.Tx) error {
		if err := tx.PutKey(ctx, &store.Key{HSM: "h", Name: "Key", Created: t0}); err != nil {
			return err
		}
		for i := int64(1); i <= 5; i++ {
			v := version("h", "Key", string(rune('a'+i)), i)
			v.Tags = map[string]string{"n": string(rune('0' + i))}
			v.NotBefore, v.Expires = t0, t0.AddDate(1, 0, 0)
			if err := tx.InsertKeyVersion(ctx, v); err != nil {
				return err
			}
		}
		return nil
	})
	wantErr(t, "a taken version id", update(t, s, func(tx store.Tx) error { return tx.InsertKeyVersion(ctx, version("h", "Key", "b", 9)) }), store.ErrConflict)
	wantErr(t, "a taken sequence number", update(t, s, func(tx store.Tx) error { return tx.InsertKeyVersion(ctx, version("h", "Key", "z", 3)) }), store.ErrConflict)
	wantErr(t, "a version of no key", update(t, s, func(tx store.Tx) error { return tx.InsertKeyVersion(ctx, version("h", "none", "z", 1)) }), store.ErrConflict)

	v, err := view(t, s, func(tx store.Tx) (*store.KeyVersion, error) { return tx.GetKeyVersion(ctx, "h", "KEY", "c") })
	if err != nil || v.Seq != 2 || v.Name != "Key" || v.Tags["n"] != "2" || !v.Expires.Equal(t0.AddDate(1, 0, 0)) || !v.Enabled || !slices.Equal(v.Ops, []string{"sign"}) {
		t.Fatalf("GetKeyVersion = %+v, %v", v, err)
	}
	_, err = view(t, s, func(tx store.Tx) (*store.KeyVersion, error) { return tx.GetKeyVersion(ctx, "h", "Key", "C") })
	wantErr(t, "version ids are exact", err, store.ErrNotFound)
	latest, err := view(t, s, func(tx store.Tx) (*store.KeyVersion, error) { return tx.LatestKeyVersion(ctx, "h", "key") })
	if err != nil || latest.Seq != 5 {
		t.Fatalf("LatestKeyVersion = %+v, %v", latest, err)
	}
	_, err = view(t, s, func(tx store.Tx) (*store.KeyVersion, error) { return tx.LatestKeyVersion(ctx, "h", "none") })
	wantErr(t, "LatestKeyVersion of no key", err, store.ErrNotFound)

	page, err := view(t, s, func(tx store.Tx) ([]store.KeyVersion, error) { return tx.ListKeyVersions(ctx, "h", "Key", 2, 2) })
	if err != nil || len(page) != 2 || page[0].Seq != 3 || page[1].Seq != 4 {
		t.Fatalf("two versions after seq 2: %+v, %v", page, err)
	}

	v.Enabled, v.Ops, v.Tags, v.Updated, v.Expires = false, []string{"verify"}, map[string]string{"x": "y"}, t0.Add(time.Minute), time.Time{}
	v.ReleasePolicy = []byte(`{"data":"policy"}`)
	v.Kty, v.Public = "RSA", []byte("changed") // not mutable: kept
	mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateKeyVersion(ctx, v) })
	got, err := view(t, s, func(tx store.Tx) (*store.KeyVersion, error) { return tx.GetKeyVersion(ctx, "h", "Key", "c") })
	if err != nil || got.Enabled || !slices.Equal(got.Ops, []string{"verify"}) || got.Tags["x"] != "y" || !got.Expires.IsZero() ||
		!got.Updated.Equal(t0.Add(time.Minute)) || got.Kty != "EC-HSM" || string(got.Public) != "{}" || string(got.ReleasePolicy) != `{"data":"policy"}` {
		t.Fatalf("after UpdateKeyVersion: %+v, %v", got, err)
	}
	wantErr(t, "UpdateKeyVersion of nothing", update(t, s, func(tx store.Tx) error { return tx.UpdateKeyVersion(ctx, version("h", "Key", "nope", 1)) }), store.ErrNotFound)

	note := func(name, v string) (bool, error) {
		var first bool
		err := update(t, s, func(tx store.Tx) (err error) { first, err = tx.NoteNearExpiry(ctx, "h", name, v, t0); return err })
		return first, err
	}
	if first, err := note("KEY", "c"); err != nil || !first {
		t.Fatalf("the first near-expiry notice of a version: %v, %v", first, err)
	}
	if first, err := note("key", "c"); err != nil || first {
		t.Fatalf("the second near-expiry notice of a version: %v, %v", first, err)
	}
	if first, err := note("Key", "d"); err != nil || !first {
		t.Fatalf("the first notice of another version: %v, %v", first, err)
	}
	_, err = note("Key", "nope")
	wantErr(t, "NoteNearExpiry of no version", err, store.ErrNotFound)
	_, err = note("none", "c")
	wantErr(t, "NoteNearExpiry of no key", err, store.ErrNotFound)
}

func testRoles(t *testing.T, s store.Store) {
	def := func(id, name string) *store.RoleDefinition {
		return &store.RoleDefinition{HSM: "h", ID: id, Name: name, Description: "d", AssignableScopes: []string{"/"}, Created: t0, Updated: t0,
			Permissions: []store.Permission{{DataActions: []string{"Microsoft.KeyVault/managedHsm/keys/read/action"}}}}
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, d := range []*store.RoleDefinition{def("R2", "b"), def("r1", "a"), def("r3", "a")} {
			if err := tx.PutRoleDefinition(ctx, d); err != nil {
				return err
			}
		}
		return nil
	})
	d := def("r2", "renamed")
	mustUpdate(t, s, func(tx store.Tx) error { return tx.PutRoleDefinition(ctx, d) })
	got, err := view(t, s, func(tx store.Tx) (*store.RoleDefinition, error) { return tx.GetRoleDefinition(ctx, "h", "R2") })
	if err != nil || got.Name != "renamed" || len(got.Permissions) != 1 || len(got.Permissions[0].DataActions) != 1 {
		t.Fatalf("PutRoleDefinition replaces (ids without case): %+v, %v", got, err)
	}
	_, err = view(t, s, func(tx store.Tx) (*store.RoleDefinition, error) { return tx.GetRoleDefinition(ctx, "other", "r1") })
	wantErr(t, "a role of another HSM", err, store.ErrNotFound)
	defs, err := view(t, s, func(tx store.Tx) ([]*store.RoleDefinition, error) { return tx.ListRoleDefinitions(ctx, "h") })
	if err != nil || len(defs) != 3 || defs[0].ID != "r1" || defs[1].ID != "r3" || defs[2].Name != "renamed" {
		t.Fatalf("ListRoleDefinitions by name, then id: %+v, %v", defs, err)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteRoleDefinition(ctx, "h", "R1") })
	wantErr(t, "deleting a role twice", update(t, s, func(tx store.Tx) error { return tx.DeleteRoleDefinition(ctx, "h", "r1") }), store.ErrNotFound)

	as := func(id string, created time.Time) *store.RoleAssignment {
		return &store.RoleAssignment{HSM: "h", ID: id, Scope: "/keys/K", RoleDefinitionID: "r2", PrincipalID: "p", Created: created,
			Start: t0, End: t0.AddDate(0, 0, 1), Source: "direct", CreatedBy: "admin"}
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, a := range []*store.RoleAssignment{as("b", t0), as("c", t0.Add(-time.Hour)), as("a", t0)} {
			if err := tx.InsertRoleAssignment(ctx, a); err != nil {
				return err
			}
		}
		return nil
	})
	wantErr(t, "a taken assignment id in another case", update(t, s, func(tx store.Tx) error { return tx.InsertRoleAssignment(ctx, as("B", t0)) }), store.ErrConflict)
	a, err := view(t, s, func(tx store.Tx) (*store.RoleAssignment, error) { return tx.GetRoleAssignment(ctx, "h", "A") })
	if err != nil || a.Scope != "/keys/K" || a.CreatedBy != "admin" || !a.End.Equal(t0.AddDate(0, 0, 1)) || a.Source != "direct" {
		t.Fatalf("GetRoleAssignment = %+v, %v", a, err)
	}
	list, err := view(t, s, func(tx store.Tx) ([]*store.RoleAssignment, error) { return tx.ListRoleAssignments(ctx, "h") })
	if err != nil || len(list) != 3 || list[0].ID != "c" || list[1].ID != "a" || list[2].ID != "b" {
		t.Fatalf("ListRoleAssignments oldest first, then by id: %+v, %v", list, err)
	}
	at, err := view(t, s, func(tx store.Tx) ([]*store.RoleAssignment, error) {
		return tx.ListRoleAssignmentsAt(ctx, "h", "/KEYS/k", "/")
	})
	if err != nil || len(at) != 3 || at[0].ID != "c" || at[1].ID != "a" {
		t.Fatalf("ListRoleAssignmentsAt a scope in another case: %+v, %v", at, err)
	}
	for _, scopes := range [][]string{{"/keys"}, {"/keys/k2"}, {}} {
		if at, err := view(t, s, func(tx store.Tx) ([]*store.RoleAssignment, error) {
			return tx.ListRoleAssignmentsAt(ctx, "h", scopes...)
		}); err != nil || len(at) != 0 {
			t.Fatalf("ListRoleAssignmentsAt(%v) = %+v, %v", scopes, at, err)
		}
	}
	if at, err := view(t, s, func(tx store.Tx) ([]*store.RoleAssignment, error) {
		return tx.ListRoleAssignmentsAt(ctx, "other", "/keys/K")
	}); err != nil || len(at) != 0 {
		t.Fatalf("ListRoleAssignmentsAt of another HSM = %+v, %v", at, err)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteRoleAssignment(ctx, "h", "C") })
	wantErr(t, "deleting an assignment twice", update(t, s, func(tx store.Tx) error { return tx.DeleteRoleAssignment(ctx, "h", "c") }), store.ErrNotFound)
	_, err = view(t, s, func(tx store.Tx) (*store.RoleAssignment, error) { return tx.GetRoleAssignment(ctx, "h", "c") })
	wantErr(t, "a deleted assignment", err, store.ErrNotFound)
}

func testDiagnostics(t *testing.T, s store.Store) {
	acct := func(name, rg string) *store.StorageAccount {
		return &store.StorageAccount{Name: name, ResourceGroup: rg, BlobEndpoint: "https://" + name, CredentialKind: "key", Secret: []byte("s"), Created: t0}
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, a := range []*store.StorageAccount{acct("Zed", "rg"), acct("amy", "rg")} {
			if err := tx.PutStorageAccount(ctx, a); err != nil {
				return err
			}
		}
		return nil
	})
	updated := acct("ZED", "RG")
	updated.CredentialKind = "sas"
	mustUpdate(t, s, func(tx store.Tx) error { return tx.PutStorageAccount(ctx, updated) })
	wantErr(t, "an account of another group", update(t, s, func(tx store.Tx) error { return tx.PutStorageAccount(ctx, acct("zed", "other")) }), store.ErrConflict)
	a, err := view(t, s, func(tx store.Tx) (*store.StorageAccount, error) { return tx.GetStorageAccount(ctx, "zED") })
	if err != nil || a.Name != "Zed" || a.CredentialKind != "sas" {
		t.Fatalf("GetStorageAccount ignores case, keeps the spelling: %+v, %v", a, err)
	}
	accts, err := view(t, s, func(tx store.Tx) ([]*store.StorageAccount, error) { return tx.ListStorageAccounts(ctx) })
	if err != nil || len(accts) != 2 || accts[0].Name != "amy" {
		t.Fatalf("ListStorageAccounts by name: %+v, %v", accts, err)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteStorageAccount(ctx, "AMY") })
	wantErr(t, "deleting an account twice", update(t, s, func(tx store.Tx) error { return tx.DeleteStorageAccount(ctx, "amy") }), store.ErrNotFound)
	_, err = view(t, s, func(tx store.Tx) (*store.StorageAccount, error) { return tx.GetStorageAccount(ctx, "amy") })
	wantErr(t, "a deleted account", err, store.ErrNotFound)

	set := func(h, name string) *store.DiagnosticSetting {
		return &store.DiagnosticSetting{HSM: h, Name: name, StorageAccount: "Zed", Enabled: true, Created: t0}
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, d := range []*store.DiagnosticSetting{set("h2", "a"), set("h1", "b"), set("h1", "a")} {
			if err := tx.PutDiagnosticSetting(ctx, d); err != nil {
				return err
			}
		}
		off := set("h1", "B")
		off.Enabled = false
		return tx.PutDiagnosticSetting(ctx, off)
	})
	d, err := view(t, s, func(tx store.Tx) (*store.DiagnosticSetting, error) { return tx.GetDiagnosticSetting(ctx, "h1", "b") })
	if err != nil || d.Enabled {
		t.Fatalf("PutDiagnosticSetting replaces, names without case: %+v, %v", d, err)
	}
	all, err := view(t, s, func(tx store.Tx) ([]*store.DiagnosticSetting, error) { return tx.ListDiagnosticSettings(ctx, "") })
	if err != nil || len(all) != 3 || all[0].HSM != "h1" || all[0].Name != "a" || all[2].HSM != "h2" {
		t.Fatalf("every setting, by HSM then name: %+v, %v", all, err)
	}
	one, err := view(t, s, func(tx store.Tx) ([]*store.DiagnosticSetting, error) { return tx.ListDiagnosticSettings(ctx, "h2") })
	if err != nil || len(one) != 1 {
		t.Fatalf("one HSM's settings: %+v, %v", one, err)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteDiagnosticSetting(ctx, "h2", "A") })
	wantErr(t, "deleting a setting twice", update(t, s, func(tx store.Tx) error { return tx.DeleteDiagnosticSetting(ctx, "h2", "a") }), store.ErrNotFound)
	_, err = view(t, s, func(tx store.Tx) (*store.DiagnosticSetting, error) { return tx.GetDiagnosticSetting(ctx, "h2", "a") })
	wantErr(t, "a deleted setting", err, store.ErrNotFound)
}

func testObjects(t *testing.T, s store.Store) {
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, o := range []*store.Object{
			{Kind: "group", ID: "/Subscriptions/S/resourceGroups/B", Data: []byte("b")},
			{Kind: "group", ID: "/subscriptions/s/resourceGroups/A", Data: []byte("a")},
			{Kind: "other", ID: "/subscriptions/s/resourceGroups/A", Data: []byte("x")},
		} {
			if err := tx.PutObject(ctx, o); err != nil {
				return err
			}
		}
		return tx.PutObject(ctx, &store.Object{Kind: "group", ID: "/subscriptions/s/resourcegroups/b", Data: []byte("b2")})
	})
	o, err := view(t, s, func(tx store.Tx) (*store.Object, error) {
		return tx.GetObject(ctx, "group", "/SUBSCRIPTIONS/s/resourcegroups/b")
	})
	if err != nil || string(o.Data) != "b2" || o.ID != "/subscriptions/s/resourcegroups/b" {
		t.Fatalf("objects by lower-case id, replaced: %+v, %v", o, err)
	}
	_, err = view(t, s, func(tx store.Tx) (*store.Object, error) { return tx.GetObject(ctx, "group", "/nothing") })
	wantErr(t, "GetObject of nothing", err, store.ErrNotFound)
	list, err := view(t, s, func(tx store.Tx) ([]*store.Object, error) { return tx.ListObjects(ctx, "group", "/Subscriptions/S/") })
	if err != nil || len(list) != 2 || string(list[0].Data) != "a" || string(list[1].Data) != "b2" {
		t.Fatalf("ListObjects by prefix without case, in id order: %+v, %v", list, err)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteObject(ctx, "group", "/subscriptions/S/resourceGroups/A") })
	wantErr(t, "deleting an object twice", update(t, s, func(tx store.Tx) error { return tx.DeleteObject(ctx, "group", "/subscriptions/s/resourcegroups/a") }), store.ErrNotFound)
	if _, err := view(t, s, func(tx store.Tx) (*store.Object, error) {
		return tx.GetObject(ctx, "other", "/subscriptions/s/resourcegroups/a")
	}); err != nil {
		t.Fatalf("an object of another kind went too: %v", err)
	}
}

// testTransactions: an Update whose function fails leaves nothing behind,
// a View sees one snapshot, and a failed write inside Update leaves the
// transaction usable.
func testTransactions(t *testing.T, s store.Store) {
	boom := errors.New("boom")
	err := update(t, s, func(tx store.Tx) error {
		if err := tx.SetShipperCursor(ctx, "h", "k", 1); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "Update returns fn's error", err, boom)
	_, err = view(t, s, func(tx store.Tx) (uint64, error) { return tx.ShipperCursor(ctx, "h", "k") })
	wantErr(t, "a rolled-back write", err, store.ErrNotFound)

	mustUpdate(t, s, func(tx store.Tx) error {
		if err := tx.DeletePrincipal(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeletePrincipal of nobody: %v", err)
		}
		return tx.SetShipperCursor(ctx, "h", "k", 2)
	})
	v, err := view(t, s, func(tx store.Tx) (uint64, error) { return tx.ShipperCursor(ctx, "h", "k") })
	if err != nil || v != 2 {
		t.Fatalf("a transaction goes on after a failed write: %d, %v", v, err)
	}
	// A write the database refuses (a taken id) leaves the transaction
	// usable too, and what came before it stays.
	mustUpdate(t, s, func(tx store.Tx) error {
		return tx.InsertTokenKey(ctx, &store.TokenKey{ID: "k", Sealed: []byte("x"), Created: t0})
	})
	mustUpdate(t, s, func(tx store.Tx) error {
		if err := tx.SetShipperCursor(ctx, "h", "k", 3); err != nil {
			return err
		}
		if err := tx.InsertTokenKey(ctx, &store.TokenKey{ID: "k", Sealed: []byte("y"), Created: t0}); !errors.Is(err, store.ErrConflict) {
			t.Errorf("InsertTokenKey of a taken id: %v", err)
		}
		if _, err := tx.GetKey(ctx, "h", "none"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a read after a refused write: %v", err)
		}
		return tx.SetShipperCursor(ctx, "h", "k2", 4)
	})
	for setting, want := range map[string]uint64{"k": 3, "k2": 4} {
		v, err := view(t, s, func(tx store.Tx) (uint64, error) { return tx.ShipperCursor(ctx, "h", setting) })
		if err != nil || v != want {
			t.Fatalf("the writes around a refused one: %s = %d, %v; want %d", setting, v, err, want)
		}
	}

	// Writers are serialised: concurrent read-modify-write loses nothing.
	mustUpdate(t, s, func(tx store.Tx) error { return tx.SetShipperCursor(ctx, "h", "n", 0) })
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Update(ctx, func(tx store.Tx) error {
				v, err := tx.ShipperCursor(ctx, "h", "n")
				if err != nil {
					return err
				}
				return tx.SetShipperCursor(ctx, "h", "n", v+1)
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	v, err = view(t, s, func(tx store.Tx) (uint64, error) { return tx.ShipperCursor(ctx, "h", "n") })
	if err != nil || v != 8 {
		t.Fatalf("eight serialised increments: %d, %v", v, err)
	}
	// The node settings too: a read-modify-write of one field keeps what
	// a concurrent one set in another.
	var wg2 sync.WaitGroup
	for _, set := range []func(n *store.NodeSettings){
		func(n *store.NodeSettings) { n.TenantID = "t" }, func(n *store.NodeSettings) { n.SubscriptionID = "s" },
		func(n *store.NodeSettings) { n.Seal = "file" }, func(n *store.NodeSettings) { n.BootstrapAdmin = "a" },
	} {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			err := s.Update(ctx, func(tx store.Tx) error {
				n, err := tx.GetNode(ctx)
				if err != nil {
					return err
				}
				set(n)
				return tx.UpdateNode(ctx, n)
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg2.Wait()
	n, err := view(t, s, func(tx store.Tx) (*store.NodeSettings, error) { return tx.GetNode(ctx) })
	if err != nil || n.TenantID != "t" || n.SubscriptionID != "s" || n.Seal != "file" || n.BootstrapAdmin != "a" {
		t.Fatalf("four serialised node updates: %+v, %v", n, err)
	}
}

// testChanges: subscribers get what a transaction wrote once it commits,
// before Update returns, and nothing of a rolled-back one.
func testChanges(t *testing.T, s store.Store) {
	var mu sync.Mutex
	var got []store.Change
	cancel := s.Subscribe(func(cs []store.Change) {
		mu.Lock()
		got = append(got, cs...)
		mu.Unlock()
	})
	take := func() []store.Change {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
	has := func(cs []store.Change, want store.Change) bool {
		return slices.ContainsFunc(cs, func(c store.Change) bool {
			return c.Kind == want.Kind && c.SameHSM(want.HSM) && (want.ID == "" || c.ID == want.ID)
		})
	}

	mustUpdate(t, s, func(tx store.Tx) error {
		if err := tx.InsertHSM(ctx, hsm("1", "Pool")); err != nil {
			return err
		}
		if err := tx.PutKey(ctx, &store.Key{HSM: "Pool", Name: "k", Created: t0}); err != nil {
			return err
		}
		if err := tx.InsertKeyVersion(ctx, version("Pool", "k", "v1", 1)); err != nil {
			return err
		}
		if err := tx.InsertRoleAssignment(ctx, &store.RoleAssignment{HSM: "Pool", ID: "a1", Scope: "/", RoleDefinitionID: "r", PrincipalID: "p", Created: t0}); err != nil {
			return err
		}
		if err := tx.InsertPrincipal(ctx, principal("g", store.KindGroup, "g")); err != nil {
			return err
		}
		return tx.PutObject(ctx, &store.Object{Kind: "armRoleAssignment", ID: "/x", Data: []byte("{}")})
	})
	cs := take()
	for _, want := range []store.Change{
		{Kind: store.ChangeHSM, HSM: "pool"}, {Kind: store.ChangeKey, HSM: "Pool", ID: "k"}, {Kind: store.ChangeRole, HSM: "Pool"},
		{Kind: store.ChangePrincipal, ID: "g"}, {Kind: store.ObjectChange("armRoleAssignment")},
	} {
		if !has(cs, want) {
			t.Fatalf("the changes %+v lack %+v", cs, want)
		}
	}

	mustUpdate(t, s, func(tx store.Tx) error {
		n, err := tx.GetNode(ctx)
		if err != nil {
			return err
		}
		n.TenantID = "t"
		if err := tx.UpdateNode(ctx, n); err != nil {
			return err
		}
		if err := tx.SetShipperCursor(ctx, "Pool", "logs", 3); err != nil {
			return err
		}
		if err := tx.SetRolesSeeded(ctx, "pool"); err != nil {
			return err
		}
		_, err = tx.NoteNearExpiry(ctx, "Pool", "k", "v1", t0)
		return err
	})
	cs = take()
	for _, want := range []store.Change{
		{Kind: store.ChangeNode}, {Kind: store.ChangeNode, HSM: "Pool", ID: "logs"}, {Kind: store.ChangeHSM, HSM: "pool"},
		{Kind: store.ChangeKey, HSM: "Pool", ID: "k"},
	} {
		if !has(cs, want) {
			t.Fatalf("the changes %+v lack %+v", cs, want)
		}
	}

	_ = s.Update(ctx, func(tx store.Tx) error {
		if err := tx.PurgeKey(ctx, "Pool", "k"); err != nil {
			return err
		}
		return errors.New("roll back")
	})
	if cs := take(); len(cs) != 0 {
		t.Fatalf("a rolled-back transaction delivered %+v", cs)
	}
	if err := s.View(ctx, func(tx store.Tx) error { _, err := tx.GetKey(ctx, "Pool", "k"); return err }); err != nil {
		t.Fatal(err)
	}
	if cs := take(); len(cs) != 0 {
		t.Fatalf("a View delivered %+v", cs)
	}

	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteHSM(ctx, "POOL") })
	if cs := take(); !has(cs, store.Change{Kind: store.ChangeHSM, HSM: "pool"}) {
		t.Fatalf("DeleteHSM delivered %+v", cs)
	}

	cancel()
	mustUpdate(t, s, func(tx store.Tx) error { return tx.SetShipperCursor(ctx, "h", "k", 1) })
	if cs := take(); len(cs) != 0 {
		t.Fatalf("after cancel: %+v", cs)
	}
}

func testLeases(t *testing.T, s store.Store) {
	take := func(name, holder string, now time.Time, ttl time.Duration) bool {
		t.Helper()
		held, err := store.TakeLease(ctx, s, name, holder, now, ttl)
		must(t, err)
		return held
	}
	if !take("job", "a", t0, time.Minute) {
		t.Fatal("a free lease was refused")
	}
	if take("job", "b", t0.Add(30*time.Second), time.Minute) {
		t.Fatal("another holder took a live lease")
	}
	if !take("other", "b", t0, time.Minute) {
		t.Fatal("leases of different names are independent")
	}
	if !take("job", "a", t0.Add(50*time.Second), time.Minute) {
		t.Fatal("the holder could not renew")
	}
	if take("job", "b", t0.Add(90*time.Second), time.Minute) {
		t.Fatal("the renewal did not extend the lease")
	}
	if !take("job", "b", t0.Add(111*time.Second), time.Minute) {
		t.Fatal("an expired lease was refused")
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.ReleaseLease(ctx, "job", "a") })
	if take("job", "a", t0.Add(112*time.Second), time.Minute) {
		t.Fatal("releasing another holder's lease freed it")
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.ReleaseLease(ctx, "job", "b") })
	if !take("job", "a", t0.Add(113*time.Second), time.Minute) {
		t.Fatal("a released lease was refused")
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.ReleaseLease(ctx, "never", "a") })
}

func testJobs(t *testing.T, s store.Store) {
	job := func(id, h string, start time.Time) *store.Job {
		return &store.Job{ID: id, HSM: h, Kind: "backup", Status: store.JobRunning, Details: "running", Start: start, Node: "node-1"}
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, j := range []*store.Job{job("b", "h1", t0), job("a", "h2", t0), job("c", "h1", t0.Add(-time.Minute))} {
			if err := tx.InsertJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	wantErr(t, "a taken job id", update(t, s, func(tx store.Tx) error { return tx.InsertJob(ctx, job("a", "h1", t0)) }), store.ErrConflict)
	running, err := view(t, s, func(tx store.Tx) ([]*store.Job, error) { return tx.RunningJobs(ctx, "") })
	if err != nil || len(running) != 3 || running[0].ID != "c" || running[1].ID != "a" || running[2].ID != "b" {
		t.Fatalf("every running job, oldest first, then by id: %+v, %v", running, err)
	}
	done := job("c", "h1", t0.Add(-time.Minute))
	done.Status, done.Details, done.FolderURI, done.End = "Failed", "failed", "https://x/c", t0
	done.ErrorKind, done.ErrorCode, done.ErrorMessage = "conflict", "Conflict", "no"
	mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateJob(ctx, done) })
	running, err = view(t, s, func(tx store.Tx) ([]*store.Job, error) { return tx.RunningJobs(ctx, "h1") })
	if err != nil || len(running) != 1 || running[0].ID != "b" {
		t.Fatalf("h1's running jobs: %+v, %v", running, err)
	}
	got, err := view(t, s, func(tx store.Tx) (*store.Job, error) { return tx.GetJob(ctx, "h1", "c") })
	if err != nil || *got != *done {
		t.Fatalf("GetJob = %+v, %v; want %+v", got, err, done)
	}
	_, err = view(t, s, func(tx store.Tx) (*store.Job, error) { return tx.GetJob(ctx, "h2", "c") })
	wantErr(t, "a job of another HSM", err, store.ErrNotFound)
	wantErr(t, "UpdateJob of nothing", update(t, s, func(tx store.Tx) error { return tx.UpdateJob(ctx, job("z", "h1", t0)) }), store.ErrNotFound)
}

func testSignIns(t *testing.T, s store.Store) {
	mustUpdate(t, s, func(tx store.Tx) error { return tx.InsertPrincipal(ctx, principal("u", store.KindUser, "u")) })
	wantErr(t, "no authenticator", func() error {
		_, err := view(t, s, func(tx store.Tx) (*store.Authenticator, error) { return tx.GetAuthenticator(ctx, "u") })
		return err
	}(), store.ErrNotFound)
	wantErr(t, "an authenticator of nobody", update(t, s, func(tx store.Tx) error {
		return tx.PutAuthenticator(ctx, &store.Authenticator{ID: "a", PrincipalID: "nobody", Sealed: []byte("x"), Created: t0})
	}), store.ErrConflict)
	mustUpdate(t, s, func(tx store.Tx) error {
		return tx.PutAuthenticator(ctx, &store.Authenticator{ID: "a1", PrincipalID: "u", Sealed: []byte("s1"), Created: t0})
	})
	mustUpdate(t, s, func(tx store.Tx) error {
		return tx.PutAuthenticator(ctx, &store.Authenticator{ID: "a2", PrincipalID: "u", Sealed: []byte("s2"), Confirmed: true, LastStep: 42, Created: t0})
	})
	a, err := view(t, s, func(tx store.Tx) (*store.Authenticator, error) { return tx.GetAuthenticator(ctx, "u") })
	if err != nil || a.ID != "a2" || string(a.Sealed) != "s2" || !a.Confirmed || a.LastStep != 42 || !a.Created.Equal(t0) {
		t.Fatalf("PutAuthenticator replaces: %+v, %v", a, err)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteAuthenticator(ctx, "u") })
	wantErr(t, "deleting an authenticator twice", update(t, s, func(tx store.Tx) error { return tx.DeleteAuthenticator(ctx, "u") }), store.ErrNotFound)

	mustUpdate(t, s, func(tx store.Tx) error {
		for i, id := range []string{"r1", "r2", "r3"} {
			r := &store.RefreshToken{ID: id, PrincipalID: "u", Hash: "h" + id, AMR: []string{"pwd", "mfa"}, AuthTime: t0, Expires: t0.Add(time.Duration(i+1) * time.Hour)}
			if err := tx.InsertRefreshToken(ctx, r); err != nil {
				return err
			}
		}
		return tx.PutAuthenticator(ctx, &store.Authenticator{ID: "a3", PrincipalID: "u", Sealed: []byte("s3"), Created: t0})
	})
	wantErr(t, "a taken refresh token id", update(t, s, func(tx store.Tx) error {
		return tx.InsertRefreshToken(ctx, &store.RefreshToken{ID: "r1", PrincipalID: "u", Hash: "h", AuthTime: t0, Expires: t0})
	}), store.ErrConflict)
	wantErr(t, "a refresh token of nobody", update(t, s, func(tx store.Tx) error {
		return tx.InsertRefreshToken(ctx, &store.RefreshToken{ID: "r9", PrincipalID: "nobody", Hash: "h", AuthTime: t0, Expires: t0})
	}), store.ErrConflict)
	r, err := view(t, s, func(tx store.Tx) (*store.RefreshToken, error) { return tx.GetRefreshToken(ctx, "r2") })
	if err != nil || r.PrincipalID != "u" || r.Hash != "hr2" || len(r.AMR) != 2 || r.AMR[1] != "mfa" || !r.AuthTime.Equal(t0) || !r.Expires.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("GetRefreshToken: %+v, %v", r, err)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteRefreshToken(ctx, "r2") })
	wantErr(t, "deleting a refresh token twice", update(t, s, func(tx store.Tx) error { return tx.DeleteRefreshToken(ctx, "r2") }), store.ErrNotFound)
	var deleted int
	mustUpdate(t, s, func(tx store.Tx) (err error) {
		deleted, err = tx.DeleteRefreshTokens(ctx, "other", t0.Add(90*time.Minute))
		return err
	})
	if deleted != 1 {
		t.Fatalf("DeleteRefreshTokens of expired ones deleted %d, want 1", deleted)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeletePrincipal(ctx, "u") })
	wantErr(t, "a refresh token of a deleted user", func() error {
		_, err := view(t, s, func(tx store.Tx) (*store.RefreshToken, error) { return tx.GetRefreshToken(ctx, "r3") })
		return err
	}(), store.ErrNotFound)
	wantErr(t, "the authenticator of a deleted user", func() error {
		_, err := view(t, s, func(tx store.Tx) (*store.Authenticator, error) { return tx.GetAuthenticator(ctx, "u") })
		return err
	}(), store.ErrNotFound)
}
