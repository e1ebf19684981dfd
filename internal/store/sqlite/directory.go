package sqlite

import (
	"context"

	"github.com/keyward/keyward/internal/store"
)

const principalCols = `id, kind, display_name, COALESCE(app_id, ''), COALESCE(upn, ''), mail_nickname, password_hash, directory_roles, created`

type scanner interface{ Scan(...any) error }

func scanPrincipal(row scanner) (*store.Principal, error) {
	var p store.Principal
	var roles string
	var created int64
	if err := row.Scan(&p.ID, &p.Kind, &p.DisplayName, &p.AppID, &p.UPN, &p.MailNickname, &p.PasswordHash, &roles, &created); err != nil {
		return nil, notFound(err)
	}
	p.Created = fromUnix(created)
	return &p, fromJSON(roles, &p.DirectoryRoles)
}

func (t *txn) InsertPrincipal(ctx context.Context, p *store.Principal) error {
	t.note(store.ChangePrincipal, "", p.ID)
	roles := p.DirectoryRoles
	if roles == nil {
		roles = []string{}
	}
	_, err := t.exec(ctx, `INSERT INTO principals(id, kind, display_name, app_id, upn, mail_nickname, password_hash, directory_roles, created)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.Kind, p.DisplayName, nullable(p.AppID), nullable(p.UPN), p.MailNickname, p.PasswordHash, toJSON(roles), unix(p.Created))
	return err
}

func (t *txn) getPrincipal(ctx context.Context, where string, arg any) (*store.Principal, error) {
	return scanPrincipal(t.queryRow(ctx, `SELECT `+principalCols+` FROM principals WHERE `+where, arg))
}

func (t *txn) GetPrincipal(ctx context.Context, id string) (*store.Principal, error) {
	return t.getPrincipal(ctx, `id = ?`, id)
}

func (t *txn) PrincipalByAppID(ctx context.Context, appID string) (*store.Principal, error) {
	return t.getPrincipal(ctx, `app_id = ?`, appID)
}

func (t *txn) PrincipalByUPN(ctx context.Context, upn string) (*store.Principal, error) {
	return t.getPrincipal(ctx, `upn = ?`, upn)
}

func (t *txn) ListPrincipals(ctx context.Context, kind string) ([]*store.Principal, error) {
	rows, err := t.query(ctx, `SELECT `+principalCols+` FROM principals WHERE kind = ? ORDER BY display_name, id`, kind)
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []*store.Principal
	for rows.Next() {
		p, err := scanPrincipal(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func (t *txn) DeletePrincipal(ctx context.Context, id string) error {
	t.note(store.ChangePrincipal, "", id)
	return mustAffect(t.exec(ctx, `DELETE FROM principals WHERE id = ?`, id))
}

func (t *txn) SetDirectoryRoles(ctx context.Context, id string, roles []string) error {
	t.note(store.ChangePrincipal, "", id)
	if roles == nil {
		roles = []string{}
	}
	return mustAffect(t.exec(ctx, `UPDATE principals SET directory_roles = ? WHERE id = ?`, toJSON(roles), id))
}

func (t *txn) AddMember(ctx context.Context, groupID, memberID string) error {
	t.note(store.ChangePrincipal, "", groupID)
	_, err := t.exec(ctx, `INSERT INTO members(group_id, member_id) VALUES(?, ?)`, groupID, memberID)
	return err
}

func (t *txn) RemoveMember(ctx context.Context, groupID, memberID string) error {
	t.note(store.ChangePrincipal, "", groupID)
	return mustAffect(t.exec(ctx, `DELETE FROM members WHERE group_id = ? AND member_id = ?`, groupID, memberID))
}

func (t *txn) strings(ctx context.Context, query string, arg any) ([]string, error) {
	rows, err := t.query(ctx, query, arg)
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, notFound(err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (t *txn) Members(ctx context.Context, groupID string) ([]string, error) {
	return t.strings(ctx, `SELECT member_id FROM members WHERE group_id = ? ORDER BY member_id`, groupID)
}

func (t *txn) GroupsOf(ctx context.Context, memberID string) ([]string, error) {
	return t.strings(ctx, `SELECT group_id FROM members WHERE member_id = ? ORDER BY group_id`, memberID)
}

func (t *txn) InsertCredential(ctx context.Context, c *store.Credential) error {
	t.note(store.ChangePrincipal, "", c.PrincipalID)
	_, err := t.exec(ctx, `INSERT INTO credentials(id, principal_id, display_name, hash, hint, created, expires) VALUES(?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.PrincipalID, c.DisplayName, c.Hash, c.Hint, unix(c.Created), unix(c.Expires))
	return err
}

func (t *txn) Credentials(ctx context.Context, principalID string) ([]*store.Credential, error) {
	rows, err := t.query(ctx, `SELECT id, principal_id, display_name, hash, hint, created, expires
		FROM credentials WHERE principal_id = ? ORDER BY created`, principalID)
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []*store.Credential
	for rows.Next() {
		var c store.Credential
		var created, expires int64
		if err := rows.Scan(&c.ID, &c.PrincipalID, &c.DisplayName, &c.Hash, &c.Hint, &created, &expires); err != nil {
			return nil, notFound(err)
		}
		c.Created, c.Expires = fromUnix(created), fromUnix(expires)
		out = append(out, &c)
	}
	return out, rows.Err()
}

func (t *txn) DeleteCredential(ctx context.Context, id string) error {
	t.note(store.ChangePrincipal, "", "")
	return mustAffect(t.exec(ctx, `DELETE FROM credentials WHERE id = ?`, id))
}

func (t *txn) InsertTokenKey(ctx context.Context, k *store.TokenKey) error {
	t.note(store.ChangeTokenKey, "", k.ID)
	_, err := t.exec(ctx, `INSERT INTO token_keys(id, sealed, created) VALUES(?, ?, ?)`, k.ID, k.Sealed, unix(k.Created))
	return err
}

func (t *txn) TokenKeys(ctx context.Context) ([]*store.TokenKey, error) {
	rows, err := t.query(ctx, `SELECT id, sealed, created FROM token_keys ORDER BY created DESC, id`)
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []*store.TokenKey
	for rows.Next() {
		var k store.TokenKey
		var created int64
		if err := rows.Scan(&k.ID, &k.Sealed, &created); err != nil {
			return nil, notFound(err)
		}
		k.Created = fromUnix(created)
		out = append(out, &k)
	}
	return out, rows.Err()
}
