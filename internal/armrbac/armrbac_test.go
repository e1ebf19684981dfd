package armrbac

import (
	"testing"
	"time"
)

// TestBuiltInRolesByAction is the role × action table of the control
// plane. No control-plane role grants a data action.
func TestBuiltInRolesByAction(t *testing.T) {
	const (
		createHSM   = "Microsoft.KeyVault/managedHSMs/write"
		readHSM     = "Microsoft.KeyVault/managedHSMs/read"
		deleteHSM   = "Microsoft.KeyVault/managedHSMs/delete"
		purgeHSM    = "Microsoft.KeyVault/locations/deletedManagedHsms/purge/action"
		assignRole  = "Microsoft.Authorization/roleAssignments/write"
		readRoles   = "Microsoft.Authorization/roleAssignments/read"
		createGroup = "Microsoft.Resources/subscriptions/resourceGroups/write"
		readGroup   = "Microsoft.Resources/subscriptions/resourceGroups/read"
		diagnostics = "Microsoft.Insights/diagnosticSettings/write"
		createMI    = "Microsoft.ManagedIdentity/userAssignedIdentities/write"
		signKey     = "Microsoft.KeyVault/managedHsm/keys/sign/action"
		readKey     = "Microsoft.KeyVault/managedHsm/keys/read/action"
	)
	actions := []string{createHSM, readHSM, deleteHSM, purgeHSM, assignRole, readRoles, createGroup, readGroup, diagnostics, createMI, signKey, readKey}
	want := map[string][]string{
		"Owner":                     {createHSM, readHSM, deleteHSM, purgeHSM, assignRole, readRoles, createGroup, readGroup, diagnostics, createMI},
		"Contributor":               {createHSM, readHSM, deleteHSM, purgeHSM, readRoles, createGroup, readGroup, diagnostics, createMI},
		"Reader":                    {readHSM, readRoles, readGroup},
		"User Access Administrator": {readHSM, assignRole, readRoles, readGroup},
		"Managed HSM Contributor":   {createHSM, readHSM, deleteHSM, purgeHSM, readRoles, readGroup, diagnostics},
	}
	for name, allowed := range want {
		r, ok := RoleByName(name)
		if !ok {
			t.Fatalf("no role %q", name)
		}
		for _, a := range actions {
			exp := false
			for _, w := range allowed {
				exp = exp || w == a
			}
			if got := r.Permits(a); got != exp {
				t.Errorf("%s × %s: got %v, want %v", name, a, got, exp)
			}
		}
	}
	if _, ok := RoleByID("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/" + ManagedHSMContributorID); !ok {
		t.Error("a full role definition id is not found")
	}
}

// TestCovers: assignments apply to their scope and everything below it,
// without regard to case, and never to a sibling whose name shares a prefix.
func TestCovers(t *testing.T) {
	for _, c := range []struct {
		scope, resource string
		want            bool
	}{
		{"/subscriptions/s", "/subscriptions/s", true},
		{"/subscriptions/s", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/managedHSMs/h", true},
		{"/subscriptions/s/resourceGroups/rg", "/subscriptions/S/RESOURCEGROUPS/RG/providers/Microsoft.KeyVault/managedHSMs/h", true},
		{"/subscriptions/s/resourceGroups/rg/", "/subscriptions/s/resourceGroups/rg", true},
		{"/subscriptions/s/resourceGroups/rg", "/subscriptions/s/resourceGroups/rg2", false},
		{"/subscriptions/s/resourceGroups/rg", "/subscriptions/s", false},
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/managedHSMs/h", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/managedHSMs/h2", false},
		{"/subscriptions/s1", "/subscriptions/s", false},
	} {
		if got := covers(c.scope, c.resource); got != c.want {
			t.Errorf("covers(%q, %q) = %v", c.scope, c.resource, got)
		}
	}
}

// TestLive: a time-limited assignment is in force from Start (included)
// to End (excluded); zero bounds are open.
func TestLive(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		a    Assignment
		at   time.Time
		want bool
	}{
		{Assignment{}, t0, true},
		{Assignment{Start: t0, End: t0.Add(time.Hour)}, t0, true},
		{Assignment{Start: t0, End: t0.Add(time.Hour)}, t0.Add(-time.Second), false},
		{Assignment{Start: t0, End: t0.Add(time.Hour)}, t0.Add(time.Hour), false},
		{Assignment{End: t0}, t0.Add(-time.Nanosecond), true},
	} {
		if got := c.a.Live(c.at); got != c.want {
			t.Errorf("%+v at %s: %v", c.a, c.at, got)
		}
	}
}
