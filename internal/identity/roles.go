package identity

import (
	"context"
	"slices"
	"strings"

	"github.com/keyward/keyward/internal/store"
)

// DirectoryRoleTemplates are Entra's template ids of the directory roles
// Keyward knows, by name; Graph's role assignments name roles by them.
var DirectoryRoleTemplates = map[string]string{
	GlobalAdministrator:         "62e90394-69f5-4237-9190-012177145e10",
	PrivilegedRoleAdministrator: "e8611ab8-c189-46e8-94e1-60213ab1f814",
}

// DirectoryRoleByTemplate returns the name of the directory role whose
// template id is id (any case), or "" if Keyward has none.
func DirectoryRoleByTemplate(id string) string {
	for name, t := range DirectoryRoleTemplates {
		if strings.EqualFold(t, id) {
			return name
		}
	}
	return ""
}

// SetRole grants (on) or takes away a directory role of principal id. It
// reports whether anything changed; ErrNotFound if there is no principal.
func (d *Directory) SetRole(ctx context.Context, id, role string, on bool) (bool, error) {
	changed := false
	err := d.store.Update(ctx, func(tx store.Tx) error {
		p, err := tx.GetPrincipal(ctx, id)
		if err != nil {
			return err
		}
		has := slices.Contains(p.DirectoryRoles, role)
		if has == on {
			return nil
		}
		roles := slices.DeleteFunc(slices.Clone(p.DirectoryRoles), func(r string) bool { return r == role })
		if on {
			roles = append(roles, role)
		}
		changed = true
		return tx.SetDirectoryRoles(ctx, id, roles)
	})
	return changed, mapErr(err)
}
