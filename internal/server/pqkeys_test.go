package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/keyward/keyward/internal/servertest"
)

// TestPostQuantumKeysThroughAzkeys: Keyward's ML-DSA and ML-KEM keys
// through the unchanged azkeys client (which passes kty, crv and alg
// strings through): create, sign and verify, wrap and unwrap, rotate,
// back up and restore; the JWK's pub verifies a signature with a plain
// FIPS 204 verifier; other algorithms and key_size are refused.
func TestPostQuantumKeysThroughAzkeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := servertest.Start(t)
	kc := env.Keys
	msg := []byte("release 4.2.0 of the payments service")

	dsa, err := kc.CreateKey(ctx, "pq-signing", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyType("ML-DSA")),
		Curve: to.Ptr(azkeys.CurveName("ML-DSA-65"))}, nil)
	if refusedInFIPS(t, "ML-DSA", err) {
		testMLKEMInFIPSMode(t, env)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if *dsa.Key.Kty != "ML-DSA" || *dsa.Key.Crv != "ML-DSA-65" || len(dsa.Key.KeyOps) != 2 {
		t.Fatalf("the created key: %+v", dsa.Key)
	}
	alg := to.Ptr(azkeys.SignatureAlgorithm("ML-DSA-65"))
	sig, err := kc.Sign(ctx, "pq-signing", "", azkeys.SignParameters{Algorithm: alg, Value: msg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := kc.Verify(ctx, "pq-signing", "", azkeys.VerifyParameters{Algorithm: alg, Digest: msg, Signature: sig.Result}, nil)
	if err != nil || !*v.Value {
		t.Fatalf("verify: %v %v", v.Value, err)
	}
	// azkeys drops the JWK's pub (it knows no such member): read it as JSON.
	r := env.Do("GET", "/keys/pq-signing?api-version=7.4", env.AdminToken("https://managedhsm.azure.net"), nil)
	var bundle struct {
		Key struct{ Kty, Crv, Pub string } `json:"key"`
	}
	json.Unmarshal(r.Body, &bundle)
	pub, _ := base64.RawURLEncoding.DecodeString(bundle.Key.Pub)
	var pk mldsa65.PublicKey
	if err := pk.UnmarshalBinary(pub); err != nil || !mldsa65.Verify(&pk, msg, nil, sig.Result) {
		t.Fatalf("the signature does not verify with FIPS 204 from the JWK's pub (%s): %v", r.Body, err)
	}
	if _, err := kc.Sign(ctx, "pq-signing", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: msg[:32]}, nil); err == nil {
		t.Error("ES256 with an ML-DSA key")
	}
	if _, err := kc.CreateKey(ctx, "pq-bad", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyType("ML-DSA")),
		Curve: to.Ptr(azkeys.CurveName("ML-DSA-65")), KeySize: to.Ptr[int32](2048)}, nil); err == nil {
		t.Error("an ML-DSA key with key_size")
	}
	if _, err := kc.CreateKey(ctx, "pq-bad", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyType("ML-KEM")),
		Curve: to.Ptr(azkeys.CurveName("ML-KEM-512"))}, nil); err == nil {
		t.Error("an ML-KEM-512 key")
	}

	kem, err := kc.CreateKey(ctx, "pq-kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyType("ML-KEM")),
		Curve: to.Ptr(azkeys.CurveName("ML-KEM-768"))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cek := bytes.Repeat([]byte{0x42}, 32)
	kemAlg := to.Ptr(azkeys.EncryptionAlgorithm("ML-KEM-768"))
	w, err := kc.WrapKey(ctx, "pq-kek", "", azkeys.KeyOperationParameters{Algorithm: kemAlg, Value: cek}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Result) != 1088+40 {
		t.Errorf("a wrapped 32-byte key is %d bytes, want the 1088-byte ciphertext and 40 bytes of key wrap", len(w.Result))
	}
	u, err := kc.UnwrapKey(ctx, "pq-kek", "", azkeys.KeyOperationParameters{Algorithm: kemAlg, Value: w.Result}, nil)
	if err != nil || !bytes.Equal(u.Result, cek) {
		t.Fatalf("unwrap: %v", err)
	}

	// Rotation, then backup and restore keep both working.
	if _, err := kc.RotateKey(ctx, "pq-signing", nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pq-signing", "pq-kek"} {
		b, err := kc.BackupKey(ctx, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kc.DeleteKey(ctx, name, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := kc.PurgeDeletedKey(ctx, name, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := kc.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: b.Value}, nil); err != nil {
			t.Fatal(err)
		}
	}
	v, err = kc.Verify(ctx, "pq-signing", dsa.Key.KID.Version(), azkeys.VerifyParameters{Algorithm: alg, Digest: msg, Signature: sig.Result}, nil)
	if err != nil || !*v.Value {
		t.Fatalf("the restored first version: %v %v", v, err)
	}
	u, err = kc.UnwrapKey(ctx, "pq-kek", kem.Key.KID.Version(), azkeys.KeyOperationParameters{Algorithm: kemAlg, Value: w.Result}, nil)
	if err != nil || !bytes.Equal(u.Result, cek) {
		t.Fatalf("the restored ML-KEM key: %v", err)
	}
}

// testMLKEMInFIPSMode: in FIPS mode an ML-KEM key (crypto/mlkem, in the
// module) is created and shows its encapsulation key, and wrapping with it,
// which ends in AES key wrap, is refused both ways.
func testMLKEMInFIPSMode(t *testing.T, env *servertest.Env) {
	kc := env.Keys
	kem, err := kc.CreateKey(context.Background(), "pq-kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyType("ML-KEM")),
		Curve: to.Ptr(azkeys.CurveName("ML-KEM-768"))}, nil)
	if err != nil || *kem.Key.Kty != "ML-KEM" {
		t.Fatalf("an ML-KEM key in FIPS mode: %v", err)
	}
	kemAlg := to.Ptr(azkeys.EncryptionAlgorithm("ML-KEM-768"))
	_, err = kc.WrapKey(context.Background(), "pq-kek", "", azkeys.KeyOperationParameters{Algorithm: kemAlg, Value: make([]byte, 32)}, nil)
	if !refusedInFIPS(t, "ML-KEM-768 wrap", err) {
		t.Fatal("not in FIPS mode")
	}
	_, err = kc.UnwrapKey(context.Background(), "pq-kek", "", azkeys.KeyOperationParameters{Algorithm: kemAlg, Value: make([]byte, 1088+40)}, nil)
	refusedInFIPS(t, "ML-KEM-768 wrap", err)
}
