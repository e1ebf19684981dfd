package dropin_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/getsops/sops/v3/azkv"
	wrapping "github.com/hashicorp/go-kms-wrapping/v2"
	"github.com/hashicorp/go-kms-wrapping/wrappers/azurekeyvault/v2"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure" // registers azurekms://
)

// createRSA creates an RSA key in the dev HSM, as an operator would before
// pointing a tool at it.
func createRSA(t *testing.T, name string) {
	t.Helper()
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := azkeys.NewClient("https://dev.managedhsm.azure.net", cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateKey(ctx(t), name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr(int32(2048))}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestSOPS: SOPS's Azure Key Vault key source, given only the key's URL
// (as `sops encrypt --azure-kv https://dev.managedhsm.azure.net/keys/sops`
// is), encrypts a data key and decrypts it (RSA-OAEP-256), with
// DefaultAzureCredential and default client options.
func TestSOPS(t *testing.T) {
	createRSA(t, "sops")
	key, err := azkv.NewMasterKeyFromURL("https://dev.managedhsm.azure.net/keys/sops")
	if err != nil {
		t.Fatal(err)
	}
	if key.Version == "" {
		t.Fatal("the key source found no version")
	}
	dataKey := make([]byte, 32)
	rand.Read(dataKey)
	if err := key.EncryptContext(ctx(t), dataKey); err != nil {
		t.Fatal(err)
	}
	// A fresh key source, as `sops decrypt` reads one from the file.
	again, err := azkv.NewMasterKeyFromURL("https://dev.managedhsm.azure.net/keys/sops/" + key.Version)
	if err != nil {
		t.Fatal(err)
	}
	again.EncryptedKey = key.EncryptedKey
	got, err := again.DecryptContext(ctx(t))
	if err != nil || !bytes.Equal(got, dataKey) {
		t.Fatalf("decrypt: %v", err)
	}
}

// TestVaultAutoUnseal: the seal wrapper of Vault and OpenBao's
// `seal "azurekeyvault"` stanza, configured with only the vault name, key
// name, resource and the credentials (from AZURE_* here), wraps and
// unwraps a root key.
func TestVaultAutoUnseal(t *testing.T) {
	createRSA(t, "unseal")
	w := azurekeyvault.NewWrapper()
	_, err := w.SetConfig(ctx(t), wrapping.WithConfigMap(map[string]string{
		"vault_name": "dev",
		"key_name":   "unseal",
		"resource":   "managedhsm.azure.net",
	}))
	if err != nil {
		t.Fatal(err)
	}
	root := []byte("the barrier's root key, 32 bytes")
	blob, err := w.Encrypt(ctx(t), root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.Decrypt(ctx(t), blob)
	if err != nil || !bytes.Equal(got, root) {
		t.Fatalf("decrypt: %v", err)
	}
}

// TestCosignSigner: sigstore's Azure KMS signer (cosign's
// `--key azurekms://…`) creates its key on first use, signs, and verifies
// remotely; the signature also verifies locally against the public key.
func TestCosignSigner(t *testing.T) {
	sv, err := kms.Get(ctx(t), "azurekms://dev.managedhsm.azure.net/cosign", crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sv.CreateKey(ctx(t), "ecdsa-p256-sha256")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("an image digest")
	sig, err := sv.SignMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if err := sv.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
		t.Fatalf("remote verify: %v", err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
		t.Fatalf("local verify: %v", err)
	}
	if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader([]byte("another"))); err == nil {
		t.Fatal("a signature verified for another message")
	}
}
