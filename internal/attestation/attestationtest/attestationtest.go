// Package attestationtest runs an attestation authority for tests: it
// publishes OpenID metadata and its signing key over TLS, as Microsoft
// Azure Attestation does, and signs the tokens a test asks for.
package attestationtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// Authority is a test attestation authority, served at URL.
type Authority struct {
	URL string
	srv *httptest.Server
	key *rsa.PrivateKey
}

// New starts an authority, stopped when t ends.
func New(t testing.TB) *Authority {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	a := &Authority{key: k}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": a.URL, "jwks_uri": a.URL + "/certs"})
	})
	mux.HandleFunc("/certs", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "maa-1", Algorithm: "RS256", Use: "sig"}}})
	})
	a.srv = httptest.NewTLSServer(mux)
	a.URL = a.srv.URL
	t.Cleanup(a.srv.Close)
	return a
}

// Client trusts the authority's certificate (httptest's servers share
// one, so it trusts every authority New starts).
func (a *Authority) Client() *http.Client { return a.srv.Client() }

// Forged is an impostor: a's address, with other's signing key.
func (a *Authority) Forged(other *Authority) *Authority {
	return &Authority{URL: a.URL, srv: a.srv, key: other.key}
}

// Token signs claims as the authority would for a workload in the TEE
// tee (x-ms-isolation-tee) whose encryption key is runtime
// (x-ms-runtime.keys), valid for life (expired if life is negative).
func (a *Authority) Token(t testing.TB, tee map[string]any, runtime *rsa.PublicKey, life time.Duration) string {
	t.Helper()
	now := time.Now()
	jwk := func(kid, op string) map[string]any {
		return map[string]any{"kid": kid, "kty": "RSA", "key_ops": []string{op},
			"e": b64url(big.NewInt(int64(runtime.E)).Bytes()), "n": b64url(runtime.N.Bytes())}
	}
	claims := jwt.MapClaims{"iss": a.URL, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(life).Unix(),
		"x-ms-isolation-tee": tee,
		"x-ms-runtime":       map[string]any{"keys": []any{jwk("HCLAkPub", "sign"), jwk("TpmEphemeralEncryptionKey", "encrypt")}}}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = "maa-1"
	s, err := tok.SignedString(a.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// SEVSNP is the TEE claim set of a compliant AMD SEV-SNP confidential VM.
func SEVSNP() map[string]any {
	return map[string]any{"x-ms-attestation-type": "sevsnpvm", "x-ms-compliance-status": "azure-compliant-cvm"}
}

// CVMPolicy is a release policy that accepts what SEVSNP claims, from
// authority only.
func CVMPolicy(authority string) []byte {
	return []byte(`{"version":"1.0.0","anyOf":[{"authority":"` + authority + `","allOf":[
		{"claim":"x-ms-isolation-tee.x-ms-attestation-type","equals":"sevsnpvm"},
		{"claim":"x-ms-isolation-tee.x-ms-compliance-status","equals":"azure-compliant-cvm"}]}]}`)
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
