package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Resource scopes the client asks tokens for.
const (
	graphScope = "https://graph.microsoft.com/.default"
	hsmScope   = "https://managedhsm.azure.net/.default"
)

// client talks to one Keyward server as the logged-in principal.
type client struct {
	prof *profile
	http *http.Client
	cred azcore.TokenCredential
}

// newHTTPClient trusts the server's CA (or the system roots) and sends
// requests for any host under the HSM DNS suffix to the server itself, so
// https://{hsm}.mhsm.localhost:8443 works without DNS.
func newHTTPClient(p *profile) (*http.Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.CAFile != "" {
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the CA file %s holds no PEM certificate", p.CAFile)
		}
		cfg.RootCAs = pool
	}
	srv, err := url.Parse(p.Server)
	if err != nil {
		return nil, fmt.Errorf("server URL: %w", err)
	}
	serverAddr := srv.Host
	if srv.Port() == "" {
		serverAddr = net.JoinHostPort(srv.Hostname(), "443")
	}
	suffixHost := strings.TrimPrefix(p.MHSMDNS, ".")
	if h, _, err := net.SplitHostPort(suffixHost); err == nil {
		suffixHost = h
	}
	// The resource manager's and the directory's hosts, when the server
	// named its own (Azure's names): the server signed in to answers them.
	faces := map[string]bool{}
	for _, u := range []string{p.Management, p.Graph} {
		if pu, err := url.Parse(u); err == nil && pu.Hostname() != "" {
			faces[strings.ToLower(pu.Hostname())] = true
		}
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		TLSClientConfig:   cfg,
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, _, err := net.SplitHostPort(addr); err == nil &&
				(suffixHost != "" && strings.HasSuffix(host, "."+suffixHost) || faces[strings.ToLower(host)]) {
				addr = serverAddr
			}
			return d.DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}, nil
}

func (e *env) client() (*client, error) {
	p, err := e.loadProfile()
	if err != nil {
		return nil, err
	}
	if s := e.global.subscription; s != "" && p.Subscription != "" && !strings.EqualFold(s, p.Subscription) {
		return nil, fmt.Errorf("Subscription '%s' not found. Check the spelling and casing and try again.", s)
	}
	return newClient(p)
}

func newClient(p *profile) (*client, error) {
	hc, err := newHTTPClient(p)
	if err != nil {
		return nil, err
	}
	opts := azcore.ClientOptions{Cloud: credCloud(p), Transport: hc}
	var cred azcore.TokenCredential
	switch {
	case p.Kind == "servicePrincipal" && p.Certificate != "":
		cred, err = newCertificateCredential(p, opts)
	case p.Kind == "servicePrincipal":
		cred, err = azidentity.NewClientSecretCredential(p.TenantID, p.Username, p.Secret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	default:
		cred, err = newRefreshCredential(hc, p)
	}
	if err != nil {
		return nil, err
	}
	return &client{prof: p, http: hc, cred: cred}, nil
}

// newCertificateCredential signs in with the certificate and key in the
// profile's PEM file, read on each run so a renewed file takes effect.
func newCertificateCredential(p *profile, opts azcore.ClientOptions) (azcore.TokenCredential, error) {
	data, err := os.ReadFile(p.Certificate)
	if err != nil {
		return nil, fmt.Errorf("reading the certificate: %w", err)
	}
	certs, key, err := azidentity.ParseCertificates(data, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the certificate %s: %w", p.Certificate, err)
	}
	return azidentity.NewClientCertificateCredential(p.TenantID, p.Username, certs, key,
		&azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
}

// armList and graphList GET a collection and return its value array.
func (c *client) armList(ctx context.Context, path string) ([]map[string]any, error) {
	var list struct{ Value []map[string]any }
	err := c.arm(ctx, http.MethodGet, path, nil, &list)
	return list.Value, err
}

func (c *client) graphList(ctx context.Context, path string) ([]map[string]any, error) {
	var list struct{ Value []map[string]any }
	err := c.graph(ctx, http.MethodGet, path, nil, &list)
	return list.Value, err
}

// credCloud points azidentity at the server's token service.
func credCloud(p *profile) cloud.Configuration {
	return cloud.Configuration{ActiveDirectoryAuthorityHost: strings.TrimSuffix(p.Server, "/") + "/"}
}

// hsmURL is the data-plane URL of an HSM, as az builds it from --hsm-name.
func (c *client) hsmURL(name string) string {
	return "https://" + name + c.prof.MHSMDNS
}

func (c *client) token(ctx context.Context, scope string) (string, error) {
	t, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		return "", fmt.Errorf("signing in: %w", err)
	}
	return t.Token, nil
}

// apiError is an error answered by the server in Azure's envelope.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("(%s) %s", e.Code, e.Message)
}

// graph sends a Microsoft Graph request and decodes the JSON answer into out.
func (c *client) graph(ctx context.Context, method, path string, body, out any) error {
	return c.call(ctx, graphScope, method, strings.TrimSuffix(c.prof.graphURL(), "/")+"/v1.0"+path, body, out)
}

// hsm sends a request to an HSM's data plane (for the APIs that have no
// Go SDK client here: roles) and decodes the JSON answer into out.
func (c *client) hsm(ctx context.Context, hsmURL, method, path string, body, out any) error {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return c.call(ctx, hsmScope, method, hsmURL+path+sep+"api-version=7.6", body, out)
}

