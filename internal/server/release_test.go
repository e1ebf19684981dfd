package server_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // crypto.SHA1, CKM_RSA_AES_KEY_WRAP's OAEP hash
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/tink-crypto/tink-go/v2/kwp/subtle"

	"github.com/keyward/keyward/internal/attestation/attestationtest"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

// openRelease checks a release result as a workload does, apart from the
// server's code: the JWS verifies with the key of x5c's first
// certificate, which chains to the server's CA; the payload's key_hsm
// names the workload's key and opens with its private key
// (CKM_RSA_AES_KEY_WRAP: RSA-OAEP with the hash enc names, then AES key
// wrap with padding). It returns the payload's key and the material.
func openRelease(t *testing.T, env *servertest.Env, jws string, workload *rsa.PrivateKey, oaepHash crypto.Hash) (map[string]any, []byte) {
	t.Helper()
	obj, err := jose.ParseSigned(jws, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	h := obj.Signatures[0].Protected
	pem, err := os.ReadFile(env.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	chains, err := h.Certificates(x509.VerifyOptions{Roots: roots})
	if err != nil || len(chains) == 0 {
		t.Fatalf("x5c does not chain to the server's CA: %v", err)
	}
	payload, err := obj.Verify(chains[0][0].PublicKey)
	if err != nil {
		t.Fatalf("the release does not verify with x5c's key: %v", err)
	}
	var p struct {
		Request  map[string]any `json:"request"`
		Response struct {
			Key map[string]any `json:"key"`
		} `json:"response"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatal(err)
	}
	key := p.Response.Key["key"].(map[string]any)
	raw, _ := base64.RawURLEncoding.DecodeString(key["key_hsm"].(string))
	var blob struct {
		Ciphertext string `json:"ciphertext"`
		Header     struct{ Alg, Enc, Kid string }
	}
	if err := json.Unmarshal(raw, &blob); err != nil || blob.Header.Kid != "TpmEphemeralEncryptionKey" || blob.Header.Alg != "dir" {
		t.Fatalf("key_hsm = %s: %v", raw, err)
	}
	ct, _ := base64.RawURLEncoding.DecodeString(blob.Ciphertext)
	n := workload.Size()
	aesKey, err := rsa.DecryptOAEP(oaepHash.New(), nil, workload, ct[:n], nil)
	if err != nil {
		t.Fatalf("the wrapping key does not open with the workload's key: %v", err)
	}
	kwp, err := subtle.NewKWP(aesKey)
	if err != nil {
		t.Fatal(err)
	}
	material, err := kwp.Unwrap(ct[n:])
	if err != nil {
		t.Fatalf("the key does not unwrap: %v", err)
	}
	return p.Response.Key, material
}

// TestKeyRelease: an exportable key with a release policy is released only
// to a caller who may release keys, with a token from the policy's
// authority whose claims satisfy it; the result unwraps, with the
// workload's private key, to the key itself.
func TestKeyRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	maa, other := attestationtest.New(t), attestationtest.New(t)
	// httptest's servers share one certificate: this client trusts both.
	env := servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.FederationClient = maa.Client() })
	kc := env.Keys
	workload, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	// Azure's rules on creation: exportable needs a policy, and a policy
	// needs exportable.
	policy := &azkeys.KeyReleasePolicy{EncodedPolicy: attestationtest.CVMPolicy(maa.URL)}
	_, err = kc.CreateKey(ctx, "half", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeyAttributes: &azkeys.KeyAttributes{Exportable: to.Ptr(true)}}, nil)
	expectStatus(t, err, 400, "BadParameter")
	_, err = kc.CreateKey(ctx, "half", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), ReleasePolicy: policy}, nil)
	expectStatus(t, err, 400, "BadParameter")
	_, err = kc.CreateKey(ctx, "half", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeyAttributes: &azkeys.KeyAttributes{Exportable: to.Ptr(true)},
		ReleasePolicy: &azkeys.KeyReleasePolicy{EncodedPolicy: []byte(`{"version":"1.0.0","anyOf":[]}`)}}, nil)
	expectStatus(t, err, 400, "BadParameter")

	// A key-exchange key never leaves: released, it would open every BYOK
	// blob sent to it.
	_, err = kc.CreateKey(ctx, "kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationImport)},
		KeyAttributes: &azkeys.KeyAttributes{Exportable: to.Ptr(true)}, ReleasePolicy: policy}, nil)
	expectStatus(t, err, 400, "BadParameter")

	created, err := kc.CreateKey(ctx, "cvm-disk", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr[int32](2048),
		KeyAttributes: &azkeys.KeyAttributes{Exportable: to.Ptr(true)}, ReleasePolicy: policy}, nil)
	if refusedInFIPS(t, "exportable", err) {
		return // the released key would be wrapped outside the module
	}
	if err != nil {
		t.Fatal(err)
	}
	if !*created.Attributes.Exportable || created.ReleasePolicy == nil || *created.ReleasePolicy.Immutable ||
		!strings.HasPrefix(string(created.ReleasePolicy.EncodedPolicy), `{"version":"1.0.0","anyOf":[{"authority":"`+maa.URL+`","allOf":[`) {
		t.Fatalf("the created key: exportable %v, policy %+v", created.Attributes.Exportable, created.ReleasePolicy)
	}
	good := maa.Token(t, attestationtest.SEVSNP(), &workload.PublicKey, 10*time.Minute)

	// Only a caller who may release keys: the Release User may; a caller
	// who may wrap and unwrap with the key may not.
	releaser, encrypter := env.ServicePrincipal("cvm-agent"), env.ServicePrincipal("app")
	env.Assign(releaser.ObjectID, "21dbd100-6940-42c2-9190-5d6cb909625c", "/keys")  // Managed HSM Crypto Service Release User
	env.Assign(encrypter.ObjectID, "33413926-3206-4cdd-b39a-83574fe37a17", "/keys") // Managed HSM Crypto Service Encryption User
	_, err = env.KeysClient(encrypter.Cred).Release(ctx, "cvm-disk", "", azkeys.ReleaseParameters{TargetAttestationToken: &good}, nil)
	expectStatus(t, err, 403, "AccessDenied")

	rc := env.KeysClient(releaser.Cred)
	res, err := rc.Release(ctx, "cvm-disk", "", azkeys.ReleaseParameters{TargetAttestationToken: &good, Nonce: to.Ptr("ADE0101")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, material := openRelease(t, env, *res.Value, workload, crypto.SHA1)
	priv, err := x509.ParsePKCS8PrivateKey(material)
	if err != nil {
		t.Fatalf("the released RSA key is not PKCS#8: %v", err)
	}
	if rk := priv.(*rsa.PrivateKey); !bytes.Equal(rk.N.Bytes(), created.Key.N) {
		t.Fatal("the released key is not the key")
	}
	inner := key["key"].(map[string]any)
	if inner["kid"] != string(*created.Key.KID) || inner["kty"] != "RSA" || key["attributes"].(map[string]any)["exportable"] != true {
		t.Fatalf("the released bundle: %v", key)
	}
	// The released key signs, and the HSM's copy verifies it: one key.
	digest := sha256.Sum256([]byte("disk unlock"))
	sig, err := rsa.SignPKCS1v15(nil, priv.(*rsa.PrivateKey), crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if v, err := kc.Verify(ctx, "cvm-disk", "", azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Digest: digest[:], Signature: sig}, nil); err != nil || !*v.Value {
		t.Fatalf("the HSM does not verify the released key's signature: %v", err)
	}

	// Refused: a claim the policy does not accept; an expired token; a
	// token of another authority; a token signed by someone else in the
	// authority's name; no token.
	refuse := func(name, token string) {
		t.Helper()
		_, err := rc.Release(ctx, "cvm-disk", "", azkeys.ReleaseParameters{TargetAttestationToken: &token}, nil)
		expectStatus(t, err, 403, "Forbidden")
	}
	refuse("a TDX VM", maa.Token(t, map[string]any{"x-ms-attestation-type": "tdxvm", "x-ms-compliance-status": "azure-compliant-cvm"}, &workload.PublicKey, time.Minute))
	refuse("not compliant", maa.Token(t, map[string]any{"x-ms-attestation-type": "sevsnpvm"}, &workload.PublicKey, time.Minute))
	refuse("expired", maa.Token(t, attestationtest.SEVSNP(), &workload.PublicKey, -10*time.Minute))
	refuse("another authority", other.Token(t, attestationtest.SEVSNP(), &workload.PublicKey, time.Minute))
	forger := maa.Forged(other)
	refuse("forged", forger.Token(t, attestationtest.SEVSNP(), &workload.PublicKey, time.Minute))
	_, err = rc.Release(ctx, "cvm-disk", "", azkeys.ReleaseParameters{TargetAttestationToken: to.Ptr("")}, nil)
	expectStatus(t, err, 400, "BadParameter")

	// enc RSA_AES_KEY_WRAP_256 wraps with OAEP SHA-256; an AES key leaves
	// as its bytes, an EC key as PKCS#8.
	aes, err := kc.CreateKey(ctx, "cvm-aes", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM), KeySize: to.Ptr[int32](256),
		KeyAttributes: &azkeys.KeyAttributes{Exportable: to.Ptr(true)}, ReleasePolicy: policy}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err = rc.Release(ctx, "cvm-aes", aes.Key.KID.Version(), azkeys.ReleaseParameters{TargetAttestationToken: &good,
		Algorithm: to.Ptr(azkeys.KeyEncryptionAlgorithmRSAAESKEYWRAP256)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, material = openRelease(t, env, *res.Value, workload, crypto.SHA256)
	enc, err := kc.Encrypt(ctx, "cvm-aes", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256GCM), Value: []byte("sealed")}, nil)
	if err != nil || len(material) != 32 {
		t.Fatalf("the released AES key: %d bytes, %v", len(material), err)
	}
	if pt := openGCM(t, material, enc.IV, enc.Result, enc.AuthenticationTag); string(pt) != "sealed" {
		t.Fatal("the released AES key does not open what the HSM sealed")
	}
	ecKey, err := kc.CreateKey(ctx, "cvm-ec", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP384),
		KeyAttributes: &azkeys.KeyAttributes{Exportable: to.Ptr(true)}, ReleasePolicy: policy}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err = rc.Release(ctx, "cvm-ec", "", azkeys.ReleaseParameters{TargetAttestationToken: &good,
		Algorithm: to.Ptr(azkeys.KeyEncryptionAlgorithmRSAAESKEYWRAP384)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, material = openRelease(t, env, *res.Value, workload, crypto.SHA384)
	if ep, err := x509.ParsePKCS8PrivateKey(material); err != nil || ep.(*ecdsa.PrivateKey).Curve != elliptic.P384() ||
		!bytes.Equal(ep.(*ecdsa.PrivateKey).X.FillBytes(make([]byte, 48)), ecKey.Key.X) {
		t.Fatalf("the released EC key: %v", err)
	}

	// A key that is not exportable is never released, whatever the token.
	if _, err := kc.CreateKey(ctx, "stays", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = rc.Release(ctx, "stays", "", azkeys.ReleaseParameters{TargetAttestationToken: &good}, nil)
	expectStatus(t, err, 400, "BadParameter")

	// A mutable policy is replaced; once immutable it stays.
	other2 := &azkeys.KeyReleasePolicy{EncodedPolicy: attestationtest.CVMPolicy(other.URL)}
	upd, err := kc.UpdateKey(ctx, "cvm-disk", "", azkeys.UpdateKeyParameters{ReleasePolicy: other2}, nil)
	if err != nil || !strings.Contains(string(upd.ReleasePolicy.EncodedPolicy), other.URL) {
		t.Fatalf("replacing a mutable policy: %v", err)
	}
	refuse("the old authority, after the change", maa.Token(t, attestationtest.SEVSNP(), &workload.PublicKey, time.Minute))
	if _, err := rc.Release(ctx, "cvm-disk", "", azkeys.ReleaseParameters{TargetAttestationToken: to.Ptr(other.Token(t, attestationtest.SEVSNP(), &workload.PublicKey, time.Minute))}, nil); err != nil {
		t.Fatalf("the new authority: %v", err)
	}
	if _, err := kc.UpdateKey(ctx, "cvm-disk", "", azkeys.UpdateKeyParameters{ReleasePolicy: &azkeys.KeyReleasePolicy{EncodedPolicy: attestationtest.CVMPolicy(maa.URL), Immutable: to.Ptr(true)}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = kc.UpdateKey(ctx, "cvm-disk", "", azkeys.UpdateKeyParameters{ReleasePolicy: other2}, nil)
	expectStatus(t, err, 400, "BadParameter")
	if !strings.Contains(err.Error(), "Immutable Key Release Policy cannot be modified") {
		t.Fatalf("changing an immutable policy: %v", err)
	}
	_, err = kc.UpdateKey(ctx, "cvm-disk", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Exportable: to.Ptr(false)}}, nil)
	expectStatus(t, err, 400, "BadParameter")

	// Rotation keeps the policy, immutable; backup and restore keep it.
	rotated, err := kc.RotateKey(ctx, "cvm-disk", nil)
	if err != nil || !*rotated.Attributes.Exportable || rotated.ReleasePolicy == nil || !*rotated.ReleasePolicy.Immutable {
		t.Fatalf("the rotated key: %v %+v", err, rotated.ReleasePolicy)
	}
	b, err := kc.BackupKey(ctx, "cvm-disk", nil)
	if err != nil {
		t.Fatal(err)
	}
	kc.DeleteKey(ctx, "cvm-disk", nil)
	kc.PurgeDeletedKey(ctx, "cvm-disk", nil)
	if _, err := kc.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: b.Value}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Release(ctx, "cvm-disk", created.Key.KID.Version(), azkeys.ReleaseParameters{TargetAttestationToken: &good}, nil); err != nil {
		t.Fatalf("releasing the restored first version: %v", err)
	}
}

func openGCM(t *testing.T, key, iv, ct, tag []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := gcm.Open(nil, iv, append(append([]byte(nil), ct...), tag...), nil)
	if err != nil {
		t.Fatal(err)
	}
	return pt
}
