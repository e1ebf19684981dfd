package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/store"
)

const principalCols = `id, kind, display_name, COALESCE(app_id, ''), COALESCE(upn, ''), mail_nickname, password_hash, directory_roles, created`

func scanPrincipal(row pgx.Row) (*store.Principal, error) {
	var p store.Principal
	var roles string
	var created int64
	if err := row.Scan(&p.ID, &p.Kind, &p.DisplayName, &p.AppID, &p.UPN, &p.MailNickname, &p.PasswordHash, &roles, &created); err != nil {
		return nil, notFound(err)
	}
	p.Created = fromUnix(created)
	return &p, fromJSON(roles, &p.DirectoryRoles)
}

// InsertPrincipal implements store.Directory.
func (t *txn) InsertPrincipal(ctx context.Context, p *store.Principal) error {
	t.note(store.ChangePrincipal, "", p.ID)
	roles := p.DirectoryRoles
	if roles == nil {
		roles = []string{}
	}
	_, err := t.exec(ctx, `INSERT INTO principals(id, kind, display_name, app_id, upn, mail_nickname, password_hash, directory_roles, created)
		VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		p.ID, p.Kind, p.DisplayName, nullable(p.AppID), nullable(p.UPN), p.MailNickname, p.PasswordHash, toJSON(roles), unix(p.Created))
	return err
}

func (t *txn) getPrincipal(ctx context.Context, where string, arg any) (*store.Principal, error) {
	return scanPrincipal(t.tx.QueryRow(ctx, `SELECT `+principalCols+` FROM principals WHERE `+where, arg))
}

// GetPrincipal implements store.Directory.
func (t *txn) GetPrincipal(ctx context.Context, id string) (*store.Principal, error) {
	return t.getPrincipal(ctx, `id = $1`, id)
}

// PrincipalByAppID implements store.Directory.
func (t *txn) PrincipalByAppID(ctx context.Context, appID string) (*store.Principal, error) {
	return t.getPrincipal(ctx, `app_id = $1`, appID)
}

// PrincipalByUPN implements store.Directory.
func (t *txn) PrincipalByUPN(ctx context.Context, upn string) (*store.Principal, error) {
	return t.getPrincipal(ctx, `upn_nocase = $1`, fold(upn))
}

// ListPrincipals implements store.Directory.
func (t *txn) ListPrincipals(ctx context.Context, kind string) ([]*store.Principal, error) {
	rows, err := t.tx.Query(ctx, `SELECT `+principalCols+` FROM principals WHERE kind = $1 ORDER BY display_name, id`, kind)
	return collect(rows, err, func(r pgx.Rows) (*store.Principal, error) { return scanPrincipal(r) })
}

// DeletePrincipal implements store.Directory.
func (t *txn) DeletePrincipal(ctx context.Context, id string) error {
	t.note(store.ChangePrincipal, "", id)
	return mustAffect(t.exec(ctx, `DELETE FROM principals WHERE id = $1`, id))
}

// SetDirectoryRoles implements store.Directory.
func (t *txn) SetDirectoryRoles(ctx context.Context, id string, roles []string) error {
	t.note(store.ChangePrincipal, "", id)
	if roles == nil {
		roles = []string{}
	}
	return mustAffect(t.exec(ctx, `UPDATE principals SET directory_roles = $1 WHERE id = $2`, toJSON(roles), id))
}

// AddMember implements store.Directory.
func (t *txn) AddMember(ctx context.Context, groupID, memberID string) error {
	t.note(store.ChangePrincipal, "", groupID)
	_, err := t.exec(ctx, `INSERT INTO members(group_id, member_id) VALUES($1, $2)`, groupID, memberID)
	return err
}

// RemoveMember implements store.Directory.
func (t *txn) RemoveMember(ctx context.Context, groupID, memberID string) error {
	t.note(store.ChangePrincipal, "", groupID)
	return mustAffect(t.exec(ctx, `DELETE FROM members WHERE group_id = $1 AND member_id = $2`, groupID, memberID))
}

func (t *txn) strings(ctx context.Context, query string, arg any) ([]string, error) {
	rows, err := t.tx.Query(ctx, query, arg)
	return collect(rows, err, func(r pgx.Rows) (s string, err error) {
		if err := r.Scan(&s); err != nil {
			return "", notFound(err)
		}
		return s, nil
	})
}

// Members implements store.Directory.
func (t *txn) Members(ctx context.Context, groupID string) ([]string, error) {
	return t.strings(ctx, `SELECT member_id FROM members WHERE group_id = $1 ORDER BY member_id`, groupID)
}

// GroupsOf implements store.Directory.
func (t *txn) GroupsOf(ctx context.Context, memberID string) ([]string, error) {
	return t.strings(ctx, `SELECT group_id FROM members WHERE member_id = $1 ORDER BY group_id`, memberID)
}

// PutMembership implements store.Directory.
func (t *txn) PutMembership(ctx context.Context, m *store.Membership) error {
	t.note(store.ChangePrincipal, "", m.GroupID)
	_, err := t.exec(ctx, `INSERT INTO members(group_id, member_id, since, until) VALUES($1, $2, $3, $4)
		ON CONFLICT (group_id, member_id) DO UPDATE SET since = excluded.since, until = excluded.until`,
		m.GroupID, m.MemberID, unix(m.Since), unix(m.Until))
	return err
}

func (t *txn) memberships(ctx context.Context, query string, arg string) ([]store.Membership, error) {
	rows, err := t.tx.Query(ctx, query, arg)
	return collect(rows, err, func(r pgx.Rows) (store.Membership, error) {
		var m store.Membership
		var since, until int64
		if err := r.Scan(&m.GroupID, &m.MemberID, &since, &until); err != nil {
			return m, notFound(err)
		}
		m.Since, m.Until = fromUnix(since), fromUnix(until)
		return m, nil
	})
}

// Memberships implements store.Directory.
func (t *txn) Memberships(ctx context.Context, memberID string) ([]store.Membership, error) {
	return t.memberships(ctx, `SELECT group_id, member_id, since, until FROM members WHERE member_id = $1 ORDER BY group_id`, memberID)
}

// GroupMemberships implements store.Directory.
func (t *txn) GroupMemberships(ctx context.Context, groupID string) ([]store.Membership, error) {
	return t.memberships(ctx, `SELECT group_id, member_id, since, until FROM members WHERE group_id = $1 ORDER BY member_id`, groupID)
}

// InsertCredential implements store.Directory.
func (t *txn) InsertCredential(ctx context.Context, c *store.Credential) error {
	t.note(store.ChangePrincipal, "", c.PrincipalID)
	_, err := t.exec(ctx, `INSERT INTO credentials(id, principal_id, display_name, hash, hint, created, expires)
		VALUES($1, $2, $3, $4, $5, $6, $7)`,
		c.ID, c.PrincipalID, c.DisplayName, c.Hash, c.Hint, unix(c.Created), unix(c.Expires))
	return err
}

// Credentials implements store.Directory.
func (t *txn) Credentials(ctx context.Context, principalID string) ([]*store.Credential, error) {
	rows, err := t.tx.Query(ctx, `SELECT id, principal_id, display_name, hash, hint, created, expires
		FROM credentials WHERE principal_id = $1 ORDER BY created, id`, principalID)
	return collect(rows, err, func(r pgx.Rows) (*store.Credential, error) {
		var c store.Credential
		var created, expires int64
		if err := r.Scan(&c.ID, &c.PrincipalID, &c.DisplayName, &c.Hash, &c.Hint, &created, &expires); err != nil {
			return nil, notFound(err)
		}
		c.Created, c.Expires = fromUnix(created), fromUnix(expires)
		return &c, nil
	})
}

// DeleteCredential implements store.Directory.
func (t *txn) DeleteCredential(ctx context.Context, id string) error {
	t.note(store.ChangePrincipal, "", "")
	return mustAffect(t.exec(ctx, `DELETE FROM credentials WHERE id = $1`, id))
}

// InsertTokenKey implements store.Directory.
func (t *txn) InsertTokenKey(ctx context.Context, k *store.TokenKey) error {
	t.note(store.ChangeTokenKey, "", k.ID)
	_, err := t.exec(ctx, `INSERT INTO token_keys(id, sealed, created) VALUES($1, $2, $3)`, k.ID, nonNilBytes(k.Sealed), unix(k.Created))
	return err
}

// TokenKeys implements store.Directory.
func (t *txn) TokenKeys(ctx context.Context) ([]*store.TokenKey, error) {
	rows, err := t.tx.Query(ctx, `SELECT id, sealed, created FROM token_keys ORDER BY created DESC, id`)
	return collect(rows, err, func(r pgx.Rows) (*store.TokenKey, error) {
		var k store.TokenKey
		var created int64
		if err := r.Scan(&k.ID, &k.Sealed, &created); err != nil {
			return nil, notFound(err)
		}
		k.Created = fromUnix(created)
		return &k, nil
	})
}

// PutAuthenticator implements store.SignIns.
func (t *txn) PutAuthenticator(ctx context.Context, a *store.Authenticator) error {
	t.note(store.ChangePrincipal, "", a.PrincipalID)
	_, err := t.exec(ctx, `INSERT INTO authenticators(principal_id, id, sealed, confirmed, last_step, created) VALUES($1, $2, $3, $4, $5, $6)
		ON CONFLICT (principal_id) DO UPDATE SET id = excluded.id, sealed = excluded.sealed, confirmed = excluded.confirmed,
			last_step = excluded.last_step, created = excluded.created`,
		a.PrincipalID, a.ID, nonNilBytes(a.Sealed), a.Confirmed, a.LastStep, unix(a.Created))
	return err
}

// GetAuthenticator implements store.SignIns.
func (t *txn) GetAuthenticator(ctx context.Context, principalID string) (*store.Authenticator, error) {
	var a store.Authenticator
	var created int64
	err := t.tx.QueryRow(ctx, `SELECT principal_id, id, sealed, confirmed, last_step, created FROM authenticators WHERE principal_id = $1`,
		principalID).Scan(&a.PrincipalID, &a.ID, &a.Sealed, &a.Confirmed, &a.LastStep, &created)
	if err != nil {
		return nil, notFound(err)
	}
	a.Created = fromUnix(created)
	return &a, nil
}

// DeleteAuthenticator implements store.SignIns.
func (t *txn) DeleteAuthenticator(ctx context.Context, principalID string) error {
	t.note(store.ChangePrincipal, "", principalID)
	return mustAffect(t.exec(ctx, `DELETE FROM authenticators WHERE principal_id = $1`, principalID))
}

// InsertRefreshToken implements store.SignIns.
func (t *txn) InsertRefreshToken(ctx context.Context, r *store.RefreshToken) error {
	t.note(store.ChangePrincipal, "", r.PrincipalID)
	amr := r.AMR
	if amr == nil {
		amr = []string{}
	}
	_, err := t.exec(ctx, `INSERT INTO refresh_tokens(id, principal_id, hash, amr, auth_time, expires) VALUES($1, $2, $3, $4, $5, $6)`,
		r.ID, r.PrincipalID, r.Hash, toJSON(amr), unix(r.AuthTime), unix(r.Expires))
	return err
}

// GetRefreshToken implements store.SignIns.
func (t *txn) GetRefreshToken(ctx context.Context, id string) (*store.RefreshToken, error) {
	var r store.RefreshToken
	var amr string
	var authTime, expires int64
	err := t.tx.QueryRow(ctx, `SELECT id, principal_id, hash, amr, auth_time, expires FROM refresh_tokens WHERE id = $1`, id).
		Scan(&r.ID, &r.PrincipalID, &r.Hash, &amr, &authTime, &expires)
	if err != nil {
		return nil, notFound(err)
	}
	r.AuthTime, r.Expires = fromUnix(authTime), fromUnix(expires)
	return &r, fromJSON(amr, &r.AMR)
}

// DeleteRefreshToken implements store.SignIns.
func (t *txn) DeleteRefreshToken(ctx context.Context, id string) error {
	t.note(store.ChangePrincipal, "", "")
	return mustAffect(t.exec(ctx, `DELETE FROM refresh_tokens WHERE id = $1`, id))
}

// DeleteRefreshTokens implements store.SignIns.
func (t *txn) DeleteRefreshTokens(ctx context.Context, principalID string, expiredBefore time.Time) (int, error) {
	t.note(store.ChangePrincipal, "", principalID)
	before := int64(-1 << 62)
	if !expiredBefore.IsZero() {
		before = unix(expiredBefore)
	}
	tag, err := t.exec(ctx, `DELETE FROM refresh_tokens WHERE principal_id = $1 OR expires < $2`, principalID, before)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
