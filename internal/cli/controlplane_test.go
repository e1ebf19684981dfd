package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

func signErr(t *testing.T, kc *azkeys.Client, key string) int {
	t.Helper()
	_, err := kc.Sign(context.Background(), key, "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil)
	var re *azcore.ResponseError
	switch {
	case err == nil:
		return 200
	case errors.As(err, &re):
		return re.StatusCode
	}
	t.Fatalf("sign: %v", err)
	return 0
}

// TestControlPlaneStory replays the seed's control-plane lines: the
// subscription admin grants Managed HSM Contributor to the security team,
// a member creates an HSM, a developer is refused, and neither plane's
// roles reach the other.
func TestControlPlaneStory(t *testing.T) {
	env := servertest.Start(t)
	b := env.Boot
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	admin.ok("ad", "group", "create", "--display-name", "Security Team", "--mail-nickname", "security-team")
	alice := admin.ok("ad", "user", "create", "--display-name", "Alice", "--user-principal-name", "alice@contoso.test", "--password", "Alice-Pass-1", "--query", "id", "-o", "tsv")
	admin.ok("ad", "user", "create", "--display-name", "Dave", "--user-principal-name", "dave@contoso.test", "--password", "Dave-Pass-1")
	admin.ok("ad", "group", "member", "add", "-g", "Security Team", "--member-id", alice)
	team := admin.ok("ad", "group", "show", "-g", "Security Team", "--query", "id", "-o", "tsv")
	sub := admin.ok("account", "show", "--query", "id", "-o", "tsv")
	if got := admin.ok("account", "show", "--query", "user.type", "-o", "tsv"); got != "servicePrincipal" {
		t.Fatalf("account show user.type = %q", got)
	}
	admin.ok("role", "assignment", "create", "--assignee-object-id", team, "--assignee-principal-type", "Group", "--role", "Managed HSM Contributor",
		"--scope", "/subscriptions/"+sub)
	admin.ok("group", "create", "--name", "app-rg", "--location", "local")
	if got := admin.ok("role", "assignment", "list", "--assignee-object-id", team, "--query", "[0].[roleDefinitionName, roleDefinitionId]", "-o", "tsv"); !strings.HasSuffix(got, "18500a29-7fe2-46b2-a342-b16a415e101d") || !strings.HasPrefix(got, "Managed HSM contributor") {
		t.Fatalf("assignment list = %q", got)
	}

	login := func(upn, pw string) kw {
		k := kw{t, t.TempDir()}
		k.ok("login", "--server", b.AuthorityHost, "-u", upn, "-p", pw, "--tenant", b.TenantID, "--ca-file", b.CAFile)
		return k
	}
	a := login("alice@contoso.test", "Alice-Pass-1")
	a.ok("keyvault", "create", "--hsm-name", "contoso-hsm", "--resource-group", "app-rg", "--administrators", team, "--retention-days", "28")
	if got := a.ok("keyvault", "show", "--hsm-name", "contoso-hsm", "--query", "id", "-o", "tsv"); !strings.HasSuffix(got, "/resourceGroups/app-rg/providers/Microsoft.KeyVault/managedHSMs/contoso-hsm") {
		t.Fatalf("HSM id = %q", got)
	}
	if got := a.ok("keyvault", "show", "--hsm-name", "contoso-hsm", "-g", "app-rg", "--query", "properties.softDeleteRetentionInDays"); got != "28" {
		t.Fatalf("show -g: retention %q", got)
	}
	// The contributor cannot grant control-plane roles.
	_, errs, code := a.run("", "role", "assignment", "create", "--assignee-object-id", alice, "--role", "Owner")
	if code != 1 || !strings.Contains(errs, "AuthorizationFailed") {
		t.Fatalf("contributor grants Owner: %d %q", code, errs)
	}
	if got := a.ok("account", "show", "--query", "user.[name, type]", "-o", "tsv"); got != "alice@contoso.test\nuser" {
		t.Fatalf("account show as Alice = %q", got)
	}
	a.ok("logout")
	if _, errs, code := a.run("", "keyvault", "list"); code == 0 || !strings.Contains(errs, "not logged in") {
		t.Fatalf("after logout: %d %q", code, errs)
	}
	// The tenant is optional, as for az login: the server names it.
	d := kw{t, t.TempDir()}
	d.ok("login", "--server", b.AuthorityHost, "-u", "dave@contoso.test", "-p", "Dave-Pass-1", "--ca-file", b.CAFile)
	if got := d.ok("account", "show", "--query", "tenantId", "-o", "tsv"); got != b.TenantID {
		t.Fatalf("tenant learned from the server: %q", got)
	}
	_, errs, code = d.run("", "keyvault", "create", "--hsm-name", "dave-hsm", "--resource-group", "app-rg", "--administrators", team)
	if code != 1 || !strings.Contains(errs, "(AuthorizationFailed)") {
		t.Fatalf("developer creates an HSM: %d %q", code, errs)
	}
	if got := d.ok("keyvault", "list", "--query", "length(@)"); got != "0" {
		t.Fatalf("the developer sees %s HSMs", got)
	}

	// Control-plane roles grant nothing on the data plane: an operator with
	// Managed HSM Contributor over the subscription cannot read keys of dev.
	op := env.ServicePrincipal("hsm-operator")
	admin.ok("role", "assignment", "create", "--assignee-object-id", op.ObjectID, "--role", "managed hsm contributor")
	if code := signErr(t, env.KeysClient(op.Cred), "nope"); code != 403 {
		t.Fatalf("contributor on the data plane: %d", code)
	}
	// And data-plane roles grant nothing on the control plane.
	app := env.ServicePrincipal("app")
	env.Assign(app.ObjectID, "21dbd100-6940-42c2-9190-5d6cb909625b", "/")
	appCLI := kw{t, t.TempDir()}
	appCLI.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", app.AppID, "-p", secretOf(t, env, app), "--tenant", b.TenantID, "--ca-file", b.CAFile)
	_, errs, code = appCLI.run("", "keyvault", "create", "--hsm-name", "app-hsm", "-g", "keyward", "--administrators", app.ObjectID)
	if code != 1 || !strings.Contains(errs, "AuthorizationFailed") {
		t.Fatalf("crypto user creates an HSM: %d %q", code, errs)
	}
}

// lineWriter hands the lines a command prints to a channel.
func lineWriter(lines chan<- string) io.Writer {
	r, w := io.Pipe()
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return w
}

// TestManagedIdentityAgent: an unchanged application using
// azidentity.ManagedIdentityCredential behind `keyward identity agent`
// signs once the security team grants its identity Crypto User.
func TestManagedIdentityAgent(t *testing.T) {
	srv := servertest.Start(t)
	b := srv.Boot
	ctx := context.Background()
	_, err := srv.Keys.CreateKey(ctx, "app-signing", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	must(t, err)
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	admin.ok("group", "create", "--name", "app-rg")
	admin.ok("identity", "create", "--name", "app-vm", "--resource-group", "app-rg")
	principal := admin.ok("identity", "show", "--name", "app-vm", "--resource-group", "app-rg", "--query", "principalId", "-o", "tsv")

	lines := make(chan string, 4)
	agentCtx, stop := context.WithCancel(ctx)
	done := make(chan int)
	go func() {
		done <- run(agentCtx, &env{stdin: strings.NewReader(""), stdout: lineWriter(lines), stderr: os.Stderr, configDir: admin.cfg},
			[]string{"identity", "agent", "--name", "app-vm", "--resource-group", "app-rg", "--listen", "127.0.0.1:0"})
	}()
	defer func() { stop(); <-done }()
	for range 2 {
		select {
		case l := <-lines:
			k, v, _ := strings.Cut(l, "=")
			t.Setenv(k, v)
		case <-time.After(10 * time.Second):
			t.Fatal("the agent printed nothing")
		}
	}
	if !strings.HasPrefix(os.Getenv("IDENTITY_ENDPOINT"), "http://127.0.0.1:") {
		t.Fatalf("IDENTITY_ENDPOINT = %q", os.Getenv("IDENTITY_ENDPOINT"))
	}
	cred, err := azidentity.NewManagedIdentityCredential(nil)
	must(t, err)
	kc := srv.KeysClient(cred)
	if code := signErr(t, kc, "app-signing"); code != 403 {
		t.Fatalf("before the grant: %d", code)
	}
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "dev", "--assignee", principal, "--scope", "/", "--role", "Managed HSM Crypto User")
	if code := signErr(t, kc, "app-signing"); code != 200 {
		t.Fatalf("after the grant: %d", code)
	}
	// The agent answers only with its header.
	resp, err := http.Get(os.Getenv("IDENTITY_ENDPOINT") + "?resource=https://managedhsm.azure.net&api-version=2019-08-01")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("agent without its header: %d", resp.StatusCode)
	}
	_, errs, code := admin.run("", "identity", "agent", "--name", "app-vm", "--resource-group", "app-rg", "--listen", "0.0.0.0:0")
	if code != 2 || !strings.Contains(errs, "loopback") {
		t.Fatalf("agent on a public address: %d %q", code, errs)
	}
}

