package dropin_test

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// TestDefaultAzureCredentialAndAzkeys: an application as written for
// Azure — DefaultAzureCredential from the environment, an azkeys client
// with default options (so the challenge's resource is checked against
// the host) — creates a key and signs with it.
func TestDefaultAzureCredentialAndAzkeys(t *testing.T) {
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := azkeys.NewClient("https://dev.managedhsm.azure.net/", cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	created, err := c.CreateKey(ctx(t), "app-signing", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM),
		Curve: to.Ptr(azkeys.CurveNameP256)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kid := string(*created.Key.KID)
	if !strings.HasPrefix(kid, "https://dev.managedhsm.azure.net/keys/app-signing/") {
		t.Fatalf("key id %s: want Azure's name, no port", kid)
	}
	digest := sha256.Sum256([]byte("release 1.0"))
	signed, err := c.Sign(ctx(t), "app-signing", created.Key.KID.Version(), azkeys.SignParameters{
		Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	verified, err := c.Verify(ctx(t), "app-signing", "", azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256),
		Digest: digest[:], Signature: signed.Result}, nil)
	if err != nil || !*verified.Value {
		t.Fatalf("verify: %v", err)
	}
}

// TestControlPlaneAndDirectory: the resource manager at
// management.azure.com and the directory at graph.microsoft.com, with
// tokens for their own audiences, as armkeyvault and Graph clients ask.
func TestControlPlaneAndDirectory(t *testing.T) {
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func(url, scope string, into any) {
		t.Helper()
		tok, err := cred.GetToken(ctx(t), policy.TokenRequestOptions{Scopes: []string{scope}})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		resp, err := http.DefaultClient.Do(req) // the system's roots: SSL_CERT_FILE
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
		}
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatal(err)
		}
	}
	var subs struct {
		Value []struct{ SubscriptionID string }
	}
	get("https://management.azure.com/subscriptions?api-version=2022-12-01", "https://management.azure.com/.default", &subs)
	if len(subs.Value) != 1 {
		t.Fatalf("subscriptions: %+v", subs)
	}
	hsms, err := armkeyvault.NewManagedHsmsClient(subs.Value[0].SubscriptionID, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := hsms.Get(ctx(t), "keyward", "dev", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := *dev.Properties.HsmURI; got != "https://dev.managedhsm.azure.net/" {
		t.Fatalf("hsmUri %s", got)
	}
	var sps struct {
		Value []struct{ AppID string }
	}
	get("https://graph.microsoft.com/v1.0/servicePrincipals?$filter="+url.QueryEscape("appId eq '"+os.Getenv("AZURE_CLIENT_ID")+"'"),
		"https://graph.microsoft.com/.default", &sps)
	if len(sps.Value) != 1 || sps.Value[0].AppID != os.Getenv("AZURE_CLIENT_ID") {
		t.Fatalf("service principals: %+v", sps)
	}
	var meta struct {
		Authentication  struct{ LoginEndpoint string }
		ResourceManager string
		Suffixes        map[string]string
	}
	get("https://management.azure.com/metadata/endpoints?api-version=2022-09-01", "https://management.azure.com/.default", &meta)
	if meta.Authentication.LoginEndpoint != "https://login.microsoftonline.com/" || meta.ResourceManager != "https://management.azure.com/" ||
		meta.Suffixes["mhsmDns"] != ".managedhsm.azure.net" {
		t.Fatalf("metadata: %+v", meta)
	}
}

// TestInstanceDiscovery: MSAL's authority validation
// (/common/discovery/instance), which some MSALs call even for
// login.microsoftonline.com, is answered by the server for itself.
func TestInstanceDiscovery(t *testing.T) {
	tenant := os.Getenv("AZURE_TENANT_ID")
	resp, err := http.Get("https://login.microsoftonline.com/common/discovery/instance?api-version=1.1&authorization_endpoint=" +
		url.QueryEscape("https://login.microsoftonline.com/"+tenant+"/oauth2/v2.0/authorize"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		TenantDiscoveryEndpoint string `json:"tenant_discovery_endpoint"`
		Metadata                []struct{ Aliases []string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	if d.TenantDiscoveryEndpoint != "https://login.microsoftonline.com/"+tenant+"/v2.0/.well-known/openid-configuration" ||
		len(d.Metadata) != 1 || len(d.Metadata[0].Aliases) != 1 || d.Metadata[0].Aliases[0] != "login.microsoftonline.com" {
		t.Fatalf("%+v", d)
	}
	var doc struct{ Issuer, TokenEndpoint string }
	r2, err := http.Get(d.TenantDiscoveryEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Body.Close()
	json.NewDecoder(r2.Body).Decode(&doc)
	if doc.Issuer != "https://login.microsoftonline.com/"+tenant+"/v2.0" {
		t.Fatalf("issuer %q", doc.Issuer)
	}
}
