package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// writeLegacyCA writes a CA as an earlier single-node version kept it in
// dir: ca.pem and, in the clear, ca-key.pem.
func writeLegacyCA(t *testing.T, dir string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Keyward local CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	must(t, os.WriteFile(filepath.Join(dir, "ca.pem"), certPEM, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "ca-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	return certPEM
}

// A data directory of an earlier version keeps its CA (its clients go on
// trusting the server), whose key then lives only sealed in the store: the
// plaintext file goes, on this start and on any later one that finds it
// again (a start cut short after the adoption). A data directory holding
// another CA's key is refused rather than left with that key in the clear.
func TestLegacyCAIsAdoptedAndItsKeyFileRemoved(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	legacy := writeLegacyCA(t, dir)
	keyFile, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	env := servertest.StartIn(t, dir)
	if got, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); !bytes.Equal(got, legacy) {
		t.Fatal("the earlier CA was not kept")
	}
	if _, err := os.Stat(filepath.Join(dir, "ca-key.pem")); err == nil {
		t.Fatal("the plaintext CA key is still in the data directory")
	}
	if _, err := env.Keys.GetKey(ctx, "absent", "", nil); status(err) != 404 {
		t.Fatalf("a client trusting the earlier CA: %v", err)
	}
	env.Stop()
	must(t, os.WriteFile(filepath.Join(dir, "ca-key.pem"), keyFile, 0o600))
	servertest.StartIn(t, dir).Stop()
	if _, err := os.Stat(filepath.Join(dir, "ca-key.pem")); err == nil {
		t.Fatal("the CA key found again on a later start stayed")
	}

	other := t.TempDir()
	writeLegacyCA(t, other)
	foreign, _ := os.ReadFile(filepath.Join(other, "ca-key.pem"))
	must(t, os.WriteFile(filepath.Join(dir, "ca-key.pem"), foreign, 0o600))
	if _, err := servertest.TryStart(t, dir, nil); err == nil || !strings.Contains(err.Error(), "not the cluster's") {
		t.Fatalf("a start beside another CA's key: %v", err)
	}
}
