package dataplane

import (
	"testing"

	"github.com/keyward/keyward/internal/fault"
)

// FuzzRoleFilters feeds arbitrary OData $filter expressions to the role
// assignment and role definition list parsers: they must never panic, and
// refuse what they do not understand as bad input.
func FuzzRoleFilters(f *testing.F) {
	for _, s := range []string{"atScope()", "principalId eq 'abc'", "atScope() and principalId eq 'x'",
		"roleName eq 'Managed HSM Crypto User'", "atScopeAndBelow() and roleName eq 'It''s'", "", "  AND  ", "principalId eq '"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		if _, err := assignmentFilter("/", filter); err != nil && fault.KindOf(err) != fault.Invalid {
			t.Fatalf("assignments %q: %v is not a client error", filter, err)
		}
		if _, err := definitionFilter(filter); err != nil && fault.KindOf(err) != fault.Invalid {
			t.Fatalf("definitions %q: %v is not a client error", filter, err)
		}
	})
}
