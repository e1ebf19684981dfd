package cli

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

// selfSigned returns a certificate valid from notBefore to notAfter.
func selfSigned(t *testing.T, notBefore, notAfter time.Time) (*x509.Certificate, *rsa.PrivateKey) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "app"}, NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	must(t, err)
	c, err := x509.ParseCertificate(der)
	must(t, err)
	return c, k
}

// TestCertificateCredential: an application using
// azidentity.ClientCertificateCredential, with a certificate made by
// `keyward ad sp credential reset --create-cert`, signs after the grant
// and is refused before; an unregistered or expired certificate, a wrong
// audience and a replayed assertion get no token.
func TestCertificateCredential(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	b := env.Boot
	ctx := context.Background()
	_, err := env.Keys.CreateKey(ctx, "app-signing", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	must(t, err)
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	admin.ok("ad", "sp", "create-for-rbac", "--name", "billing")
	appID := admin.ok("ad", "sp", "list", "--display-name", "billing", "--query", "[0].appId", "-o", "tsv")
	objectID := admin.ok("ad", "sp", "show", "--id", appID, "--query", "id", "-o", "tsv")
	pemFile := filepath.Join(t.TempDir(), "billing.pem")
	if got := admin.ok("ad", "sp", "credential", "reset", "--id", appID, "--create-cert", "--keyfile", pemFile, "--query", "fileWithCertAndPrivateKey", "-o", "tsv"); got != pemFile {
		t.Fatalf("fileWithCertAndPrivateKey = %q", got)
	}
	if fi, err := os.Stat(pemFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the key file: %v %v", fi, err)
	}
	data, err := os.ReadFile(pemFile)
	must(t, err)
	certs, key, err := azidentity.ParseCertificates(data, nil)
	must(t, err)
	cred, err := azidentity.NewClientCertificateCredential(b.TenantID, appID, certs, key, &azidentity.ClientCertificateCredentialOptions{
		DisableInstanceDiscovery: true,
		ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: b.AuthorityHost}, Transport: env.HTTP}})
	must(t, err)
	kc := env.KeysClient(cred)
	if code := signErr(t, kc, "app-signing"); code != 403 {
		t.Fatalf("before the grant: %d", code)
	}
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "dev", "--assignee", objectID, "--scope", "/", "--role", "Managed HSM Crypto User")
	if code := signErr(t, kc, "app-signing"); code != 200 {
		t.Fatalf("after the grant: %d", code)
	}

	// The CLI signs in with the same file, as `az login --certificate`.
	billing := kw{t, t.TempDir()}
	billing.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", appID, "--certificate", pemFile, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	if got := billing.ok("keyvault", "key", "show", "--hsm-name", "dev", "--name", "app-signing", "--query", "key.kty", "-o", "tsv"); got != "EC-HSM" {
		t.Fatalf("key show as the certificate-signed-in app: %q", got)
	}

	// A second certificate, appended, also works; the list shows both.
	now := time.Now()
	cert2, key2 := selfSigned(t, now.Add(-time.Hour), now.Add(time.Hour))
	certFile := filepath.Join(t.TempDir(), "cert2.pem")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert2.Raw})))
	admin.ok("ad", "sp", "credential", "reset", "--id", appID, "--cert", "@"+certFile, "--append")
	if got := admin.ok("ad", "sp", "credential", "list", "--id", appID, "--query", "length(@)"); got != "2" {
		t.Fatalf("credentials after append: %s", got)
	}

	endpoint := b.AuthorityHost + b.TenantID + "/oauth2/v2.0/token"
	assertion := func(c *x509.Certificate, k *rsa.PrivateKey, aud string) string {
		sum := sha256.Sum256(c.Raw)
		tok := jwt.NewWithClaims(jwt.SigningMethodPS256, jwt.RegisteredClaims{Issuer: appID, Subject: appID, Audience: jwt.ClaimStrings{aud},
			ID: uuid.NewString(), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute))})
		tok.Header["x5t#S256"] = base64.StdEncoding.EncodeToString(sum[:])
		s, err := tok.SignedString(k)
		must(t, err)
		return s
	}
	exchange := func(a string) int {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "scope": {"https://managedhsm.azure.net/.default"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
		resp, err := env.HTTP.PostForm(endpoint, form)
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	good := assertion(cert2, key2, endpoint)
	if code := exchange(good); code != 200 {
		t.Fatalf("a good assertion: %d", code)
	}
	stranger, strangerKey := selfSigned(t, now.Add(-time.Hour), now.Add(time.Hour))
	forged := assertion(cert2, strangerKey, endpoint) // names cert2, signed by another key
	for name, a := range map[string]string{
		"replayed":       good,
		"unregistered":   assertion(stranger, strangerKey, endpoint),
		"forged":         forged,
		"wrong audience": assertion(cert2, key2, "https://elsewhere.test/token"),
		"corrupted":      assertion(cert2, key2, endpoint) + "x",
	} {
		if code := exchange(a); code != 401 {
			t.Errorf("%s: %d", name, code)
		}
	}

	// Replacing the credentials (no --append) retires the first certificate.
	expired, expiredKey := selfSigned(t, now.Add(-2*time.Hour), now.Add(-time.Hour))
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: expired.Raw})))
	admin.ok("ad", "sp", "credential", "reset", "--id", appID, "--cert", "@"+certFile)
	if code := exchange(assertion(expired, expiredKey, endpoint)); code != 401 {
		t.Errorf("expired certificate: %d", code)
	}
	if code := exchange(assertion(cert2, key2, endpoint)); code != 401 {
		t.Errorf("replaced certificate: %d", code)
	}
	// A short RSA key or junk is refused with Graph's error and changes nothing.
	writeFile(t, certFile, "not a certificate")
	if _, errs, code := admin.run("", "ad", "sp", "credential", "reset", "--id", appID, "--cert", "@"+certFile); code == 0 {
		t.Fatalf("junk certificate accepted: %s", errs)
	}
	if got := admin.ok("ad", "sp", "credential", "list", "--id", appID, "--query", "length(@)"); got != "1" {
		t.Fatalf("credentials after a refused reset: %s", got)
	}
}

