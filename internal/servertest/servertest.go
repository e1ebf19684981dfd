// Package servertest starts real Keyward servers for tests: a TLS listener
// on loopback, a SQLite file in a temporary directory, and Azure SDK
// clients (azidentity, azkeys) configured as an application would be.
package servertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/testenv"
)

// EngineEnv names the environment variable that picks the store of the
// servers tests start: "postgres" gives each data directory a PostgreSQL
// database of its own (made on first use, kept for the directory's later
// starts); anything else leaves SQLite in the data directory. scripts/test
// runs the server tests once with each.
const EngineEnv = "KEYWARD_TEST_ENGINE"

// databases maps a data directory to its PostgreSQL database, so that a
// test restarting a server on its directory finds its data again.
var databases struct {
	mu   sync.Mutex
	urls map[string]string
}

func postgresFor(t testing.TB, dir string) string {
	databases.mu.Lock()
	defer databases.mu.Unlock()
	if u, ok := databases.urls[dir]; ok {
		return u
	}
	if databases.urls == nil {
		databases.urls = map[string]string{}
	}
	u := testenv.StartPostgres(t)
	databases.urls[dir] = u
	return u
}

// Env is a running server and clients for it.
type Env struct {
	T       testing.TB
	Dir     string
	Server  *server.Server
	Boot    *server.Bootstrap
	HTTP    *http.Client // trusts the server's CA
	Cred    azcore.TokenCredential
	Keys    *azkeys.Client // the dev HSM, as the bootstrap administrator
	logs    *syncBuffer
	stop    func()
	stopped chan struct{}
}

// Start runs a dev-mode server on a fresh data directory.
func Start(t testing.TB) *Env { return StartIn(t, t.TempDir()) }

// StartIn runs a dev-mode server on dir, which may hold an earlier run.
func StartIn(t testing.TB, dir string) *Env { return StartWith(t, dir, nil) }

// StartWith runs a dev-mode server on dir after configure (if not nil)
// adjusted its configuration.
func StartWith(t testing.TB, dir string, configure func(*server.Config)) *Env {
	t.Helper()
	e, err := TryStart(t, dir, configure)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TryStart is StartWith that returns the server's start-up error.
func TryStart(t testing.TB, dir string, configure func(*server.Config)) (*Env, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	// Tests reach Azurite and test issuers on loopback, as --dev allows.
	cfg := server.Config{Listen: ln.Addr().String(), DataDir: dir, Dev: true, AllowPrivateEndpoints: true,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if configure != nil {
		configure(&cfg)
	}
	if cfg.DatabaseURL == "" && os.Getenv(EngineEnv) == "postgres" {
		cfg.DatabaseURL = postgresFor(t, dir)
	}
	s, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		ln.Close()
		return nil, err
	}
	e := &Env{T: t, Dir: dir, Server: s, Boot: s.Bootstrap(), logs: logs, stopped: make(chan struct{})}
	go func() {
		defer close(e.stopped)
		if err := s.Serve(ctx, ln); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			<-e.stopped
			s.Close()
		})
	}
	t.Cleanup(e.stop)
	e.HTTP = HTTPClient(t, e.Boot.CAFile)
	e.Cred = e.Credential(e.Boot.ClientID, e.Boot.ClientSecret)
	e.Keys = e.KeysClient(e.Cred)
	return e, nil
}

// Stop shuts the server down gracefully (also done at cleanup).
func (e *Env) Stop() { e.stop() }

// Logs returns everything the server logged so far.
func (e *Env) Logs() string { return e.logs.String() }

// HTTPClient returns a client that trusts the CA in caFile.
func HTTPClient(t testing.TB, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in " + caFile)
	}
	// HSMs answer at {name}.mhsm.localhost, which the system resolver may
	// not know: send those names to loopback, as the keyward CLI does.
	d := &net.Dialer{}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && strings.HasSuffix(host, ".mhsm.localhost") {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: 64, DialContext: dial}}
}

// Credential is an azidentity client-secret credential against the server.
func (e *Env) Credential(clientID, secret string) azcore.TokenCredential {
	e.T.Helper()
	cred, err := azidentity.NewClientSecretCredential(e.Boot.TenantID, clientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: e.Boot.AuthorityHost},
			Transport: e.HTTP,
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		e.T.Fatal(err)
	}
	return cred
}

// KeysClient is an azkeys client for the dev HSM using cred.
func (e *Env) KeysClient(cred azcore.TokenCredential) *azkeys.Client {
	return e.KeysClientFor(e.Boot.HSMURI, cred)
}

// KeysClientFor is an azkeys client for the HSM at hsmURI using cred.
func (e *Env) KeysClientFor(hsmURI string, cred azcore.TokenCredential) *azkeys.Client {
	e.T.Helper()
	c, err := azkeys.NewClient(hsmURI, cred, &azkeys.ClientOptions{
		ClientOptions:                        azcore.ClientOptions{Transport: e.HTTP},
		DisableChallengeResourceVerification: true,
	})
	if err != nil {
		e.T.Fatal(err)
	}
	return c
}

