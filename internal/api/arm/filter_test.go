package arm

import (
	"testing"

	"github.com/keyward/keyward/internal/fault"
)

func TestRoleFiltersRefuseWhatTheyDoNotRead(t *testing.T) {
	if at, p, err := assignmentFilter("atScope() and principalId eq 'abc'"); err != nil || !at || p != "abc" {
		t.Fatalf("atScope() and principalId: %v %q %v", at, p, err)
	}
	if n, custom, err := definitionFilter("roleName eq 'It''s' and type eq 'CustomRole'"); err != nil || n != "It's" || !custom {
		t.Fatalf("roleName and type: %q %v %v", n, custom, err)
	}
	// A filter ARM does not take must not be ignored, widening the list.
	for _, f := range []string{"principalId eq 'abc' or 1 eq 1", "principalid eq abc", "assignedTo('x')"} {
		if _, _, err := assignmentFilter(f); fault.KindOf(err) != fault.Invalid {
			t.Errorf("assignments %q: %v, want bad input", f, err)
		}
	}
}

// FuzzRoleFilters feeds arbitrary $filter expressions to the control
// plane's role list parsers: no panic, and refusals are bad input.
func FuzzRoleFilters(f *testing.F) {
	for _, s := range []string{"atScope()", "principalId eq 'abc'", "roleName eq 'Owner'", "type eq 'CustomRole'", "", "x and y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		if _, _, err := assignmentFilter(filter); err != nil && fault.KindOf(err) != fault.Invalid {
			t.Fatalf("assignments %q: %v", filter, err)
		}
		if _, _, err := definitionFilter(filter); err != nil && fault.KindOf(err) != fault.Invalid {
			t.Fatalf("definitions %q: %v", filter, err)
		}
	})
}
