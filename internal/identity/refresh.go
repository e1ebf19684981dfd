package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// Refresh tokens. A user's sign-in (the password grant) gets one; it
// gets access tokens for any resource until it expires, RefreshTokenLifetime
// after the sign-in (never extended), or is revoked: by the user's
// logout, an MFA reset, revokeSignInSessions or the user's deletion. Each
// access token it gets carries the sign-in's amr and auth_time, so a
// refresh never adds a factor the sign-in lacked.
//
// A refresh token is "kwrt." + a key id (96 random bits) + "." + 256 random
// bits, all base64url. Only HMAC-SHA-256 of it under the pepper is kept,
// found by its key id and compared in constant time, as client secrets are.
const RefreshTokenLifetime = 24 * time.Hour

const refreshPrefix = "kwrt."

// ErrInvalidRefreshToken is a refresh token that is unknown, expired or
// revoked.
var ErrInvalidRefreshToken = fault.New(fault.Unauthenticated, "invalid_grant",
	"AADSTS700082: The refresh token has expired or was revoked. Sign in again.")

// IssueRefreshToken stores and returns a refresh token for user p's
// sign-in at authTime (zero: now) with methods amr. Expired refresh tokens of any
// user are dropped on the way.
func (d *Directory) IssueRefreshToken(ctx context.Context, p *Principal, amr []string, authTime time.Time) (string, error) {
	if d.pepper == nil {
		return "", errors.New("identity: the directory has no secret pepper")
	}
	b := make([]byte, 12+32)
	if _, err := io.ReadFull(d.rand, b); err != nil {
		return "", fmt.Errorf("identity: reading randomness: %w", err)
	}
	id := b64url.EncodeToString(b[:12])
	tok := refreshPrefix + id + "." + b64url.EncodeToString(b[12:])
	now := d.now()
	if authTime.IsZero() {
		authTime = now.Truncate(time.Second)
	}
	rt := &store.RefreshToken{ID: id, PrincipalID: p.ID, Hash: d.mac(tok), AMR: amr, AuthTime: authTime, Expires: authTime.Add(RefreshTokenLifetime)}
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

func refreshID(tok string) (string, bool) {
	rest, ok := strings.CutPrefix(tok, refreshPrefix)
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, ".")
	return id, ok && id != ""
}

// lookupRefresh finds the stored refresh token tok, checking its hash in
// constant time; nil if there is none that matches.
func (d *Directory) lookupRefresh(tx store.Tx, ctx context.Context, tok string) (*store.RefreshToken, error) {
	return d.lookupStoredToken(ctx, tx, refreshPrefix, tok)
}

// lookupStoredToken finds a stored token of the form prefix + id + "." +
// secret by its id and checks its hash in constant time: the MAC is
// computed whether or not the id exists, so time tells nothing.
func (d *Directory) lookupStoredToken(ctx context.Context, tx store.Tx, prefix, tok string) (*store.RefreshToken, error) {
	rest, ok := strings.CutPrefix(tok, prefix)
	id, _, _ := strings.Cut(rest, ".")
	encoded := macPrefix
	var rt *store.RefreshToken
	if ok && id != "" && len(tok) < 200 {
		var err error
		rt, err = tx.GetRefreshToken(ctx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if rt != nil {
			encoded = rt.Hash
		}
	}
	if !d.checkMAC(encoded, tok) || rt == nil {
		return nil, nil
	}
	return rt, nil
}

// RedeemRefreshToken returns the user and the sign-in that refresh token
// tok stands for, or ErrInvalidRefreshToken.
func (d *Directory) RedeemRefreshToken(ctx context.Context, tok string) (*Principal, *store.RefreshToken, error) {
	if d.pepper == nil {
		return nil, nil, errors.New("identity: the directory has no secret pepper")
	}
	var p *Principal
	var rt *store.RefreshToken
	err := d.store.View(ctx, func(tx store.Tx) (err error) {
		if rt, err = d.lookupRefresh(tx, ctx, tok); err != nil || rt == nil {
			return err
		}
		p, err = tx.GetPrincipal(ctx, rt.PrincipalID)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, nil, err
	}
	if rt == nil || p == nil || !d.now().Before(rt.Expires) {
		return nil, nil, ErrInvalidRefreshToken
	}
	return p, rt, nil
}

// RevokeRefreshToken revokes refresh token tok. An unknown token is not an
// error (RFC 7009 §2.2).
func (d *Directory) RevokeRefreshToken(ctx context.Context, tok string) error {
	if d.pepper == nil {
		return errors.New("identity: the directory has no secret pepper")
	}
	return d.store.Update(ctx, func(tx store.Tx) error {
		rt, err := d.lookupRefresh(tx, ctx, tok)
		if err != nil || rt == nil {
			return err
		}
		return tx.DeleteRefreshToken(ctx, rt.ID)
	})
}

// RevokeSignInSessions revokes every refresh token of principalID.
func (d *Directory) RevokeSignInSessions(ctx context.Context, principalID string) error {
	return mapErr(d.store.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.GetPrincipal(ctx, principalID); err != nil {
			return err
		}
		_, err := tx.DeleteRefreshTokens(ctx, principalID, time.Time{})
		return err
	}))
}
