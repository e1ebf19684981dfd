package graph

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"math/big"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// readBody is httpx.ReadJSON on a request that carries body, as a handler
// receives it.
func readBody(body []byte, v any) error {
	r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
	return httpx.ReadJSON(httptest.NewRecorder(), r, v)
}

// graphDecoders are the Graph bodies, decoded and validated as their
// handlers do before touching the directory.
var graphDecoders = []struct {
	name   string
	decode func(body []byte) error
}{
	{"users POST", func(b []byte) error { return createBody(b, store.KindUser) }},
	{"groups POST", func(b []byte) error { return createBody(b, store.KindGroup) }},
	{"servicePrincipals POST", func(b []byte) error { return createBody(b, store.KindServicePrincipal) }},
	{"servicePrincipals PATCH keyCredentials", func(b []byte) error {
		var req struct {
			KeyCredentials *[]KeyCredential `json:"keyCredentials"`
		}
		if err := readBody(b, &req); err != nil || req.KeyCredentials == nil {
			return err
		}
		_, _, err := parseKeyCredentials(*req.KeyCredentials)
		return err
	}},
	{"federatedIdentityCredentials POST", func(b []byte) error { var req FederatedIdentityCredential; return readBody(b, &req) }},
	{"members $ref POST", func(b []byte) error { var req MemberRef; return readBody(b, &req) }},
}

func createBody(b []byte, kind string) error {
	var req CreateRequest
	if err := readBody(b, &req); err != nil {
		return err
	}
	return req.validate(kind)
}

func testCertificate(f *testing.F) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(1900000000, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		f.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// FuzzGraphBodies: no body makes a decoder panic, and every refusal is a
// client error (400 or 413), never an internal one.
func FuzzGraphBodies(f *testing.F) {
	cert := testCertificate(f)
	seeds := []string{
		`{"accountEnabled":true,"displayName":"Alice","mailNickname":"alice","userPrincipalName":"alice@contoso.example","passwordProfile":{"forceChangePasswordNextSignIn":false,"password":"correct horse battery"}}`,
		`{"displayName":"Security Team","mailEnabled":false,"mailNickname":"security","securityEnabled":true}`,
		`{"displayName":"billing-app"}`,
		`{"displayName":"vm","servicePrincipalType":"ManagedIdentity"}`,
		`{"keyCredentials":[{"type":"AsymmetricX509Cert","usage":"Verify","key":"` + cert + `","displayName":"CN=app"}]}`,
		`{"keyCredentials":[{"keyId":"9b0c5e1d-2f3a-4b5c-8d6e-7f8091a2b3c4"},{"type":"AsymmetricX509Cert","usage":"Verify","key":"AAAA"}]}`,
		`{"keyCredentials":[]}`,
		`{"name":"k8s","issuer":"https://k8s.example","subject":"system:serviceaccount:payments:billing","audiences":["api://AzureADTokenExchange"]}`,
		`{"@odata.id":"https://graph.microsoft.com/v1.0/directoryObjects/9b0c5e1d-2f3a-4b5c-8d6e-7f8091a2b3c4"}`,
		`{"passwordProfile":null}`, `{"keyCredentials":[{"key":"` + cert[:40] + `"}]}`, `[`, `"x"`, ``,
	}
	for i := range graphDecoders {
		for _, s := range seeds {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		d := graphDecoders[int(which)%len(graphDecoders)]
		if err := d.decode(body); err != nil {
			if k := fault.KindOf(err); k != fault.Invalid && k != fault.TooLarge {
				t.Fatalf("%s: %q gave a %s error: %v", d.name, body, k, err)
			}
		}
	})
}
