package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is a SHA-1 thumbprint by definition; it names, it does not protect.
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// An op is one measured operation: setup makes what it needs (a key, a
// service principal) and returns the request of one iteration; raw, when
// set, is the same work done in this process without the server.
type op struct {
	name  string
	setup func(ctx context.Context, e *target) (func(context.Context) (*http.Request, error), error)
	raw   func() func() error
}

// target is the server under load, signed in as the bootstrap administrator.
type target struct {
	hc  *http.Client
	b   bootstrap
	tok string
}

// ops are the operations the benchmark knows, in the order it runs them.
var ops = []op{
	{name: "es256", setup: signOp("kwload-p256", `{"kty":"EC-HSM","crv":"P-256"}`, "ES256"), raw: rawECDSA},
	{name: "rs256", setup: signOp("kwload-rsa2048", `{"kty":"RSA-HSM","key_size":2048}`, "RS256"), raw: rawRSA},
	{name: "a256gcm", setup: encryptOp, raw: rawGCM},
	{name: "wrap", setup: wrapOp, raw: rawOAEP},
	{name: "get", setup: getOp},
	{name: "list", setup: listOp},
	{name: "token-secret", setup: tokenSecretOp},
	{name: "token-cert", setup: tokenCertOp},
}

func (e *target) hsm(path string) string {
	return strings.TrimSuffix(e.b.HSMURI, "/") + path
}

// json sends an authenticated JSON request and expects 200 or 201.
func (e *target) json(ctx context.Context, method, u string, body, out any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+e.tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var msg bytes.Buffer
		msg.ReadFrom(resp.Body)
		return fmt.Errorf("%s %s: %d %s", method, u, resp.StatusCode, msg.String())
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// post is a request of one iteration: a fixed JSON body to a fixed URL.
func (e *target) post(u string, body []byte) func(context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Authorization", "Bearer "+e.tok)
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	}
}

func (e *target) get(u string) func(context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err == nil {
			req.Header.Set("Authorization", "Bearer "+e.tok)
		}
		return req, err
	}
}

const apiVersion = "?api-version=7.6"

func (e *target) createKey(ctx context.Context, name, params string) error {
	return e.json(ctx, http.MethodPost, e.hsm("/keys/"+name+"/create"+apiVersion), json.RawMessage(params), nil)
}

func signOp(key, params, alg string) func(context.Context, *target) (func(context.Context) (*http.Request, error), error) {
	return func(ctx context.Context, e *target) (func(context.Context) (*http.Request, error), error) {
		if err := e.createKey(ctx, key, params); err != nil {
			return nil, err
		}
		digest := sha256.Sum256([]byte("kwload"))
		body, _ := json.Marshal(map[string]string{"alg": alg, "value": base64.RawURLEncoding.EncodeToString(digest[:])})
		return e.post(e.hsm("/keys/"+key+"/sign"+apiVersion), body), nil
	}
}

// payload is what the encrypt and wrap ops send: 256 bytes for
// encryption, a 32-byte key for wrapping.
var payload = bytes.Repeat([]byte{0x5a}, 256)

func encryptOp(ctx context.Context, e *target) (func(context.Context) (*http.Request, error), error) {
	if err := e.createKey(ctx, "kwload-aes256", `{"kty":"oct-HSM","key_size":256}`); err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]string{"alg": "A256GCM", "value": base64.RawURLEncoding.EncodeToString(payload)})
	return e.post(e.hsm("/keys/kwload-aes256/encrypt"+apiVersion), body), nil
}

func wrapOp(ctx context.Context, e *target) (func(context.Context) (*http.Request, error), error) {
	if err := e.createKey(ctx, "kwload-rsa2048", `{"kty":"RSA-HSM","key_size":2048}`); err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]string{"alg": "RSA-OAEP-256", "value": base64.RawURLEncoding.EncodeToString(payload[:32])})
	return e.post(e.hsm("/keys/kwload-rsa2048/wrapkey"+apiVersion), body), nil
}

