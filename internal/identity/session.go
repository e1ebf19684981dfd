package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// Web sessions: what the console's session cookie stands for. A session
// is kept as a refresh token is (the same table, the same HMAC under the
// pepper, found by a key id and compared in constant time), so whatever
// ends a user's refresh tokens ends the user's sessions too: sign-out,
// revokeSignInSessions, an MFA reset, the user's deletion. Its token has
// its own prefix: a session token is no refresh token at /token, and a
// refresh token opens no session.
const SessionLifetime = time.Hour

const sessionPrefix = "kwcs."

// ErrNoSession is a session token that is unknown, expired or ended.
var ErrNoSession = fault.New(fault.Unauthenticated, "SessionExpired", "The session expired or was ended: sign in again.")

// Session is a signed-in user's web session.
type Session struct {
	ID       string // the key id: names the session in logs, never its secret
	User     *Principal
	AMR      []string
	AuthTime time.Time
	Expires  time.Time
}

// StartSession stores and returns a session token for user p's sign-in at
// authTime with methods amr. It lasts SessionLifetime from now, and never
// beyond the sign-in's refresh-token lifetime.
func (d *Directory) StartSession(ctx context.Context, p *Principal, amr []string, authTime time.Time) (string, error) {
	if d.pepper == nil {
		return "", errors.New("identity: the directory has no secret pepper")
	}
	b := make([]byte, 12+32)
	if _, err := io.ReadFull(d.rand, b); err != nil {
		return "", fmt.Errorf("identity: reading randomness: %w", err)
	}
	id := b64url.EncodeToString(b[:12])
	tok := sessionPrefix + id + "." + b64url.EncodeToString(b[12:])
	now := d.now()
	if authTime.IsZero() {
		authTime = now.Truncate(time.Second)
	}
	expires := now.Add(SessionLifetime)
	if end := authTime.Add(RefreshTokenLifetime); end.Before(expires) {
		expires = end
	}
	rt := &store.RefreshToken{ID: id, PrincipalID: p.ID, Hash: d.mac(tok), AMR: amr, AuthTime: authTime, Expires: expires}
	err := d.store.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.DeleteRefreshTokens(ctx, "", now); err != nil {
			return err
		}
		return tx.InsertRefreshToken(ctx, rt)
	})
	if err != nil {
		return "", mapErr(err)
	}
	return tok, nil
}

// OpenSession returns the live session token tok stands for, with its
// user as the directory has it now.
func (d *Directory) OpenSession(ctx context.Context, tok string) (*Session, error) {
	if d.pepper == nil {
		return nil, errors.New("identity: the directory has no secret pepper")
	}
	var p *Principal
	var rt *store.RefreshToken
	err := d.store.View(ctx, func(tx store.Tx) (err error) {
		if rt, err = d.lookupSession(ctx, tx, tok); err != nil || rt == nil {
			return err
		}
		p, err = tx.GetPrincipal(ctx, rt.PrincipalID)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if rt == nil || p == nil || !d.now().Before(rt.Expires) {
		return nil, ErrNoSession
	}
	return &Session{ID: rt.ID, User: p, AMR: rt.AMR, AuthTime: rt.AuthTime, Expires: rt.Expires}, nil
}

// EndSession ends the session tok stands for; an unknown one is no error.
func (d *Directory) EndSession(ctx context.Context, tok string) error {
	if d.pepper == nil {
		return errors.New("identity: the directory has no secret pepper")
	}
	return d.store.Update(ctx, func(tx store.Tx) error {
		rt, err := d.lookupSession(ctx, tx, tok)
		if err != nil || rt == nil {
			return err
		}
		return tx.DeleteRefreshToken(ctx, rt.ID)
	})
}

// SessionMAC returns a value bound to session id under the pepper, for
// purpose: the console's CSRF token is one.
func (d *Directory) SessionMAC(purpose, id string) string {
	m := hmac.New(sha256.New, d.pepper)
	m.Write([]byte("keyward session\x00" + purpose + "\x00" + id))
	return b64url.EncodeToString(m.Sum(nil))
}

// CheckSessionMAC tells, in constant time, whether v is SessionMAC(purpose, id).
func (d *Directory) CheckSessionMAC(purpose, id, v string) bool {
	return d.pepper != nil && v != "" && hmac.Equal([]byte(v), []byte(d.SessionMAC(purpose, id)))
}

// lookupSession finds the stored session tok, checking its hash in
// constant time; nil if there is none that matches. Sessions are kept as
// refresh tokens are, under their own prefix.
func (d *Directory) lookupSession(ctx context.Context, tx store.Tx, tok string) (*store.RefreshToken, error) {
	return d.lookupStoredToken(ctx, tx, sessionPrefix, tok)
}
