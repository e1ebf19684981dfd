package identity

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/keyward/keyward/internal/store"
)

// TestTOTPReplay: an authenticator counts only once confirmed; each code
// is accepted once (RFC 6238 §5.2), a wrong one never; the secret is kept
// only sealed; a reset removes it.
func TestTOTPReplay(t *testing.T) {
	ctx := context.Background()
	_, dir, c, db := newTestService(t)
	u, err := dir.CreateUser(ctx, "Alice", "alice@contoso.test", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	e, err := dir.EnrollTOTP(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.URI, "otpauth://totp/Keyward:alice@contoso.test?") || !strings.Contains(e.URI, "secret="+e.Secret) {
		t.Fatalf("otpauth URI %q", e.URI)
	}
	var stored *store.Authenticator
	db.View(ctx, func(tx store.Tx) (err error) { stored, err = tx.GetAuthenticator(ctx, u.ID); return err })
	if stored == nil || bytes.Contains(stored.Sealed, []byte(e.Secret)) {
		t.Fatalf("the TOTP secret is stored in the clear: %+v", stored)
	}
	code := func() string {
		s, err := totp.GenerateCodeCustom(e.Secret, c.now(), totpOpts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if err := dir.VerifyTOTP(ctx, u.ID, code()); !errors.Is(err, ErrInvalidOTP) {
		t.Fatalf("an unconfirmed authenticator was a second factor: %v", err)
	}
	if err := dir.ConfirmTOTP(ctx, u.ID, "000000"); !errors.Is(err, ErrInvalidOTP) && code() != "000000" {
		t.Fatalf("a wrong code confirmed: %v", err)
	}
	if err := dir.ConfirmTOTP(ctx, u.ID, code()); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.EnrollTOTP(ctx, u.ID); !errors.Is(err, ErrAuthenticatorInForce) {
		t.Fatalf("a confirmed authenticator was replaced: %v", err)
	}
	// The confirming code is used: it cannot sign in.
	if err := dir.VerifyTOTP(ctx, u.ID, code()); !errors.Is(err, ErrInvalidOTP) {
		t.Fatalf("the confirming code was replayed: %v", err)
	}
	c.t = c.t.Add(30 * time.Second)
	first := code()
	if err := dir.VerifyTOTP(ctx, u.ID, first); err != nil {
		t.Fatal(err)
	}
	if err := dir.VerifyTOTP(ctx, u.ID, first); !errors.Is(err, ErrInvalidOTP) {
		t.Fatalf("a code was accepted twice: %v", err)
	}
	// A code of an earlier step than one accepted is a replay too, even
	// within the skew.
	c.t = c.t.Add(30 * time.Second)
	next := code()
	c.t = c.t.Add(-30 * time.Second)
	if err := dir.VerifyTOTP(ctx, u.ID, next); err != nil {
		t.Fatalf("a code one step ahead (clock drift): %v", err)
	}
	if err := dir.VerifyTOTP(ctx, u.ID, first); !errors.Is(err, ErrInvalidOTP) {
		t.Fatalf("an older code was accepted after a newer one: %v", err)
	}
	c.t = c.t.Add(10 * time.Minute)
	if err := dir.VerifyTOTP(ctx, u.ID, "12345"); !errors.Is(err, ErrInvalidOTP) {
		t.Fatalf("a five-digit code: %v", err)
	}
	if err := dir.ResetTOTP(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if err := dir.VerifyTOTP(ctx, u.ID, code()); !errors.Is(err, ErrInvalidOTP) {
		t.Fatalf("a reset authenticator still counts: %v", err)
	}
}

// TestRefreshTokenRevocation: a refresh token stands for its sign-in (amr,
// auth_time) until it expires or is revoked by logout, an MFA reset,
// revokeSignInSessions or the user's deletion; only its HMAC is stored.
func TestRefreshTokenRevocation(t *testing.T) {
	ctx := context.Background()
	_, dir, c, db := newTestService(t)
	u, err := dir.CreateUser(ctx, "Bob", "bob@contoso.test", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	signIn := c.now()
	issue := func(amr ...string) string {
		tok, err := dir.IssueRefreshToken(ctx, u, amr, signIn)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := func(tok string) bool {
		_, _, err := dir.RedeemRefreshToken(ctx, tok)
		if err != nil && !errors.Is(err, ErrInvalidRefreshToken) {
			t.Fatal(err)
		}
		return err == nil
	}
	tok := issue("pwd", "otp", "mfa")
	p, rt, err := dir.RedeemRefreshToken(ctx, tok)
	if err != nil || p.ID != u.ID || strings.Join(rt.AMR, " ") != "pwd otp mfa" || !rt.AuthTime.Equal(signIn.Truncate(time.Second)) {
		t.Fatalf("redeem: %+v %+v %v", p, rt, err)
	}
	id, _ := refreshID(tok)
	db.View(ctx, func(tx store.Tx) (err error) { rt, err = tx.GetRefreshToken(ctx, id); return err })
	if strings.Contains(rt.Hash, tok) || strings.Contains(rt.Hash, tok[len(tok)-20:]) {
		t.Fatal("the refresh token is stored in the clear")
	}
	// Flip the last character to one it is not (a fixed "A" would be the
	// token itself once in 64 runs).
	flip := func(c byte) string {
		if tok[len(tok)-1] == c {
			c++
		}
		return tok[:len(tok)-1] + string(c)
	}
	if valid(flip('A')) || valid(flip('x')) || valid("kwrt.x.y") || valid("") {
		t.Fatal("a forged refresh token was accepted")
	}
	// Logout revokes the one token.
	other := issue("pwd")
	if err := dir.RevokeRefreshToken(ctx, tok); err != nil || valid(tok) || !valid(other) {
		t.Fatalf("revoke: %v", err)
	}
	if err := dir.RevokeRefreshToken(ctx, tok); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	// revokeSignInSessions revokes all.
	if err := dir.RevokeSignInSessions(ctx, u.ID); err != nil || valid(other) {
		t.Fatalf("revokeSignInSessions: %v", err)
	}
	// An MFA reset revokes all.
	tok = issue("pwd")
	if _, err := dir.EnrollTOTP(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if err := dir.ResetTOTP(ctx, u.ID); err != nil || valid(tok) {
		t.Fatalf("MFA reset: %v", err)
	}
	// Expiry: 24 hours after the sign-in, however often used.
	tok = issue("pwd")
	c.t = c.t.Add(RefreshTokenLifetime - time.Second)
	if !valid(tok) {
		t.Fatal("a refresh token ended early")
	}
	c.t = c.t.Add(time.Second)
	if valid(tok) {
		t.Fatal("an expired refresh token was accepted")
	}
	// The user's deletion revokes all.
	signIn = c.now()
	tok = issue("pwd")
	if err := dir.Delete(ctx, u.ID); err != nil || valid(tok) {
		t.Fatalf("deletion: %v", err)
	}
}