// TestApplicationFederatedCredential: a service principal (not only a
// managed identity) trusts an external issuer through `keyward ad app
// federated-credential create`, as `az ad app federated-credential`.
func TestApplicationFederatedCredential(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	env := servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.FederationClient = iss.srv.Client() })
	b := env.Boot
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	admin.ok("ad", "sp", "create-for-rbac", "--name", "deployer")
	appID := admin.ok("ad", "sp", "list", "--display-name", "deployer", "--query", "[0].appId", "-o", "tsv")
	subject := "system:serviceaccount:payments:deployer"
	admin.ok("ad", "app", "federated-credential", "create", "--id", appID, "--parameters",
		`{"name":"k8s","issuer":"`+iss.srv.URL+`","subject":"`+subject+`","audiences":["api://AzureADTokenExchange"]}`)
	if got := admin.ok("ad", "app", "federated-credential", "list", "--id", appID, "--query", "[0].subject", "-o", "tsv"); got != subject {
		t.Fatalf("listed subject %q", got)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, iss.token(t, iss.srv.URL, subject, "api://AzureADTokenExchange", time.Now().Add(10*time.Minute)))
	getToken := func() error {
		// A new credential each time, so no cached token hides the answer.
		cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientID: appID, TenantID: b.TenantID, TokenFilePath: tokenFile, DisableInstanceDiscovery: true,
			ClientOptions: azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: b.AuthorityHost}, Transport: env.HTTP}})
		must(t, err)
		_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://managedhsm.azure.net/.default"}})
		return err
	}
	if err := getToken(); err != nil {
		t.Fatalf("federated token for a service principal: %v", err)
	}
	admin.ok("ad", "app", "federated-credential", "delete", "--id", appID, "--federated-credential-id", "k8s")
	if err := getToken(); err == nil {
		t.Fatal("a token after the federated credential was deleted")
	}
	if _, _, code := admin.run("", "ad", "app", "federated-credential", "create", "--id", appID, "--parameters",
		`{"name":"bad","issuer":"http://insecure.test","subject":"x"}`); code == 0 {
		t.Fatal("an http issuer was accepted")
	}
}

// TestCreateForRBACWithCertificate: `ad sp create-for-rbac --create-cert`,
// as az, makes the certificate the credential (written with its key to a
// file) and no client secret that nobody saw.
func TestCreateForRBACWithCertificate(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	b := env.Boot
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	pemFile := filepath.Join(t.TempDir(), "kms.pem")
	out := admin.ok("ad", "sp", "create-for-rbac", "--name", "k8s-kms", "--create-cert", "--keyfile", pemFile)
	var created struct {
		AppID, FileWithCertAndPrivateKey string
		Password                         *string
	}
	must(t, json.Unmarshal([]byte(out), &created))
	if created.FileWithCertAndPrivateKey != pemFile || created.Password != nil || created.AppID == "" {
		t.Fatalf("create-for-rbac --create-cert: %s", out)
	}
	if got := admin.ok("ad", "sp", "show", "--id", created.AppID, "--query", "length(passwordCredentials)"); got != "0" {
		t.Fatalf("client secrets made: %s", got)
	}
	if got := admin.ok("ad", "sp", "credential", "list", "--id", created.AppID, "--query", "length(@)"); got != "1" {
		t.Fatalf("certificates: %s", got)
	}
	app := kw{t, t.TempDir()}
	app.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", created.AppID, "--certificate", pemFile, "--tenant", b.TenantID, "--ca-file", b.CAFile)
}
