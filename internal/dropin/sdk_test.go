package dropin_test

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
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