// call sends one authenticated JSON request and decodes the answer into
// out; an error answer becomes an *apiError with the server's code.
func (c *client) call(ctx context.Context, scope, method, url string, body, out any) error {
	tok, err := c.token(ctx, scope)
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return decodeAPIError(resp.StatusCode, data)
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// decodeAPIError reads an error answer: Azure's envelope, or else the
// status and the body as they are.
func decodeAPIError(status int, data []byte) *apiError {
	var env struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(data, &env) == nil && env.Error.Code != "" {
		return &apiError{status, env.Error.Code, env.Error.Message}
	}
	return &apiError{status, http.StatusText(status), strings.TrimSpace(string(data))}
}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

// cliClientID is the client id the CLI names in user sign-ins (az's).
const cliClientID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"

// postOAuth sends form, with the CLI's client id, to the tenant's OAuth
// endpoint ("token", "devicecode").
func postOAuth(ctx context.Context, hc *http.Client, p *profile, endpoint string, form url.Values) (*http.Response, error) {
	form.Set("client_id", cliClientID)
	u := strings.TrimSuffix(p.Server, "/") + "/" + p.TenantID + "/oauth2/v2.0/" + endpoint
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return hc.Do(req)
}

// postToken sends form to the tenant's token endpoint.
func postToken(ctx context.Context, hc *http.Client, p *profile, form url.Values) (*tokenResponse, error) {
	resp, err := postOAuth(ctx, hc, p, "token", form)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out tokenResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("token response: %w", err)
	}
	if out.AccessToken == "" {
		return nil, fmt.Errorf("%s: %s", out.Error, out.Description)
	}
	return &out, nil
}

// signInUser signs a user in with the OAuth2 password grant, and a TOTP
// code if one is given (the form field otp, a Keyward extension), asking
// for a refresh token (offline_access).
func signInUser(ctx context.Context, hc *http.Client, p *profile, password, otp string) (*tokenResponse, error) {
	form := url.Values{"grant_type": {"password"}, "username": {p.Username}, "password": {password},
		"scope": {graphScope + " offline_access"}}
	if otp != "" {
		form.Set("otp", otp)
	}
	t, err := postToken(ctx, hc, p, form)
	if err == nil && t.RefreshToken == "" {
		err = errors.New("the server gave no refresh token")
	}
	return t, err
}

// refreshCredential gets a user's access tokens with the refresh token of
// the sign-in, as MSAL does from its cache.
type refreshCredential struct {
	http *http.Client
	p    *profile
}

func newRefreshCredential(hc *http.Client, p *profile) (azcore.TokenCredential, error) {
	return &refreshCredential{http: hc, p: p}, nil
}

func (c *refreshCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c.p.RefreshToken}, "scope": {strings.Join(o.Scopes, " ")}}
	t, err := postToken(ctx, c.http, c.p, form)
	if err != nil {
		if strings.HasPrefix(err.Error(), "invalid_grant") {
			return azcore.AccessToken{}, fmt.Errorf("%w (run 'keyward login' again)", err)
		}
		return azcore.AccessToken{}, err
	}
	return azcore.AccessToken{Token: t.AccessToken, ExpiresOn: time.Now().Add(time.Duration(t.ExpiresIn) * time.Second)}, nil
}

// signInWithDeviceCode signs a user in as `az login --use-device-code`
// does: it asks the server for a code, tells the user where to enter it
// (on stderr), and polls the token endpoint until the user has signed in
// in a browser, the code expires or ctx ends.
func signInWithDeviceCode(ctx context.Context, hc *http.Client, p *profile, stderr io.Writer) (*tokenResponse, error) {
	resp, err := postOAuth(ctx, hc, p, "devicecode", url.Values{"scope": {graphScope + " offline_access"}})
	if err != nil {
		return nil, err
	}
	var dc struct {
		DeviceCode string `json:"device_code"`
		ExpiresIn  int    `json:"expires_in"`
		Interval   int    `json:"interval"`
		Message    string `json:"message"`
		Error      string `json:"error"`
		Desc       string `json:"error_description"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&dc)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("device code response: %w", err)
	}
	if dc.DeviceCode == "" {
		return nil, fmt.Errorf("%s: %s", dc.Error, dc.Desc)
	}
	fmt.Fprintln(stderr, dc.Message)
	interval := time.Duration(max(dc.Interval, 1)) * time.Second
	deadline := time.Now().Add(time.Duration(dc.ExpiresIn) * time.Second)
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
		t, err := postToken(ctx, hc, p, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {dc.DeviceCode}, "scope": {graphScope + " offline_access"}})
		if err == nil {
			if t.RefreshToken == "" {
				return nil, errors.New("the server gave no refresh token")
			}
			return t, nil
		}
		if !strings.HasPrefix(err.Error(), "authorization_pending") || time.Now().After(deadline) {
			return nil, err
		}
	}
}

// userOf reads the user principal name from an access token's claims (it
// came from the server over TLS: nothing here is trusted for access).
func userOf(accessToken string) string {
	parts := strings.Split(accessToken, ".")
	if len(parts) != 3 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		UPN string `json:"preferred_username"`
	}
	json.Unmarshal(raw, &c)
	return c.UPN
}
