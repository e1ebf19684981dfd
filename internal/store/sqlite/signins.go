package sqlite

import (
	"context"
	"time"

	"github.com/keyward/keyward/internal/store"
)

func (t *txn) PutAuthenticator(ctx context.Context, a *store.Authenticator) error {
	t.note(store.ChangePrincipal, "", a.PrincipalID)
	_, err := t.exec(ctx, `INSERT INTO authenticators(principal_id, id, sealed, confirmed, last_step, created) VALUES(?, ?, ?, ?, ?, ?)
		ON CONFLICT (principal_id) DO UPDATE SET id = excluded.id, sealed = excluded.sealed, confirmed = excluded.confirmed,
			last_step = excluded.last_step, created = excluded.created`,
		a.PrincipalID, a.ID, a.Sealed, a.Confirmed, a.LastStep, unix(a.Created))
	return err
}

func (t *txn) GetAuthenticator(ctx context.Context, principalID string) (*store.Authenticator, error) {
	var a store.Authenticator
	var created int64
	err := t.queryRow(ctx, `SELECT principal_id, id, sealed, confirmed, last_step, created FROM authenticators WHERE principal_id = ?`,
		principalID).Scan(&a.PrincipalID, &a.ID, &a.Sealed, &a.Confirmed, &a.LastStep, &created)
	if err != nil {
		return nil, notFound(err)
	}
	a.Created = fromUnix(created)
	return &a, nil
}

func (t *txn) DeleteAuthenticator(ctx context.Context, principalID string) error {
	t.note(store.ChangePrincipal, "", principalID)
	return mustAffect(t.exec(ctx, `DELETE FROM authenticators WHERE principal_id = ?`, principalID))
}

func (t *txn) InsertRefreshToken(ctx context.Context, r *store.RefreshToken) error {
	t.note(store.ChangePrincipal, "", r.PrincipalID)
	amr := r.AMR
	if amr == nil {
		amr = []string{}
	}
	_, err := t.exec(ctx, `INSERT INTO refresh_tokens(id, principal_id, hash, amr, auth_time, expires) VALUES(?, ?, ?, ?, ?, ?)`,
		r.ID, r.PrincipalID, r.Hash, toJSON(amr), unix(r.AuthTime), unix(r.Expires))
	return err
}

func (t *txn) GetRefreshToken(ctx context.Context, id string) (*store.RefreshToken, error) {
	var r store.RefreshToken
	var amr string
	var authTime, expires int64
	err := t.queryRow(ctx, `SELECT id, principal_id, hash, amr, auth_time, expires FROM refresh_tokens WHERE id = ?`, id).
		Scan(&r.ID, &r.PrincipalID, &r.Hash, &amr, &authTime, &expires)
	if err != nil {
		return nil, notFound(err)
	}
	r.AuthTime, r.Expires = fromUnix(authTime), fromUnix(expires)
	return &r, fromJSON(amr, &r.AMR)
}

func (t *txn) DeleteRefreshToken(ctx context.Context, id string) error {
	t.note(store.ChangePrincipal, "", "")
	return mustAffect(t.exec(ctx, `DELETE FROM refresh_tokens WHERE id = ?`, id))
}

func (t *txn) DeleteRefreshTokens(ctx context.Context, principalID string, expiredBefore time.Time) (int, error) {
	t.note(store.ChangePrincipal, "", principalID)
	before := int64(-1 << 62)
	if !expiredBefore.IsZero() {
		before = unix(expiredBefore)
	}
	res, err := t.exec(ctx, `DELETE FROM refresh_tokens WHERE principal_id = ? OR expires < ?`, principalID, before)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
