package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/servertest"
)

func certificateDER(t *testing.T, key any, pub any) string {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "app"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// TestGraphCredentialsBadInput: keyCredentials and federated identity
// credentials refuse what is malformed or not allowed, with Graph's
// error envelope, and change nothing.
func TestGraphCredentialsBadInput(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	sp := env.ServicePrincipal("billing")
	mi := env.Graph("POST", "/servicePrincipals", map[string]string{"displayName": "vm", "servicePrincipalType": "ManagedIdentity"})
	if mi.Status != 201 {
		t.Fatalf("creating a managed identity: %d %s", mi.Status, mi.Body)
	}
	miID := jsonField(mi.Body, "id")
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := certificateDER(t, rsaKey, &rsaKey.PublicKey)
	if r := env.Graph("PATCH", "/servicePrincipals/"+sp.ObjectID, map[string]any{"keyCredentials": []map[string]string{
		{"type": "AsymmetricX509Cert", "usage": "Verify", "key": good}}}); r.Status != 204 {
		t.Fatalf("a good certificate: %d %s", r.Status, r.Body)
	}
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cred := func(typ, usage, key string) map[string]any {
		return map[string]any{"keyCredentials": []map[string]string{{"type": typ, "usage": usage, "key": key}}}
	}
	for name, c := range map[string]struct {
		method, path string
		body         any
		status       int
	}{
		"no keyCredentials":         {"PATCH", "/servicePrincipals/" + sp.ObjectID, map[string]string{"displayName": "x"}, 400},
		"not base64":                {"PATCH", "/servicePrincipals/" + sp.ObjectID, cred("AsymmetricX509Cert", "Verify", "%%%"), 400},
		"not a certificate":         {"PATCH", "/servicePrincipals/" + sp.ObjectID, cred("AsymmetricX509Cert", "Verify", base64.StdEncoding.EncodeToString([]byte("junk"))), 400},
		"RSA-1024":                  {"PATCH", "/servicePrincipals/" + sp.ObjectID, cred("AsymmetricX509Cert", "Verify", certificateDER(t, weak, &weak.PublicKey)), 400},
		"symmetric type":            {"PATCH", "/servicePrincipals/" + sp.ObjectID, cred("Symmetric", "Sign", good), 400},
		"unknown keyId kept":        {"PATCH", "/servicePrincipals/" + sp.ObjectID, map[string]any{"keyCredentials": []map[string]string{{"keyId": servertest.NewGUID()}}}, 400},
		"a managed identity":        {"PATCH", "/servicePrincipals/" + miID, cred("AsymmetricX509Cert", "Verify", certificateDER(t, ecKey, &ecKey.PublicKey)), 400},
		"no such principal":         {"PATCH", "/servicePrincipals/" + servertest.NewGUID(), cred("AsymmetricX509Cert", "Verify", good), 404},
		"federated: http issuer":    {"POST", "/applications/" + sp.AppID + "/federatedIdentityCredentials", map[string]any{"name": "a", "issuer": "http://x.test", "subject": "s"}, 400},
		"federated: no subject":     {"POST", "/applications/" + sp.AppID + "/federatedIdentityCredentials", map[string]any{"name": "a", "issuer": "https://x.test"}, 400},
		"federated: two audiences":  {"POST", "/applications/" + sp.AppID + "/federatedIdentityCredentials", map[string]any{"name": "a", "issuer": "https://x.test", "subject": "s", "audiences": []string{"a", "b"}}, 400},
		"federated: no application": {"POST", "/applications/" + servertest.NewGUID() + "/federatedIdentityCredentials", map[string]any{"name": "a", "issuer": "https://x.test", "subject": "s"}, 404},
		"federated: delete missing": {"DELETE", "/applications/" + sp.AppID + "/federatedIdentityCredentials/nope", nil, 404},
	} {
		r := env.Graph(c.method, c.path, c.body)
		if r.Status != c.status || r.ErrorCode() == "" {
			t.Errorf("%s: %d %s, want %d with an error envelope", name, r.Status, r.Body, c.status)
		}
	}
	// Nothing changed: still the one good certificate, no federated credential.
	count := func(path string) int {
		var list struct{ Value []json.RawMessage }
		json.Unmarshal(env.Graph("GET", path, nil).Body, &list)
		return len(list.Value)
	}
	if n := count("/servicePrincipals/" + sp.ObjectID + "/keyCredentials"); n != 1 {
		t.Errorf("%d keyCredentials after the refusals, want 1", n)
	}
	if n := count("/applications/" + sp.AppID + "/federatedIdentityCredentials"); n != 0 {
		t.Errorf("%d federated credentials after the refusals, want 0", n)
	}
	// Only Global Administrators write credentials.
	tok := env.Token(sp.Cred, "https://graph.microsoft.com")
	if r := env.Do("PATCH", env.Boot.AuthorityHost+"v1.0/servicePrincipals/"+sp.ObjectID, tok, cred("AsymmetricX509Cert", "Verify", good)); r.Status != 403 {
		t.Errorf("a service principal writes its own keyCredentials: %d", r.Status)
	}
}
