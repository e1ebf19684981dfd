package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestService(t testing.TB) (*TokenService, *Directory, *clock, store.Store) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "id.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	seal, err := domain.OpenFileSeal(filepath.Join(t.TempDir(), "seal"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := NewDirectory(db, "tenant-1", rand.Reader, c.now)
	pepper, err := LoadOrCreatePepper(ctx, db, seal, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir.SetPepper(pepper)
	dir.SetSeal(seal)
	key, err := LoadOrCreateSigningKey(ctx, db, seal, rand.Reader, c.now())
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateSigningKey(ctx, db, seal, rand.Reader, c.now())
	if err != nil || again.ID != key.ID || !again.Key.Equal(key.Key) {
		t.Fatal("the signing key is not reloaded from the store")
	}
	return NewTokenService(key, "https://kw/tenant-1/v2.0", dir, []string{"https://managedhsm.azure.net"}, c.now), dir, c, db
}

func TestTokenLifetimeAndSkew(t *testing.T) {
	ctx := context.Background()
	ts, dir, c, _ := newTestService(t)
	p, err := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "app")
	if err != nil {
		t.Fatal(err)
	}
	tok, life, err := ts.Issue(ctx, p, "https://managedhsm.azure.net", []string{"pwd"})
	if err != nil || life != time.Hour {
		t.Fatal(err, life)
	}
	caller, err := ts.Verify(tok, "https://managedhsm.azure.net")
	if err != nil || caller.ObjectID != p.ID || caller.AppID != p.AppID || caller.TenantID != "tenant-1" {
		t.Fatalf("verify = %+v, %v", caller, err)
	}
	if _, err := ts.Verify(tok, "https://graph.microsoft.com"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("wrong audience: %v", err)
	}
	c.t = c.t.Add(time.Hour + 30*time.Second) // inside the skew
	if _, err := ts.Verify(tok, "https://managedhsm.azure.net"); err != nil {
		t.Fatalf("within clock skew: %v", err)
	}
	c.t = c.t.Add(2 * time.Minute)
	if _, err := ts.Verify(tok, "https://managedhsm.azure.net"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired token accepted (from the verified cache?): %v", err)
	}
	// A token never seen before that is already expired.
	c.t = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	old, _, _ := ts.Issue(ctx, p, "https://managedhsm.azure.net", nil)
	c.t = c.t.Add(3 * time.Hour)
	if _, err := ts.Verify(old, "https://managedhsm.azure.net"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired token accepted: %v", err)
	}
}

func TestVerifyRejectsForeignTokens(t *testing.T) {
	ctx := context.Background()
	ts, dir, _, _ := newTestService(t)
	p, _ := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "app")
	claims := Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: ts.issuer, Audience: jwt.ClaimStrings{"https://managedhsm.azure.net"},
		IssuedAt: jwt.NewNumericDate(ts.now()), ExpiresAt: jwt.NewNumericDate(ts.now().Add(time.Hour))}, ObjectID: p.ID, TenantID: "tenant-1"}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	sign := func(c Claims, k *rsa.PrivateKey, kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	wrongIssuer := claims
	wrongIssuer.Issuer = "https://evil/tenant-1/v2.0"
	wrongTenant := claims
	wrongTenant.TenantID = "tenant-2"
	noExp := claims
	noExp.ExpiresAt = nil
	for name, tok := range map[string]string{
		"other key":    sign(claims, other, ts.key.ID),
		"unknown kid":  sign(claims, ts.key.Key, "nope"),
		"wrong issuer": sign(wrongIssuer, ts.key.Key, ts.key.ID),
		"wrong tenant": sign(wrongTenant, ts.key.Key, ts.key.ID),
		"no expiry":    sign(noExp, ts.key.Key, ts.key.ID),
	} {
		if _, err := ts.Verify(tok, "https://managedhsm.azure.net"); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ts.Verify(sign(claims, ts.key.Key, ts.key.ID), "https://managedhsm.azure.net"); err != nil {
		t.Fatalf("a well-formed token is refused: %v", err)
	}
}

func TestClientSecretsAndPasswords(t *testing.T) {
	ctx := context.Background()
	_, dir, _, db := newTestService(t)
	p, _ := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "app")
	secret, _, err := dir.AddSecret(ctx, p.ID, "s")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dir.AuthenticateClient(ctx, p.AppID, secret); err != nil || got.ID != p.ID {
		t.Fatalf("good secret: %v", err)
	}
	for _, bad := range []string{"", secret[:len(secret)-1], secret + "x"} {
		if _, err := dir.AuthenticateClient(ctx, p.AppID, bad); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("secret %q accepted: %v", bad, err)
		}
	}
	db.View(ctx, func(tx store.Tx) error {
		creds, _ := tx.Credentials(ctx, p.ID)
		if len(creds) != 1 || strings.Contains(creds[0].Hash, secret) || !strings.HasPrefix(creds[0].Hash, "$hmac-sha256$") {
			t.Fatalf("the secret is not stored as a keyed hash: %+v", creds)
		}
		return nil
	})
	u, err := dir.CreateUser(ctx, "Alice", "alice@contoso.test", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dir.AuthenticateUser(ctx, "ALICE@contoso.test", "correct horse"); err != nil || got.ID != u.ID {
		t.Fatalf("user sign-in: %v", err)
	}
	if _, err := dir.AuthenticateUser(ctx, "alice@contoso.test", "wrong horse"); !errors.Is(err, ErrInvalidPassword) {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestNestedGroups(t *testing.T) {
	ctx := context.Background()
	_, dir, _, _ := newTestService(t)
	outer, _ := dir.CreateGroup(ctx, "HSM Admins", "hsm-admins")
	inner, _ := dir.CreateGroup(ctx, "Security Team", "security-team")
	u, _ := dir.CreateUser(ctx, "Bob", "bob@contoso.test", "password1")
	if err := dir.AddMember(ctx, outer.ID, inner.ID); err != nil {
		t.Fatal(err)
	}
	if ok, _ := dir.IsMember(ctx, outer.ID, u.ID); ok {
		t.Fatal("member before being added")
	}
	if err := dir.AddMember(ctx, inner.ID, u.ID); err != nil {
		t.Fatal(err)
	}
	if ok, _ := dir.IsMember(ctx, outer.ID, u.ID); !ok {
		t.Fatal("transitive membership not seen (stale cache?)")
	}
	if err := dir.RemoveMember(ctx, inner.ID, u.ID); err != nil {
		t.Fatal(err)
	}
	if ok, _ := dir.IsMember(ctx, outer.ID, u.ID); ok {
		t.Fatal("membership survives removal")
	}
	if err := dir.AddMember(ctx, inner.ID, inner.ID); err == nil {
		t.Fatal("a group joined itself")
	}
}