// Token returns an access token of cred for resource (without "/.default").
func (e *Env) Token(cred azcore.TokenCredential, resource string) string {
	e.T.Helper()
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
	if err != nil {
		e.T.Fatal(err)
	}
	return tok.Token
}

// Response is a raw HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// ErrorCode is error.code of an Azure error envelope.
func (r *Response) ErrorCode() string {
	var env struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal(r.Body, &env)
	return env.Error.Code
}

// Do sends a raw request to the server with an optional bearer token and
// JSON body (a string is sent as is).
func (e *Env) Do(method, url, token string, body any) *Response {
	e.T.Helper()
	return e.DoWithHeaders(method, url, token, body, nil)
}

// DoWithHeaders is Do with extra request headers.
func (e *Env) DoWithHeaders(method, url, token string, body any, headers map[string]string) *Response {
	e.T.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.T.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	if !strings.HasPrefix(url, "https://") {
		url = e.Boot.HSMURI + url
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		e.T.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		e.T.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.T.Fatal(err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// CAFile is the CA certificate path.
func (e *Env) CAFile() string { return filepath.Clean(e.Boot.CAFile) }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Principal is a directory object created for a test.
type Principal struct {
	ObjectID string
	AppID    string
	Secret   string                 // for service principals
	Cred     azcore.TokenCredential // for service principals
}

// AdminToken returns a token of the bootstrap administrator for resource.
func (e *Env) AdminToken(resource string) string { return e.Token(e.Cred, resource) }

// ServicePrincipal creates a service principal with a secret, as the
// bootstrap administrator, and returns it with a credential.
func (e *Env) ServicePrincipal(name string) Principal {
	e.T.Helper()
	tok := e.AdminToken("https://graph.microsoft.com")
	r := e.Do("POST", e.Boot.AuthorityHost+"v1.0/servicePrincipals", tok, map[string]string{"displayName": name})
	var sp struct{ ID, AppID string }
	if err := json.Unmarshal(r.Body, &sp); err != nil || r.Status != 201 {
		e.T.Fatalf("creating service principal %s: %d %s", name, r.Status, r.Body)
	}
	r = e.Do("POST", e.Boot.AuthorityHost+"v1.0/servicePrincipals/"+sp.ID+"/addPassword", tok, map[string]any{})
	var pw struct{ SecretText string }
	if err := json.Unmarshal(r.Body, &pw); err != nil || pw.SecretText == "" {
		e.T.Fatalf("adding a secret to %s: %d %s", name, r.Status, r.Body)
	}
	return Principal{ObjectID: sp.ID, AppID: sp.AppID, Secret: pw.SecretText, Cred: e.Credential(sp.AppID, pw.SecretText)}
}

// Graph sends a Graph request as the bootstrap administrator.
func (e *Env) Graph(method, path string, body any) *Response {
	return e.Do(method, e.Boot.AuthorityHost+"v1.0"+path, e.AdminToken("https://graph.microsoft.com"), body)
}

// Assign gives principal the role (a GUID) at scope in the dev HSM, as the
// bootstrap administrator, and returns the assignment's name.
func (e *Env) Assign(principal, roleID, scope string) string {
	e.T.Helper()
	name := NewGUID()
	path := strings.TrimSuffix(scope, "/") + "/providers/Microsoft.Authorization/roleAssignments/" + name + "?api-version=7.6"
	body := map[string]any{"properties": map[string]string{
		"roleDefinitionId": "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/" + roleID, "principalId": principal}}
	if r := e.Do("PUT", path, e.AdminToken("https://managedhsm.azure.net"), body); r.Status != 201 {
		e.T.Fatalf("assigning %s to %s at %s: %d %s", roleID, principal, scope, r.Status, r.Body)
	}
	return name
}

// NewGUID returns a random version-4 GUID.
func NewGUID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Attach returns clients for a server that runs elsewhere (another
// process), as its bootstrap document describes it: the same helpers as
// for a server Start ran. Stop does nothing; Server is nil.
func Attach(t testing.TB, boot server.Bootstrap) *Env { return AttachVia(t, boot, "") }

// AttachVia is Attach whose every connection goes to addr (when not ""):
// one node of a cluster, reached directly under the cluster's public
// name, as a balancer would pass it.
func AttachVia(t testing.TB, boot server.Bootstrap, addr string) *Env {
	t.Helper()
	e := &Env{T: t, Boot: &boot, logs: &syncBuffer{}, stop: func() {}}
	e.HTTP = HTTPClient(t, boot.CAFile)
	if addr != "" {
		d := &net.Dialer{}
		e.HTTP.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}
	}
	e.Cred = e.Credential(boot.ClientID, boot.ClientSecret)
	e.Keys = e.KeysClient(e.Cred)
	return e
}
