package rbac

import (
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
)

func TestMatchAction(t *testing.T) {
	cases := []struct {
		pattern string
		action  Action
		want    bool
	}{
		{"Microsoft.KeyVault/managedHsm/keys/sign/action", KeysSign, true},
		{"microsoft.keyvault/managedhsm/KEYS/sign/action", KeysSign, true},
		{"Microsoft.KeyVault/managedHsm/keys/*", KeysSign, true},
		{"Microsoft.KeyVault/managedHsm/keys/*", DeletedKeysPurge, true},
		{"Microsoft.KeyVault/managedHsm/keys/*", RNG, false},
		{"Microsoft.KeyVault/managedHsm/*/read/action", KeysRead, true},
		{"Microsoft.KeyVault/managedHsm/*/read/action", RoleAssignmentsRead, true},
		{"Microsoft.KeyVault/managedHsm/*/read/action", KeysSign, false},
		{"*", SecurityDomainDownload, true},
		{"Microsoft.KeyVault/managedHsm/keys/sign", KeysSign, false},
		{"Microsoft.KeyVault/managedHsm/keys/sign/action/extra", KeysSign, false},
	}
	for _, c := range cases {
		if got := matchAction(c.pattern, c.action); got != c.want {
			t.Errorf("matchAction(%q, %q) = %v", c.pattern, c.action, got)
		}
	}
}

func TestScopeContains(t *testing.T) {
	cases := []struct {
		scope, resource string
		want            bool
	}{
		{"/", "/", true}, {"/", "/keys/a", true}, {"/keys", "/keys", true}, {"/keys", "/keys/a", true},
		{"/keys", "/", false}, {"/keys/a", "/keys/a", true}, {"/keys/a", "/keys/ab", false},
		{"/keys/a", "/keys", false}, {"/keys/A", "/keys/a", true}, {"/keys/a", "/", false},
	}
	for _, c := range cases {
		if got := scopeContains(c.scope, c.resource); got != c.want {
			t.Errorf("scopeContains(%q, %q) = %v", c.scope, c.resource, got)
		}
	}
}

func TestCleanScope(t *testing.T) {
	for in, want := range map[string]string{"/": "/", "": "/", "//": "/", "/keys": "/keys", "/KEYS/": "/keys", "/keys/My-Key": "/keys/My-Key"} {
		if got, err := CleanScope(in); err != nil || got != want {
			t.Errorf("CleanScope(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"/secrets", "/keys/a/b", "/keys/under_score", "/certificates/x"} {
		if _, err := CleanScope(bad); err == nil {
			t.Errorf("CleanScope(%q) accepted", bad)
		}
	}
}

func TestBuiltInRolesHaveKnownActions(t *testing.T) {
	if len(builtInRoles) != 9 {
		t.Fatalf("%d built-in roles", len(builtInRoles))
	}
	for _, r := range builtInRoles {
		for _, p := range r.Permissions {
			for _, a := range p.DataActions {
				if !knownAction(a) {
					t.Errorf("%s grants unknown action %s", r.Name, a)
				}
			}
		}
	}
}

func TestAssignmentWindows(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return now.Add(time.Duration(h) * time.Hour) }
	cases := map[string]struct {
		start, end time.Time
		want       bool
	}{
		"no window":        {time.Time{}, time.Time{}, true},
		"active":           {at(-1), at(1), true},
		"not started":      {at(1), at(2), false},
		"ended":            {at(-2), at(-1), false},
		"ends now":         {at(-1), now, false},
		"open-ended start": {at(-1), time.Time{}, true},
	}
	for name, c := range cases {
		ix := buildIndex(nil, []*store.RoleAssignment{{ID: "a", Scope: "/", RoleDefinitionID: CryptoUserID, PrincipalID: "p", Start: c.start, End: c.end}})
		if got := ix.decide([]string{"p"}, KeysSign, "/keys/k", now, nil) != nil; got != c.want {
			t.Errorf("%s: decide = %v", name, got)
		}
	}
}
