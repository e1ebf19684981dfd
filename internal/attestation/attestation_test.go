package attestation

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

type authority struct {
	srv     *httptest.Server
	key     *rsa.PrivateKey
	fetches atomic.Int32
	// noIssuer leaves issuer out of the metadata, as Azure's SDK mock does.
	noIssuer bool
}

func newAuthority(t *testing.T, noIssuer bool) *authority {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	a := &authority{key: k, noIssuer: noIssuer}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		a.fetches.Add(1)
		doc := map[string]string{"jwks_uri": a.srv.URL + "/certs"}
		if !a.noIssuer {
			doc["issuer"] = a.srv.URL
		}
		json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("/certs", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k", Algorithm: "RS256"}}})
	})
	a.srv = httptest.NewTLSServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func rsaJWK(kid string, pub *rsa.PublicKey, extra map[string]any) map[string]any {
	m := map[string]any{"kid": kid, "kty": "RSA", "e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes())}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func (a *authority) sign(t *testing.T, claims jwt.MapClaims) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = "k"
	s, err := tok.SignedString(a.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	a := newAuthority(t, true)
	v := NewVerifier(a.srv.Client(), time.Now)
	runtime, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := time.Now()
	claims := func(keys ...any) jwt.MapClaims {
		return jwt.MapClaims{"iss": a.srv.URL, "exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "svn": 3,
			"x-ms-runtime": map[string]any{"keys": keys}}
	}
	// The first suitable key: the TEE's signing key is passed over, and a
	// key whose use is enc qualifies.
	tok, err := v.Verify(ctx, a.sign(t, claims(
		rsaJWK("HCLAkPub", other.Public().(*rsa.PublicKey), map[string]any{"key_ops": []string{"sign"}}),
		rsaJWK("TpmEphemeralEncryptionKey", &runtime.PublicKey, map[string]any{"use": "enc"}),
		rsaJWK("later", other.Public().(*rsa.PublicKey), map[string]any{"key_ops": []string{"encrypt"}}),
	)), []string{a.srv.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	if tok.RuntimeKeyID != "TpmEphemeralEncryptionKey" || tok.RuntimeKey.N.Cmp(runtime.N) != 0 || tok.Issuer != a.srv.URL {
		t.Fatalf("token = %+v", tok)
	}
	if n, ok := tok.Claims["svn"].(json.Number); !ok || n != "3" {
		t.Fatalf("numbers are kept exact: %T %v", tok.Claims["svn"], tok.Claims["svn"])
	}

	_, err = v.Verify(ctx, a.sign(t, claims(rsaJWK("sig-only", &runtime.PublicKey, map[string]any{"key_ops": []string{"sign"}}))), []string{a.srv.URL})
	if !errors.Is(err, ErrNoRuntimeKey) {
		t.Fatalf("no encryption key: %v", err)
	}

	refused := map[string]string{
		"too large":  strings.Repeat("a", MaxTokenSize+1),
		"not a JWT":  "not.a.jwt",
		"alg none":   jwtNone(t, claims()),
		"no exp":     a.sign(t, jwt.MapClaims{"iss": a.srv.URL}),
		"expired":    a.sign(t, jwt.MapClaims{"iss": a.srv.URL, "exp": now.Add(-time.Hour).Unix()}),
		"http iss":   a.sign(t, jwt.MapClaims{"iss": "http://" + strings.TrimPrefix(a.srv.URL, "https://"), "exp": now.Add(time.Minute).Unix()}),
		"forged":     (&authority{srv: a.srv, key: other}).sign(t, claims(rsaJWK("x", &runtime.PublicKey, map[string]any{"use": "enc"}))),
		"wrong iss":  a.sign(t, jwt.MapClaims{"iss": "https://elsewhere.example", "exp": now.Add(time.Minute).Unix()}),
		"future iat": a.sign(t, jwt.MapClaims{"iss": a.srv.URL, "exp": now.Add(time.Hour).Unix(), "iat": now.Add(time.Hour).Unix()}),
	}
	for name, token := range refused {
		if _, err := v.Verify(ctx, token, []string{a.srv.URL, "https://elsewhere.example"}); !errors.Is(err, ErrToken) {
			t.Errorf("%s: err = %v, want ErrToken", name, err)
		}
	}
}

// TestVerifyFetchesOnlyThePolicysAuthorities: a token naming an issuer the
// key's policy does not trust makes the server fetch nothing.
func TestVerifyFetchesOnlyThePolicysAuthorities(t *testing.T) {
	a := newAuthority(t, false)
	v := NewVerifier(a.srv.Client(), time.Now)
	tok := a.sign(t, jwt.MapClaims{"iss": a.srv.URL, "exp": time.Now().Add(time.Minute).Unix()})
	if _, err := v.Verify(context.Background(), tok, []string{"https://sharedeus.eus.attest.azure.net"}); !errors.Is(err, ErrToken) {
		t.Fatalf("err = %v", err)
	}
	if n := a.fetches.Load(); n != 0 {
		t.Fatalf("%d fetches of an authority the policy does not name", n)
	}
}

func jwtNone(t *testing.T, claims jwt.MapClaims) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestIssuerSpellingsFetchOnce replays an attack: tokens signed by
// anyone, whose issuer is a policy's authority spelt a new way each time
// (a query, a fragment, a trailing slash), made the server fetch the
// authority's metadata and keep a cache entry per spelling. The spellings
// with a query or fragment are refused before any fetch; the others share
// the authority's one fetch.
func TestIssuerSpellingsFetchOnce(t *testing.T) {
	ctx := context.Background()
	a := newAuthority(t, true)
	v := NewVerifier(a.srv.Client(), time.Now)
	forger, _ := rsa.GenerateKey(rand.Reader, 2048)
	forge := func(iss string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": iss, "exp": time.Now().Add(time.Minute).Unix()})
		tok.Header["kid"] = "k"
		s, err := tok.SignedString(forger)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for i := range 20 {
		for _, iss := range []string{
			fmt.Sprintf("%s/?n=%d", a.srv.URL, i),
			fmt.Sprintf("%s#%d", a.srv.URL, i),
			a.srv.URL + strings.Repeat("/", i%2),
			strings.Replace(a.srv.URL, "https://", "HTTPS://", 1),
		} {
			if _, err := v.Verify(ctx, forge(iss), []string{a.srv.URL}); !errors.Is(err, ErrToken) {
				t.Fatalf("a forged token from %q: %v", iss, err)
			}
		}
	}
	if n := a.fetches.Load(); n != 1 {
		t.Fatalf("the authority's metadata was fetched %d times, want once", n)
	}
}
