package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/store"
)

// PutRoleDefinition implements store.RBAC.
func (t *txn) PutRoleDefinition(ctx context.Context, d *store.RoleDefinition) error {
	t.note(store.ChangeRole, d.HSM, d.ID)
	_, err := t.exec(ctx, `INSERT INTO role_definitions(hsm, id, name, description, permissions, assignable_scopes, created, updated)
		VALUES($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (hsm, id_nocase) DO UPDATE SET name = excluded.name, description = excluded.description,
		permissions = excluded.permissions, assignable_scopes = excluded.assignable_scopes, updated = excluded.updated`,
		d.HSM, d.ID, d.Name, d.Description, toJSON(d.Permissions), toJSON(d.AssignableScopes), unix(d.Created), unix(d.Updated))
	return err
}

const roleDefCols = `hsm, id, name, description, permissions, assignable_scopes, created, updated`

func scanRoleDef(row pgx.Row) (*store.RoleDefinition, error) {
	var d store.RoleDefinition
	var perms, scopes string
	var created, updated int64
	if err := row.Scan(&d.HSM, &d.ID, &d.Name, &d.Description, &perms, &scopes, &created, &updated); err != nil {
		return nil, notFound(err)
	}
	d.Created, d.Updated = fromUnix(created), fromUnix(updated)
	if err := fromJSON(perms, &d.Permissions); err != nil {
		return nil, err
	}
	return &d, fromJSON(scopes, &d.AssignableScopes)
}

// GetRoleDefinition implements store.RBAC.
func (t *txn) GetRoleDefinition(ctx context.Context, hsm, id string) (*store.RoleDefinition, error) {
	return scanRoleDef(t.tx.QueryRow(ctx, `SELECT `+roleDefCols+` FROM role_definitions WHERE hsm = $1 AND id_nocase = $2`, hsm, fold(id)))
}

// ListRoleDefinitions implements store.RBAC.
func (t *txn) ListRoleDefinitions(ctx context.Context, hsm string) ([]*store.RoleDefinition, error) {
	rows, err := t.tx.Query(ctx, `SELECT `+roleDefCols+` FROM role_definitions WHERE hsm = $1 ORDER BY name, id_nocase`, hsm)
	return collect(rows, err, func(r pgx.Rows) (*store.RoleDefinition, error) { return scanRoleDef(r) })
}

// DeleteRoleDefinition implements store.RBAC.
func (t *txn) DeleteRoleDefinition(ctx context.Context, hsm, id string) error {
	t.note(store.ChangeRole, hsm, id)
	return mustAffect(t.exec(ctx, `DELETE FROM role_definitions WHERE hsm = $1 AND id_nocase = $2`, hsm, fold(id)))
}

// InsertRoleAssignment implements store.RBAC.
func (t *txn) InsertRoleAssignment(ctx context.Context, a *store.RoleAssignment) error {
	t.note(store.ChangeRole, a.HSM, a.ID)
	source := a.Source
	if source == "" {
		source = "direct"
	}
	_, err := t.exec(ctx, `INSERT INTO role_assignments(hsm, id, scope, role_definition_id, principal_id, created, valid_from, valid_until, source, created_by)
		VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		a.HSM, a.ID, a.Scope, a.RoleDefinitionID, a.PrincipalID, unix(a.Created), unix(a.Start), unix(a.End), source, a.CreatedBy)
	return err
}

const roleAssignCols = `hsm, id, scope, role_definition_id, principal_id, created, valid_from, valid_until, source, created_by`

func scanRoleAssignment(row pgx.Row) (*store.RoleAssignment, error) {
	var a store.RoleAssignment
	var created, start, end int64
	if err := row.Scan(&a.HSM, &a.ID, &a.Scope, &a.RoleDefinitionID, &a.PrincipalID, &created, &start, &end, &a.Source, &a.CreatedBy); err != nil {
		return nil, notFound(err)
	}
	a.Created, a.Start, a.End = fromUnix(created), fromUnix(start), fromUnix(end)
	return &a, nil
}

// GetRoleAssignment implements store.RBAC.
func (t *txn) GetRoleAssignment(ctx context.Context, hsm, id string) (*store.RoleAssignment, error) {
	return scanRoleAssignment(t.tx.QueryRow(ctx, `SELECT `+roleAssignCols+` FROM role_assignments WHERE hsm = $1 AND id_nocase = $2`, hsm, fold(id)))
}

// ListRoleAssignments implements store.RBAC.
func (t *txn) ListRoleAssignments(ctx context.Context, hsm string) ([]*store.RoleAssignment, error) {
	rows, err := t.tx.Query(ctx, `SELECT `+roleAssignCols+` FROM role_assignments WHERE hsm = $1 ORDER BY created, id_nocase`, hsm)
	return collect(rows, err, func(r pgx.Rows) (*store.RoleAssignment, error) { return scanRoleAssignment(r) })
}

// ListRoleAssignmentsAt implements store.RBAC.
func (t *txn) ListRoleAssignmentsAt(ctx context.Context, hsm string, scopes ...string) ([]*store.RoleAssignment, error) {
	folded := make([]string, len(scopes))
	for i, s := range scopes {
		folded[i] = fold(s)
	}
	rows, err := t.tx.Query(ctx, `SELECT `+roleAssignCols+` FROM role_assignments WHERE hsm = $1 AND lower(scope) = ANY($2)
		ORDER BY created, id_nocase`, hsm, folded)
	return collect(rows, err, func(r pgx.Rows) (*store.RoleAssignment, error) { return scanRoleAssignment(r) })
}

// DeleteRoleAssignment implements store.RBAC.
func (t *txn) DeleteRoleAssignment(ctx context.Context, hsm, id string) error {
	t.note(store.ChangeRole, hsm, id)
	return mustAffect(t.exec(ctx, `DELETE FROM role_assignments WHERE hsm = $1 AND id_nocase = $2`, hsm, fold(id)))
}
