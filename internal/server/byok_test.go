package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/fips140"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net"
	"net/url"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/tink-crypto/tink-go/v2/kwp/subtle"

	"github.com/keyward/keyward/internal/servertest"
)

// byokBlob builds a .byok file as Azure's BYOK specification describes
// it, apart from the server's code: an ephemeral AES-256 key under
// RSA-OAEP-SHA1 to the KEK, then the target's PKCS#8 under AES key wrap
// with padding (RFC 5649), in the JSON envelope az sends as key_hsm.
func byokBlob(t *testing.T, kekKid string, kek *rsa.PublicKey, target []byte) []byte {
	t.Helper()
	aesKey := make([]byte, 32)
	rand.Read(aesKey)
	enc, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, kek, aesKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	kwp, err := subtle.NewKWP(aesKey)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := kwp.Wrap(target)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"schema_version": "1.0.0",
		"header":     map[string]string{"kid": kekKid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
		"ciphertext": base64.RawURLEncoding.EncodeToString(append(enc, wrapped...)), "generator": "keyward test"})
	return b
}

func rsaPublic(k *azkeys.JSONWebKey) *rsa.PublicKey {
	return &rsa.PublicKey{N: new(big.Int).SetBytes(k.N), E: int(new(big.Int).SetBytes(k.E).Int64())}
}

// TestBYOK: a key made outside (an EC P-256 key here) comes in under a
// key-exchange key, and signs a digest that verifies with its original
// public key; a blob for another KEK, an altered one, a KEK without the
// import operation, and KEKs that would do more than import are refused
// with Azure's error envelope.
func TestBYOK(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := servertest.Start(t)
	kc := env.Keys
	kek, err := kc.CreateKey(ctx, "kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr[int32](3072),
		KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationImport)}}, nil)
	if refusedInFIPS(t, "import", err) {
		testBYOKInFIPSMode(t, env)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	other, err := kc.CreateKey(ctx, "kek-2", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM),
		KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationImport)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A KEK does nothing but import.
	if _, err := kc.Sign(ctx, "kek", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmPS256), Value: make([]byte, 32)}, nil); err == nil {
		t.Error("a KEK signs")
	}
	for name, p := range map[string]azkeys.CreateKeyParameters{
		"import and sign": {Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationImport), to.Ptr(azkeys.KeyOperationSign)}},
		"an EC KEK":       {Kty: to.Ptr(azkeys.KeyTypeECHSM), KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationImport)}},
	} {
		_, err := kc.CreateKey(ctx, "bad-kek", p, nil)
		expectStatus(t, err, 400, "BadParameter")
		_ = name
	}
	if _, err := kc.UpdateKey(ctx, "kek", "", azkeys.UpdateKeyParameters{KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationSign)}}, nil); err == nil {
		t.Error("a KEK's import was taken away")
	}

	target, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(target)
	importBlob := func(name string, blob []byte) (azkeys.ImportKeyResponse, error) {
		return kc.ImportKey(ctx, name, azkeys.ImportKeyParameters{HSM: to.Ptr(true),
			Key: &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeECHSM), Crv: to.Ptr(azkeys.CurveNameP256), T: blob}}, nil)
	}
	// A blob made for kek, but naming kek-2; an altered blob; a blob for a
	// key that is no KEK; a blob naming a key of another host.
	good := byokBlob(t, string(*kek.Key.KID), rsaPublic(kek.Key), der)
	_, err = importBlob("from-onprem", byokBlob(t, string(*other.Key.KID), rsaPublic(kek.Key), der))
	expectStatus(t, err, 400, "BadParameter")
	var env2 map[string]any
	json.Unmarshal(good, &env2)
	ct, _ := base64.RawURLEncoding.DecodeString(env2["ciphertext"].(string))
	for _, at := range []int{10, len(ct) - 3} {
		altered := append([]byte(nil), ct...)
		altered[at] ^= 1
		env2["ciphertext"] = base64.RawURLEncoding.EncodeToString(altered)
		b, _ := json.Marshal(env2)
		_, err = importBlob("from-onprem", b)
		expectStatus(t, err, 400, "BadParameter")
	}
	plain, err := kc.CreateKey(ctx, "plain-rsa", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = importBlob("from-onprem", byokBlob(t, string(*plain.Key.KID), rsaPublic(plain.Key), der))
	expectStatus(t, err, 403, "Forbidden")
	_, err = importBlob("from-onprem", byokBlob(t, "https://elsewhere.managedhsm.azure.net/keys/kek", rsaPublic(kek.Key), der))
	expectStatus(t, err, 400, "BadParameter")
	if _, err := kc.GetKey(ctx, "from-onprem", "", nil); err == nil {
		t.Fatal("a refused import left a key")
	}

	// The KEK named at another of the HSM's addresses is the KEK: the
	// bare address's key id, read with the SDK, and the CLI's
	// {name}.mhsm.localhost one.
	u, _ := url.Parse(string(*kek.Key.KID))
	_, port, _ := net.SplitHostPort(u.Host)
	u.Host = net.JoinHostPort("dev.mhsm.localhost", port)
	if _, err := importBlob("via-other-address", byokBlob(t, u.String(), rsaPublic(kek.Key), der)); err != nil {
		t.Fatalf("a blob naming the KEK at %s: %v", u.Host, err)
	}

	// The good blob: the key signs, and the signature verifies with the
	// key's original public key.
	imported, err := importBlob("from-onprem", good)
	if err != nil {
		t.Fatal(err)
	}
	if *imported.Key.Kty != azkeys.KeyTypeECHSM || string(imported.Key.X) != string(target.X.FillBytes(make([]byte, 32))) {
		t.Fatalf("the imported key: %+v", imported.Key)
	}
	digest := sha256.Sum256([]byte("moved without its plaintext leaving an HSM"))
	sig, err := kc.Sign(ctx, "from-onprem", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, s := new(big.Int).SetBytes(sig.Result[:32]), new(big.Int).SetBytes(sig.Result[32:])
	if !ecdsa.Verify(&target.PublicKey, digest[:], r, s) {
		t.Fatal("the imported key's signature does not verify with the original public key")
	}
}

// testBYOKInFIPSMode: no key-exchange key can be made in FIPS mode, and a
// BYOK blob is refused as outside the module before its KEK is looked up.
func testBYOKInFIPSMode(t *testing.T, env *servertest.Env) {
	t.Helper()
	ctx := context.Background()
	rsaKey, err := env.Keys.CreateKey(ctx, "rsa", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(target)
	// The vendor's side is outside Keyward: it may use SHA-1.
	var blob []byte
	fips140.WithoutEnforcement(func() { blob = byokBlob(t, string(*rsaKey.Key.KID), rsaPublic(rsaKey.Key), der) })
	_, err = env.Keys.ImportKey(ctx, "from-onprem", azkeys.ImportKeyParameters{HSM: to.Ptr(true),
		Key: &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeECHSM), Crv: to.Ptr(azkeys.CurveNameP256), T: blob}}, nil)
	if !refusedInFIPS(t, "CKM_RSA_AES_KEY_WRAP", err) {
		t.Fatal("not in FIPS mode")
	}
}
