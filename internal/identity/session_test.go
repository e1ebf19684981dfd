package identity

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestSessions: a session opens while it lives, and not after sign-out,
// expiry, revokeSignInSessions or with another token; session tokens and
// refresh tokens are not each other.
func TestSessions(t *testing.T) {
	ctx := context.Background()
	_, d, c, _ := newTestService(t)
	user, err := d.CreateUser(ctx, "Alice", "alice@contoso.example", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	start := func() string {
		t.Helper()
		tok, err := d.StartSession(ctx, user, []string{"pwd", "mfa"}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tok := start()
	s, err := d.OpenSession(ctx, tok)
	if err != nil || s.User.ID != user.ID || !strings.Contains(strings.Join(s.AMR, " "), "mfa") {
		t.Fatalf("a live session: %+v %v", s, err)
	}
	// Another token, an altered one, a refresh token's form: none opens it.
	for _, bad := range []string{"", tok + "x", strings.Replace(tok, "kwcs.", "kwrt.", 1), "kwcs." + s.ID + ".AAAA", strings.Repeat("k", 10000)} {
		if _, err := d.OpenSession(ctx, bad); !errors.Is(err, ErrNoSession) {
			t.Errorf("%.20q opened a session: %v", bad, err)
		}
	}
	if _, _, err := d.RedeemRefreshToken(ctx, tok); !errors.Is(err, ErrInvalidRefreshToken) {
		t.Errorf("a session token redeemed as a refresh token: %v", err)
	}
	rt, err := d.IssueRefreshToken(ctx, user, []string{"pwd"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.OpenSession(ctx, rt); !errors.Is(err, ErrNoSession) {
		t.Errorf("a refresh token opened a session: %v", err)
	}
	// CSRF values are bound to the session.
	mac := d.SessionMAC("csrf", s.ID)
	if !d.CheckSessionMAC("csrf", s.ID, mac) || d.CheckSessionMAC("csrf", "other", mac) || d.CheckSessionMAC("other", s.ID, mac) ||
		d.CheckSessionMAC("csrf", s.ID, "") {
		t.Error("session MACs are not bound to their session and purpose")
	}
	// Sign-out.
	if err := d.EndSession(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := d.OpenSession(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Errorf("a session after sign-out: %v", err)
	}
	// Revocation of every sign-in ends sessions too.
	tok = start()
	if err := d.RevokeSignInSessions(ctx, user.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.OpenSession(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Errorf("a session after revokeSignInSessions: %v", err)
	}
	// Expiry.
	tok = start()
	c.t = c.t.Add(SessionLifetime + time.Second)
	if _, err := d.OpenSession(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Errorf("a session past its lifetime: %v", err)
	}
}
