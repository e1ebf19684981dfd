package sqlite

import (
	"context"
	"database/sql"
	"strings"

	"github.com/keyward/keyward/internal/store"
)

func (t *txn) PutRoleDefinition(ctx context.Context, d *store.RoleDefinition) error {
	t.note(store.ChangeRole, d.HSM, d.ID)
	_, err := t.exec(ctx, `INSERT INTO role_definitions(hsm, id, name, description, permissions, assignable_scopes, created, updated)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(hsm, id) DO UPDATE SET name = excluded.name, description = excluded.description,
		permissions = excluded.permissions, assignable_scopes = excluded.assignable_scopes, updated = excluded.updated`,
		d.HSM, d.ID, d.Name, d.Description, toJSON(d.Permissions), toJSON(d.AssignableScopes), unix(d.Created), unix(d.Updated))
	return err
}

const roleDefCols = `hsm, id, name, description, permissions, assignable_scopes, created, updated`

func scanRoleDef(row scanner) (*store.RoleDefinition, error) {
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

func (t *txn) GetRoleDefinition(ctx context.Context, hsm, id string) (*store.RoleDefinition, error) {
	return scanRoleDef(t.queryRow(ctx, `SELECT `+roleDefCols+` FROM role_definitions WHERE hsm = ? AND id = ?`, hsm, id))
}

func (t *txn) ListRoleDefinitions(ctx context.Context, hsm string) ([]*store.RoleDefinition, error) {
	rows, err := t.query(ctx, `SELECT `+roleDefCols+` FROM role_definitions WHERE hsm = ? ORDER BY name, id`, hsm)
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []*store.RoleDefinition
	for rows.Next() {
		d, err := scanRoleDef(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (t *txn) DeleteRoleDefinition(ctx context.Context, hsm, id string) error {
	t.note(store.ChangeRole, hsm, id)
	return mustAffect(t.exec(ctx, `DELETE FROM role_definitions WHERE hsm = ? AND id = ?`, hsm, id))
}

func (t *txn) InsertRoleAssignment(ctx context.Context, a *store.RoleAssignment) error {
	t.note(store.ChangeRole, a.HSM, a.ID)
	source := a.Source
	if source == "" {
		source = "direct"
	}
	_, err := t.exec(ctx, `INSERT INTO role_assignments(hsm, id, scope, role_definition_id, principal_id, created, valid_from, valid_until, source, created_by)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.HSM, a.ID, a.Scope, a.RoleDefinitionID, a.PrincipalID, unix(a.Created), unix(a.Start), unix(a.End), source, a.CreatedBy)
	return err
}

const roleAssignCols = `hsm, id, scope, role_definition_id, principal_id, created, valid_from, valid_until, source, created_by`

func scanRoleAssignment(row scanner) (*store.RoleAssignment, error) {
	var a store.RoleAssignment
	var created, start, end int64
	if err := row.Scan(&a.HSM, &a.ID, &a.Scope, &a.RoleDefinitionID, &a.PrincipalID, &created, &start, &end, &a.Source, &a.CreatedBy); err != nil {
		return nil, notFound(err)
	}
	a.Created, a.Start, a.End = fromUnix(created), fromUnix(start), fromUnix(end)
	return &a, nil
}

func (t *txn) GetRoleAssignment(ctx context.Context, hsm, id string) (*store.RoleAssignment, error) {
	return scanRoleAssignment(t.queryRow(ctx, `SELECT `+roleAssignCols+` FROM role_assignments WHERE hsm = ? AND id = ?`, hsm, id))
}

func (t *txn) ListRoleAssignments(ctx context.Context, hsm string) ([]*store.RoleAssignment, error) {
	return assignments(t.query(ctx, `SELECT `+roleAssignCols+` FROM role_assignments WHERE hsm = ? ORDER BY created, id`, hsm))
}

// assignments scans the rows of a role assignment query.
func assignments(rows *sql.Rows, err error) ([]*store.RoleAssignment, error) {
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []*store.RoleAssignment
	for rows.Next() {
		a, err := scanRoleAssignment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func (t *txn) ListRoleAssignmentsAt(ctx context.Context, hsm string, scopes ...string) ([]*store.RoleAssignment, error) {
	if len(scopes) == 0 {
		return nil, nil
	}
	args := []any{hsm}
	for _, s := range scopes {
		args = append(args, s)
	}
	return assignments(t.query(ctx, `SELECT `+roleAssignCols+` FROM role_assignments WHERE hsm = ? AND scope IN (?`+
		strings.Repeat(", ?", len(scopes)-1)+`) ORDER BY created, id`, args...))
}

func (t *txn) DeleteRoleAssignment(ctx context.Context, hsm, id string) error {
	t.note(store.ChangeRole, hsm, id)
	return mustAffect(t.exec(ctx, `DELETE FROM role_assignments WHERE hsm = ? AND id = ?`, hsm, id))
}
