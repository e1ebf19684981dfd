package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/internal/oidc"
	"github.com/keyward/keyward/internal/store"
)

// fakeIssuer is an OIDC issuer served from memory, counting fetches.
type fakeIssuer struct {
	url     string
	key     *rsa.PrivateKey
	fetches atomic.Int64
	down    atomic.Bool
}

func newFakeIssuer(t testing.TB, url string) *fakeIssuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeIssuer{url: url, key: k}
}

func (f *fakeIssuer) RoundTrip(r *http.Request) (*http.Response, error) {
	f.fetches.Add(1)
	var body any
	switch {
	case f.down.Load():
		return &http.Response{StatusCode: http.StatusBadGateway, Status: "502 Bad Gateway", Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
		body = map[string]string{"issuer": f.url, "jwks_uri": f.url + "/keys"}
	case strings.HasSuffix(r.URL.Path, "/keys"):
		body = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}}
	default:
		return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	}
	data, _ := json.Marshal(body)
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Body: io.NopCloser(strings.NewReader(string(data))), Request: r,
		Header: http.Header{"Content-Type": {"application/json"}}}, nil
}

func (f *fakeIssuer) assertion(t testing.TB, sub, aud string, now time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{Issuer: f.url, Subject: sub, Audience: jwt.ClaimStrings{aud},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Minute))})
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(f.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFederationTriesEveryCredentialOfTheIssuer: two federated credentials
// trust one issuer for two subjects (say, two branches of a repository);
// an assertion for the second subject signs in. The old code tried only
// the first credential of the issuer.
func TestFederationTriesEveryCredentialOfTheIssuer(t *testing.T) {
	ctx := context.Background()
	_, dir, c, _ := newTestService(t)
	iss := newFakeIssuer(t, "https://token.actions.example")
	fed := NewFederation(dir, &http.Client{Transport: iss}, c.now)
	p, _ := dir.CreateServicePrincipal(ctx, store.KindManagedIdentity, "deployer")
	for _, sub := range []string{"repo:org/app:ref:refs/heads/main", "repo:org/app:environment:prod"} {
		if _, err := dir.PutFederatedCredential(ctx, FederatedCredential{PrincipalID: p.ID, Name: strings.ReplaceAll(sub[len(sub)-4:], ":", ""),
			Issuer: iss.url, Subject: sub}); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"repo:org/app:ref:refs/heads/main", "repo:org/app:environment:prod"} {
		got, err := fed.Authenticate(ctx, p.AppID, iss.assertion(t, sub, DefaultFederationAudience, c.now()), nil)
		if err != nil || got.ID != p.ID {
			t.Fatalf("subject %s: %v", sub, err)
		}
	}
	if _, err := fed.Authenticate(ctx, p.AppID, iss.assertion(t, "repo:org/evil", DefaultFederationAudience, c.now()), nil); !errors.Is(err, ErrAssertion) {
		t.Fatalf("an unknown subject: %v", err)
	}
	if _, err := fed.Authenticate(ctx, p.AppID, iss.assertion(t, "repo:org/app:environment:prod", "api://other", c.now()), nil); !errors.Is(err, ErrAssertion) {
		t.Fatalf("another audience: %v", err)
	}
	if n := iss.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want the discovery document and the keys once", n)
	}
}

// TestFederationFetchFailuresAreCached: an issuer that fails is fetched
// again only after a while, however many assertions name it.
func TestFederationFetchFailuresAreCached(t *testing.T) {
	ctx := context.Background()
	_, dir, c, _ := newTestService(t)
	iss := newFakeIssuer(t, "https://down.example")
	iss.down.Store(true)
	fed := NewFederation(dir, &http.Client{Transport: iss}, c.now)
	p, _ := dir.CreateServicePrincipal(ctx, store.KindManagedIdentity, "mi")
	if _, err := dir.PutFederatedCredential(ctx, FederatedCredential{PrincipalID: p.ID, Name: "x", Issuer: iss.url, Subject: "s"}); err != nil {
		t.Fatal(err)
	}
	a := iss.assertion(t, "s", DefaultFederationAudience, c.now())
	for range 50 {
		if _, err := fed.Authenticate(ctx, p.AppID, a, nil); !errors.Is(err, ErrAssertion) {
			t.Fatalf("an unreachable issuer: %v", err)
		}
	}
	if n := iss.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches of a failing issuer for 50 assertions, want 1", n)
	}
	iss.down.Store(false)
	c.t = c.t.Add(oidc.FailureTTL + time.Second)
	if _, err := fed.Authenticate(ctx, p.AppID, iss.assertion(t, "s", DefaultFederationAudience, c.now()), nil); err != nil {
		t.Fatalf("after the issuer recovered: %v", err)
	}
}

// TestFederationFetchesOnlyHTTPS: an issuer stored as http (an old data
// dir, or a crafted store) is never fetched, nor a jwks_uri or a redirect
// that leaves https.
func TestFederationFetchesOnlyHTTPS(t *testing.T) {
	ctx := context.Background()
	_, dir, c, _ := newTestService(t)
	iss := newFakeIssuer(t, "http://plain.example")
	fed := NewFederation(dir, &http.Client{Transport: iss}, c.now)
	if _, err := fed.keys.For(ctx, iss.url); err == nil || iss.fetches.Load() != 0 {
		t.Fatalf("an http issuer: %v, %d fetches", err, iss.fetches.Load())
	}
	if _, err := dir.PutFederatedCredential(ctx, FederatedCredential{PrincipalID: "x", Name: "x", Issuer: iss.url, Subject: "s"}); err == nil {
		t.Fatal("an http issuer was stored")
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
