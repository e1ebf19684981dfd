package identityapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// brokenIssuers fails every fetch the way a network does: the error text
// names internal hosts, resolvers and certificate authorities.
type brokenIssuers map[string]error

func (b brokenIssuers) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, b[r.URL.Host]
}

// TestFederationCauseStaysInTheLog: when a client assertion is refused
// because its issuer cannot be reached, the token endpoint answers 401
// invalid_client with Keyward's own words; the DNS or TLS error is written
// to the server log only.
func TestFederationCauseStaysInTheLog(t *testing.T) {
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
	dir := identity.NewDirectory(db, "tenant-1", rand.Reader, time.Now)
	key, err := identity.LoadOrCreateSigningKey(ctx, db, seal, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tokens := identity.NewTokenService(key, "https://kw/tenant-1/v2.0", dir, []string{"https://managedhsm.azure.net"}, time.Now)
	dnsErr := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "idp.corp.internal", Server: "10.20.30.40:53"}}
	tlsErr := &url.Error{Op: "Get", URL: "https://ci.corp.internal/.well-known/openid-configuration",
		Err: errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority (possibly because of \"Corp Root CA 7\")")}
	issuers := brokenIssuers{"idp.corp.internal": dnsErr, "ci.corp.internal": tlsErr}
	var logs bytes.Buffer
	a := New(dir, identity.NewFederation(dir, &http.Client{Transport: issuers}, time.Now), tokens, nil, "https://kw/",
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	signer, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for issuer, secretWords := range map[string][]string{
		"https://idp.corp.internal": {"no such host", "10.20.30.40", "lookup"},
		"https://ci.corp.internal":  {"x509", "tls:", "Corp Root CA", "unknown authority"},
	} {
		p, err := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "deployer")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dir.PutFederatedCredential(ctx, identity.FederatedCredential{PrincipalID: p.ID, Name: "ci", Issuer: issuer, Subject: "repo:org/app"}); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{Issuer: issuer, Subject: "repo:org/app",
			Audience: jwt.ClaimStrings{identity.DefaultFederationAudience}, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute))})
		tok.Header["kid"] = "k1"
		assertion, err := tok.SignedString(signer)
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {p.AppID}, "scope": {"https://managedhsm.azure.net/.default"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
		r := httptest.NewRequest(http.MethodPost, "/tenant-1/oauth2/v2.0/token", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetPathValue("tenant", "tenant-1")
		logs.Reset()
		w := httptest.NewRecorder()
		a.token(w, r)
		body := w.Body.String()
		if w.Code != http.StatusUnauthorized || !strings.Contains(body, `"invalid_client"`) {
			t.Fatalf("%s: %d %s, want 401 invalid_client", issuer, w.Code, body)
		}
		for _, s := range secretWords {
			if strings.Contains(body, s) {
				t.Errorf("%s: the response shows the internal cause (%q): %s", issuer, s, body)
			}
			if !strings.Contains(logs.String(), s) {
				t.Errorf("%s: the log lacks the cause (%q): %s", issuer, s, logs.String())
			}
		}
	}
}