// oidcIssuer is a test OIDC issuer (a CI system, a Kubernetes cluster).
type oidcIssuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey
}

func newIssuer(t *testing.T) *oidcIssuer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	must(t, err)
	iss := &oidcIssuer{key: k}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": iss.srv.URL, "jwks_uri": iss.srv.URL + "/keys"})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	iss.srv = httptest.NewTLSServer(mux)
	t.Cleanup(iss.srv.Close)
	return iss
}

func (i *oidcIssuer) token(t *testing.T, issuer, sub, aud string, exp time.Time) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{Issuer: issuer, Subject: sub, Audience: jwt.ClaimStrings{aud},
		IssuedAt: jwt.NewNumericDate(time.Now().Add(-time.Minute)), ExpiresAt: jwt.NewNumericDate(exp)})
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(i.key)
	must(t, err)
	return s
}

// TestWorkloadIdentityFederation: an application using
// azidentity.WorkloadIdentityCredential with a token from a trusted OIDC
// issuer signs after the grant; wrong issuer, subject, audience or an
// expired token get no token.
func TestWorkloadIdentityFederation(t *testing.T) {
	iss := newIssuer(t)
	env := servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.FederationClient = iss.srv.Client() })
	b := env.Boot
	ctx := context.Background()
	_, err := env.Keys.CreateKey(ctx, "app-signing", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	must(t, err)
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	admin.ok("group", "create", "--name", "ci")
	admin.ok("identity", "create", "--name", "ci-runner", "--resource-group", "ci")
	clientID := admin.ok("identity", "show", "--name", "ci-runner", "--resource-group", "ci", "--query", "clientId", "-o", "tsv")
	principal := admin.ok("identity", "show", "--name", "ci-runner", "--resource-group", "ci", "--query", "principalId", "-o", "tsv")
	subject := "repo:contoso/app:ref:refs/heads/main"
	admin.ok("identity", "federated-credential", "create", "--name", "main-branch", "--identity-name", "ci-runner", "--resource-group", "ci",
		"--issuer", iss.srv.URL, "--subject", subject)

	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, iss.token(t, iss.srv.URL, subject, "api://AzureADTokenExchange", time.Now().Add(10*time.Minute)))
	cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
		ClientID: clientID, TenantID: b.TenantID, TokenFilePath: tokenFile, DisableInstanceDiscovery: true,
		ClientOptions: azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: b.AuthorityHost}, Transport: env.HTTP}})
	must(t, err)
	kc := env.KeysClient(cred)
	if code := signErr(t, kc, "app-signing"); code != 403 {
		t.Fatalf("before the grant: %d", code)
	}
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "dev", "--assignee", principal, "--scope", "/", "--role", "Managed HSM Crypto User")
	if code := signErr(t, kc, "app-signing"); code != 200 {
		t.Fatalf("after the grant: %d", code)
	}

	other := newIssuer(t)
	exchange := func(assertion string) int {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "scope": {"https://managedhsm.azure.net/.default"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
		resp, err := env.HTTP.PostForm(b.AuthorityHost+b.TenantID+"/oauth2/v2.0/token", form)
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	good := time.Now().Add(10 * time.Minute)
	if code := exchange(iss.token(t, iss.srv.URL, subject, "api://AzureADTokenExchange", good)); code != 200 {
		t.Fatalf("a good assertion: %d", code)
	}
	for name, assertion := range map[string]string{
		"wrong issuer":   other.token(t, other.srv.URL, subject, "api://AzureADTokenExchange", good),
		"forged issuer":  other.token(t, iss.srv.URL, subject, "api://AzureADTokenExchange", good),
		"wrong subject":  iss.token(t, iss.srv.URL, "repo:contoso/app:ref:refs/heads/evil", "api://AzureADTokenExchange", good),
		"wrong audience": iss.token(t, iss.srv.URL, subject, "api://other", good),
		"expired":        iss.token(t, iss.srv.URL, subject, "api://AzureADTokenExchange", time.Now().Add(-10*time.Minute)),
		"not a token":    "garbage",
	} {
		if code := exchange(assertion); code != 401 {
			t.Errorf("%s: %d", name, code)
		}
	}
}

// TestAgentRenewsItsSecret: an hour before the agent's secret expires, the
// next token request fetches a new one, so a long-running agent keeps
// working.
func TestAgentRenewsItsSecret(t *testing.T) {
	srv := servertest.Start(t)
	b := srv.Boot
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	admin.ok("group", "create", "--name", "app-rg")
	admin.ok("identity", "create", "--name", "app-vm", "--resource-group", "app-rg")
	id := admin.ok("identity", "show", "--name", "app-vm", "--resource-group", "app-rg", "--query", "id", "-o", "tsv")

	e := &env{configDir: admin.cfg}
	c, err := e.client()
	must(t, err)
	ctx := context.Background()
	a := &agentCredential{c: c, path: id + "/keywardAgentSecret"}
	_, err = a.renew(ctx)
	must(t, err)
	first := a.expires
	if life := time.Until(first); life < 23*time.Hour || life > 25*time.Hour {
		t.Fatalf("the agent's secret lives %s", life)
	}
	opts := policy.TokenRequestOptions{Scopes: []string{"https://managedhsm.azure.net/.default"}}
	_, err = a.GetToken(ctx, opts)
	must(t, err)
	if !a.expires.Equal(first) {
		t.Fatal("the secret was renewed a day before it expires")
	}
	a.expires = time.Now().Add(30 * time.Minute) // as if 23.5 hours had passed
	_, err = a.GetToken(ctx, opts)
	must(t, err)
	if time.Until(a.expires) < 23*time.Hour {
		t.Fatalf("the secret was not renewed: it expires in %s", time.Until(a.expires))
	}
}
