package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/store"
)

// FuzzVerify feeds access tokens, well-formed and not, to the verifier:
// it must never panic, and whatever it accepts must be a token of this
// tenant for the principal it was issued to.
func FuzzVerify(f *testing.F) {
	ctx := context.Background()
	ts, dir, _, _ := newTestService(f)
	p, _ := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "app")
	tok, _, err := ts.Issue(ctx, p, "https://managedhsm.azure.net", []string{"pwd"})
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	f.Add(tok)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(`eyJhbGciOiJub25lIn0.` + parts[1] + ".")
	f.Add(`eyJhbGciOiJIUzI1NiIsImtpZCI6IngifQ.` + parts[1] + "." + parts[2])
	f.Add("")
	f.Add("...")
	f.Add("a.b.c.d")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := ts.Verify(token, "https://managedhsm.azure.net")
		if err == nil && (c.ObjectID != p.ID || c.TenantID != "tenant-1") {
			t.Fatalf("accepted a token for %+v", c)
		}
	})
}

// FuzzClientAssertion feeds client assertions to Federation.Authenticate,
// for an application that has both a certificate credential
// (private_key_jwt) and a federated credential: it must never panic nor
// sign in as anyone else, and a malformed assertion costs no fetch.
func FuzzClientAssertion(f *testing.F) {
	ctx := context.Background()
	_, dir, c, _ := newTestService(f)
	iss := newFakeIssuer(f, "https://issuer.example")
	fed := NewFederation(dir, &http.Client{Transport: iss}, c.now)
	p, _ := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "app")
	if _, err := dir.PutFederatedCredential(ctx, FederatedCredential{PrincipalID: p.ID, Name: "ci", Issuer: iss.url, Subject: "ci"}); err != nil {
		f.Fatal(err)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "app"},
		NotBefore: c.now().Add(-time.Hour), NotAfter: c.now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		f.Fatal(err)
	}
	cc, err := ParseCertificateCredential(der, "")
	if err != nil {
		f.Fatal(err)
	}
	if err := dir.SetCertificates(ctx, p.ID, nil, []CertificateCredential{cc}); err != nil {
		f.Fatal(err)
	}
	endpoint := "https://kw/tenant-1/oauth2/v2.0/token"
	sum := sha256.Sum256(der)
	certAssertion := func(alg jwt.SigningMethod) string {
		tok := jwt.NewWithClaims(alg, jwt.RegisteredClaims{Issuer: p.AppID, Subject: p.AppID, Audience: jwt.ClaimStrings{endpoint},
			ID: uuid.NewString(), ExpiresAt: jwt.NewNumericDate(c.now().Add(10 * time.Minute))})
		tok.Header["x5t#S256"] = base64.RawURLEncoding.EncodeToString(sum[:])
		s, err := tok.SignedString(key)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	f.Add(certAssertion(jwt.SigningMethodPS256))
	f.Add(certAssertion(jwt.SigningMethodRS256))
	f.Add(iss.assertion(f, "ci", DefaultFederationAudience, c.now()))
	f.Add(iss.assertion(f, "other", DefaultFederationAudience, c.now()))
	f.Add("eyJhbGciOiJub25lIiwieDV0IjoiQUFBQSJ9.e30.")
	f.Add("not a jwt")
	f.Fuzz(func(t *testing.T, assertion string) {
		if len(assertion) > 16<<10 {
			return // the token endpoint reads at most 64 KiB of form
		}
		got, err := fed.Authenticate(ctx, p.AppID, assertion, []string{endpoint})
		if err == nil && got.ID != p.ID {
			t.Fatalf("signed in as %s", got.ID)
		}
		if n := iss.fetches.Load(); n > 2 {
			t.Fatalf("%d fetches of the issuer", n)
		}
	})
}