func getOp(ctx context.Context, e *target) (func(context.Context) (*http.Request, error), error) {
	if err := e.createKey(ctx, "kwload-p256", `{"kty":"EC-HSM","crv":"P-256"}`); err != nil {
		return nil, err
	}
	return e.get(e.hsm("/keys/kwload-p256" + apiVersion)), nil
}

// listOp reads the first page of 25 keys, with at least 25 keys there.
func listOp(ctx context.Context, e *target) (func(context.Context) (*http.Request, error), error) {
	for i := range 25 {
		if err := e.createKey(ctx, fmt.Sprintf("kwload-list-%02d", i), `{"kty":"EC-HSM","crv":"P-256"}`); err != nil {
			return nil, err
		}
	}
	return e.get(e.hsm("/keys" + apiVersion + "&maxresults=25")), nil
}

func (e *target) tokenURL() string {
	return strings.TrimSuffix(e.b.AuthorityHost, "/") + "/" + e.b.TenantID + "/oauth2/v2.0/token"
}

func formRequest(u string, form func() (url.Values, error)) func(context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		f, err := form()
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(f.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return req, err
	}
}

func tokenSecretOp(_ context.Context, e *target) (func(context.Context) (*http.Request, error), error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {e.b.ClientID}, "client_secret": {e.b.ClientSecret},
		"scope": {"https://managedhsm.azure.net/.default"}}
	return formRequest(e.tokenURL(), func() (url.Values, error) { return form, nil }), nil
}

// tokenCertOp signs in with a certificate credential: a service principal
// made for it, and a fresh client assertion (its own jti) per request, as
// MSAL sends them.
func tokenCertOp(ctx context.Context, e *target) (func(context.Context) (*http.Request, error), error) {
	var sp struct{ ID, AppID string }
	graph := strings.TrimSuffix(e.b.AuthorityHost, "/") + "/v1.0"
	// Graph takes only a Graph token.
	graphTok, err := token(ctx, e.hc, e.b, "https://graph.microsoft.com/.default")
	if err != nil {
		return nil, err
	}
	ge := &target{hc: e.hc, b: e.b, tok: graphTok}
	if err := ge.json(ctx, http.MethodPost, graph+"/servicePrincipals", map[string]string{"displayName": "kwload-cert-" + uuid.NewString()[:8]}, &sp); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kwload"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	creds := []map[string]string{{"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.StdEncoding.EncodeToString(der)}}
	if err := ge.json(ctx, http.MethodPatch, graph+"/servicePrincipals/"+sp.ID, map[string]any{"keyCredentials": creds}, nil); err != nil {
		return nil, err
	}
	thumb := sha1.Sum(der) //nolint:gosec // see import
	u := e.tokenURL()
	return formRequest(u, func() (url.Values, error) {
		now := time.Now()
		t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{Issuer: sp.AppID, Subject: sp.AppID, Audience: jwt.ClaimStrings{u},
			ID: uuid.NewString(), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute))})
		t.Header["x5t"] = base64.RawURLEncoding.EncodeToString(thumb[:])
		assertion, err := t.SignedString(key)
		if err != nil {
			return nil, err
		}
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {sp.AppID}, "scope": {"https://managedhsm.azure.net/.default"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}, nil
	}), nil
}

// The raw operations: the standard library doing the same cryptography.

func rawECDSA() func() error {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	digest := sha256.Sum256([]byte("kwload"))
	return func() error { _, err := ecdsa.SignASN1(rand.Reader, k, digest[:]); return err }
}

func rawRSA() func() error {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	digest := sha256.Sum256([]byte("kwload"))
	return func() error { _, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest[:]); return err }
}

func rawGCM() func() error {
	key := make([]byte, 32)
	rand.Read(key)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, aead.NonceSize())
	return func() error {
		rand.Read(nonce)
		aead.Seal(nil, nonce, payload, nil)
		return nil
	}
}

func rawOAEP() func() error {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	return func() error {
		_, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &k.PublicKey, payload[:32], nil)
		return err
	}
}
