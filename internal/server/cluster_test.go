package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

// A node behind a load balancer is reached at its public URL, not its
// listen address: the bootstrap document, the token issuer, the dev HSM
// and key ids name the public URL, and the TLS certificate covers it. The
// file seal's key may live outside the data directory (nodes share it).
func TestPublicURLAndSealKeyFile(t *testing.T) {
	t.Parallel()
	sealFile := filepath.Join(t.TempDir(), "shared-seal.key")
	var public string
	env := servertest.StartWith(t, t.TempDir(), func(c *server.Config) {
		_, port, _ := net.SplitHostPort(c.Listen)
		public = "https://keyward.test:" + port
		c.PublicURL, c.SealKeyFile = public, sealFile
	})
	if env.Boot.AuthorityHost != public+"/" || env.Boot.HSMURI != public {
		t.Fatalf("bootstrap: authorityHost %q, hsmUri %q", env.Boot.AuthorityHost, env.Boot.HSMURI)
	}
	if _, err := os.Stat(sealFile); err != nil {
		t.Fatalf("the seal key is not at --seal-key-file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(env.Dir, "seal.key")); err == nil {
		t.Fatal("a seal key was made in the data directory too")
	}
	// A client that knows only the public name (the balancer's).
	tr := env.HTTP.Transport.(*http.Transport).Clone()
	d := &net.Dialer{}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
	}
	client := &http.Client{Transport: tr}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {env.Boot.ClientID},
		"client_secret": {env.Boot.ClientSecret}, "scope": {"https://managedhsm.azure.net/.default"}}
	resp, err := client.PostForm(public+"/"+env.Boot.TenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatalf("token at the public URL (the certificate must cover it): %v", err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	parts := strings.Split(tok.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct{ Iss string }
	json.Unmarshal(payload, &claims)
	if claims.Iss != public+"/"+env.Boot.TenantID+"/v2.0" {
		t.Fatalf("issuer %q, want the public URL's", claims.Iss)
	}
	req, _ := http.NewRequest("POST", public+"/keys/behind-balancer/create?api-version=7.4", strings.NewReader(`{"kty":"EC","crv":"P-256"}`))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"kid":"`+public+`/keys/behind-balancer/`) {
		t.Fatalf("create at the public URL: %d %s", resp.StatusCode, body)
	}
	if got := env.Server.HSMURI("contoso"); got != "https://contoso.mhsm.localhost:"+public[strings.LastIndex(public, ":")+1:] {
		t.Fatalf("HSM URI %q", got)
	}
}
