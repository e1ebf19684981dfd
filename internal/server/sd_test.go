package server_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/securitydomain"
	"github.com/keyward/keyward/internal/servertest"
)

func selfSigned(t *testing.T, bits int) (*rsa.PrivateKey, *x509.Certificate) {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	must(t, err)
	c, _ := x509.ParseCertificate(der)
	return k, c
}

func createHSM(t *testing.T, env *servertest.Env, name string) string {
	t.Helper()
	r := env.Do("GET", env.Boot.AuthorityHost+"subscriptions?api-version=2022-12-01", env.AdminToken("https://management.azure.com"), nil)
	var subs struct {
		Value []struct{ SubscriptionID string }
	}
	must(t, jsonUnmarshal(r.Body, &subs))
	me := env.Graph("GET", "/servicePrincipals/"+env.Boot.ClientID, nil)
	var sp struct{ ID string }
	must(t, jsonUnmarshal(me.Body, &sp))
	armTok := env.AdminToken("https://management.azure.com")
	if r := env.Do("PUT", env.Boot.AuthorityHost+"subscriptions/"+subs.Value[0].SubscriptionID+"/resourcegroups/rg?api-version=2021-04-01", armTok, map[string]string{"location": "local"}); r.Status != 201 && r.Status != 200 {
		t.Fatalf("create resource group: %d %s", r.Status, r.Body)
	}
	body := map[string]any{"location": "local", "properties": map[string]any{"initialAdminObjectIds": []string{sp.ID}}}
	r = env.Do("PUT", env.Boot.AuthorityHost+"subscriptions/"+subs.Value[0].SubscriptionID+"/resourceGroups/rg/providers/Microsoft.KeyVault/managedHSMs/"+name+"?api-version=2023-07-01",
		env.AdminToken("https://management.azure.com"), body)
	var res struct{ Properties struct{ HSMURI string } }
	if r.Status != 200 || jsonUnmarshal(r.Body, &res) != nil {
		t.Fatalf("create HSM: %d %s", r.Status, r.Body)
	}
	return res.Properties.HSMURI
}

func TestSecurityDomainRequests(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	hsm := createHSM(t, env, "sd-test")
	tok := env.AdminToken(hsmResource)
	var certs []map[string]any
	for range 3 {
		_, c := selfSigned(t, 2048)
		certs = append(certs, map[string]any{"kty": "RSA", "x5c": []string{base64.StdEncoding.EncodeToString(c.Raw)}})
	}
	_, small := selfSigned(t, 1024)
	smallJWK := map[string]any{"kty": "RSA", "x5c": []string{base64.StdEncoding.EncodeToString(small.Raw)}}
	bad := map[string]map[string]any{
		"two certificates": {"certificates": certs[:2], "required": 2},
		"quorum of one":    {"certificates": certs, "required": 1},
		"quorum too high":  {"certificates": certs, "required": 4},
		"no quorum":        {"certificates": certs},
		"1024-bit key":     {"certificates": []any{certs[0], certs[1], smallJWK}, "required": 2},
		"bad x5c":          {"certificates": []any{certs[0], certs[1], map[string]any{"x5c": []string{"!!"}}}, "required": 2},
	}
	for name, body := range bad {
		r := env.Do("POST", hsm+"securitydomain/download?api-version=7.2", tok, body)
		if r.Status != 400 || r.ErrorCode() != "BadParameter" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	// Still not activated after the refusals.
	if r := env.Do("GET", hsm+"securitydomain/upload/pending?api-version=7.2", tok, nil); !json.Valid(r.Body) || jsonField(r.Body, "status") != "InProgress" {
		t.Fatalf("status after refused downloads: %s", r.Body)
	}
	// Recovery: the transfer key, and an upload wrapped to another key.
	r := env.Do("GET", hsm+"securitydomain/upload?api-version=7.2", tok, nil)
	var tk struct {
		KeyFormat   string `json:"key_format"`
		TransferKey struct {
			Kty  string   `json:"kty"`
			X5c  []string `json:"x5c"`
			S256 string   `json:"x5t#S256"`
		} `json:"transfer_key"`
	}
	must(t, jsonUnmarshal(r.Body, &tk))
	if r.Status != 200 || tk.KeyFormat != "jwk" || tk.TransferKey.Kty != "RSA" || len(tk.TransferKey.X5c) != 1 || tk.TransferKey.S256 == "" {
		t.Fatalf("transfer key: %d %s", r.Status, r.Body)
	}
	var keys []*rsa.PrivateKey
	var cs []*x509.Certificate
	for range 3 {
		k, c := selfSigned(t, 2048)
		keys, cs = append(keys, k), append(cs, c)
	}
	file, err := securitydomain.Seal(rand.Reader, map[string][]byte{"hsm_backup": []byte(`{"format":1}`)}, cs, 2)
	must(t, err)
	_, otherExchange := selfSigned(t, 2048)
	blob, err := securitydomain.RestoreBlobFor(rand.Reader, file, keys[:2], otherExchange)
	must(t, err)
	text, _ := json.Marshal(blob)
	r = env.Do("POST", hsm+"securitydomain/upload?api-version=7.2", tok, map[string]string{"value": string(text)})
	if r.Status != 400 {
		t.Fatalf("upload to another exchange key: %d %s", r.Status, r.Body)
	}
	// A blob for this HSM's key, but not carrying a Keyward domain.
	der, _ := base64.StdEncoding.DecodeString(tk.TransferKey.X5c[0])
	exchange, _ := x509.ParseCertificate(der)
	blob, err = securitydomain.RestoreBlobFor(rand.Reader, file, keys[1:], exchange)
	must(t, err)
	text, _ = json.Marshal(blob)
	r = env.Do("POST", hsm+"securitydomain/upload?api-version=7.2", tok, map[string]string{"value": string(text)})
	if r.Status != 400 {
		t.Fatalf("upload of a foreign domain: %d %s", r.Status, r.Body)
	}
	if r := env.Do("POST", hsm+"securitydomain/download?api-version=7.2", tok, map[string]any{"certificates": certs, "required": 2}); r.Status != 409 {
		t.Fatalf("download while waiting for an upload: %d %s", r.Status, r.Body)
	}
	me := env.Graph("GET", "/servicePrincipals/"+env.Boot.ClientID, nil)
	assign := map[string]any{"properties": map[string]string{"roleDefinitionId": roleColumns[2].id, "principalId": jsonField(me.Body, "id")}}
	if r := env.Do("PUT", hsm+"providers/Microsoft.Authorization/roleAssignments/"+servertest.NewGUID()+"?api-version=7.6", tok, assign); r.Status != 201 {
		t.Fatalf("role assignment before activation: %d %s", r.Status, r.Body)
	}
	if r := env.Do("GET", hsm+"keys?api-version=7.6", tok, nil); r.Status != 403 || r.ErrorCode() != "HSMNotActivated" {
		t.Fatalf("keys in recovery: %d %s", r.Status, r.Body)
	}
}

func jsonField(b []byte, field string) string {
	var m map[string]any
	json.Unmarshal(b, &m)
	s, _ := m[field].(string)
	return s
}
