package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/tink-crypto/tink-go/v2/kwp/subtle"

	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/servertest"
)

// openBlobWith opens a .byok blob's ciphertext with the private key of
// its KEK (or with a function that RSA-OAEP-SHA1-decrypts its first
// part), as whoever holds that key can: the transferred key's plaintext.
func openBlobWith(t *testing.T, blob []byte, modulus int, decrypt func([]byte) ([]byte, error)) []byte {
	t.Helper()
	var env struct{ Ciphertext string }
	if err := json.Unmarshal(blob, &env); err != nil {
		t.Fatal(err)
	}
	ct, _ := base64.RawURLEncoding.DecodeString(env.Ciphertext)
	aesKey, err := decrypt(ct[:modulus])
	if err != nil {
		t.Fatalf("decrypting the wrapping key: %v", err)
	}
	kwp, err := subtle.NewKWP(aesKey)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := kwp.Unwrap(ct[modulus:])
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

func rsaJWK(k *rsa.PrivateKey, ops ...azkeys.KeyOperation) *azkeys.JSONWebKey {
	k.Precompute()
	j := &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), N: k.N.Bytes(), E: big.NewInt(int64(k.E)).Bytes(), D: k.D.Bytes(),
		P: k.Primes[0].Bytes(), Q: k.Primes[1].Bytes(), DP: k.Precomputed.Dp.Bytes(), DQ: k.Precomputed.Dq.Bytes(), QI: k.Precomputed.Qinv.Bytes()}
	for _, op := range ops {
		j.KeyOps = append(j.KeyOps, to.Ptr(op))
	}
	return j
}

// TestAttackKEKFromOutsideMaterial: a Crypto User imports an RSA key pair
// she generated herself, with key_ops ["import"], as a new version of the
// HSM's KEK. Nothing distinguishes it from an HSM-generated KEK: a
// partner who downloads "kek" wraps to it, the BYOK import into the HSM
// succeeds, and she opens the .byok file offline — the transferred key's
// plaintext, which BYOK promises never exists outside an HSM. Azure's
// specification: the KEK is "an HSM backed RSA key pair generated in
// Azure Key Vault".
func TestAttackKEKFromOutsideMaterial(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := servertest.Start(t)
	if _, err := env.Keys.CreateKey(ctx, "kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM),
		KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationImport)}}, nil); err != nil {
		t.Fatal(err)
	}
	mallory := env.ServicePrincipal("mallory")
	env.Assign(mallory.ObjectID, rbac.CryptoUserID, "/keys")
	mc := env.KeysClient(mallory.Cred)

	mine, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, err := mc.ImportKey(ctx, "kek", azkeys.ImportKeyParameters{HSM: to.Ptr(true), Key: rsaJWK(mine, azkeys.KeyOperationImport)}, nil)
	if err == nil {
		t.Error("a KEK was made from key material imported from outside the HSM (new version of the KEK's name, by a Crypto User)")
	} else {
		expectStatus(t, err, 400, "BadParameter")
		return
	}

	// The partner's side: download the KEK by name, wrap, import.
	kek, err := env.Keys.GetKey(ctx, "kek", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(target)
	blob := byokBlob(t, string(*kek.Key.KID), rsaPublic(kek.Key), der)
	if _, err := env.Keys.ImportKey(ctx, "from-onprem", azkeys.ImportKeyParameters{HSM: to.Ptr(true),
		Key: &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeECHSM), T: blob}}, nil); err != nil {
		t.Fatalf("the partner's import: %v", err)
	}
	plain := openBlobWith(t, blob, 256, func(c []byte) ([]byte, error) { return rsa.DecryptOAEP(sha1.New(), nil, mine, c, nil) })
	if bytes.Equal(plain, der) {
		t.Fatal("mallory recovered the transferred key's PKCS#8 plaintext offline, and the BYOK import succeeded")
	}
}

// TestAttackKEKNameGetsDecryptVersion: a Crypto User creates a new
// version of the KEK's name that is an ordinary RSA key with decrypt.
// The name no longer designates a KEK; a partner who downloads "kek" (as
// Azure's walkthrough does, by name) wraps the target key to it, and the
// Crypto User decrypts the wrapping key with POST /decrypt RSA-OAEP
// (SHA-1, the mechanism's) and unwraps the target's plaintext.
func TestAttackKEKNameGetsDecryptVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := servertest.Start(t)
	if _, err := env.Keys.CreateKey(ctx, "kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM),
		KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationImport)}}, nil); err != nil {
		t.Fatal(err)
	}
	mallory := env.ServicePrincipal("mallory")
	env.Assign(mallory.ObjectID, rbac.CryptoUserID, "/keys")
	mc := env.KeysClient(mallory.Cred)

	_, err := mc.CreateKey(ctx, "kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM),
		KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationDecrypt)}}, nil)
	if err == nil {
		t.Error("a KEK's name got a new version that decrypts (the KEK stopped being one via create)")
	} else {
		return
	}
	kek, err := env.Keys.GetKey(ctx, "kek", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte{0x5a}, 32)
	blob := byokBlob(t, string(*kek.Key.KID), rsaPublic(kek.Key), secret)
	plain := openBlobWith(t, blob, 256, func(c []byte) ([]byte, error) {
		r, err := mc.Decrypt(ctx, "kek", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP), Value: c}, nil)
		if err != nil {
			return nil, err
		}
		return r.Result, nil
	})
	if bytes.Equal(plain, secret) {
		t.Fatal("mallory recovered the transferred AES key's plaintext through POST /keys/kek/decrypt")
	}
}
