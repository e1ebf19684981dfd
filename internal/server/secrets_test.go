package server_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/servertest"
)

// TestNoSecretsInLogs drives the server through sign-ins (good and bad),
// key import, encryption and errors, then searches everything it logged
// for the client secret, the access token, private key material and
// plaintext.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk := &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeRSA), N: priv.N.Bytes(), E: big.NewInt(int64(priv.E)).Bytes(),
		D: priv.D.Bytes(), P: priv.Primes[0].Bytes(), Q: priv.Primes[1].Bytes()}
	if _, err := env.Keys.ImportKey(ctx, "imported", azkeys.ImportKeyParameters{Key: jwk}, nil); err != nil {
		t.Fatal(err)
	}
	aes := make([]byte, 32)
	rand.Read(aes)
	if _, err := env.Keys.ImportKey(ctx, "aes", azkeys.ImportKeyParameters{Key: &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeOct), K: aes}}, nil); err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("plaintext-that-must-never-be-logged")
	enc, err := env.Keys.Encrypt(ctx, "imported", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: plaintext}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Keys.Decrypt(ctx, "imported", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: enc.Result}, nil); err != nil {
		t.Fatal(err)
	}
	// A malformed import whose body carries private material.
	tok := env.Token(env.Cred, hsmResource)
	bad := `{"key":{"kty":"RSA","d":"` + base64.RawURLEncoding.EncodeToString(priv.D.Bytes()) + `!"}}`
	if r := env.Do("PUT", "/keys/bad?api-version=7.6", tok, bad); r.Status != 400 {
		t.Fatalf("bad import: %d", r.Status)
	}
	// A failed sign-in carries a secret too.
	wrong := env.Credential(env.Boot.ClientID, "wrong-secret-"+strings.Repeat("x", 20))
	if _, err := env.KeysClient(wrong).GetKey(ctx, "imported", "", nil); err == nil {
		t.Fatal("a wrong secret signed in")
	}
	logs := env.Logs()
	if !strings.Contains(logs, "request") {
		t.Fatal("the server logged nothing: the test would prove nothing")
	}
	secrets := map[string]string{
		"client secret":      env.Boot.ClientSecret,
		"wrong secret":       "wrong-secret-",
		"access token":       tok[strings.LastIndex(tok, ".")+1:],
		"RSA d (b64url)":     base64.RawURLEncoding.EncodeToString(priv.D.Bytes())[:40],
		"RSA p (b64url)":     base64.RawURLEncoding.EncodeToString(priv.Primes[0].Bytes())[:40],
		"RSA d (hex)":        hex.EncodeToString(priv.D.Bytes())[:40],
		"AES key (b64url)":   base64.RawURLEncoding.EncodeToString(aes)[:30],
		"AES key (hex)":      hex.EncodeToString(aes)[:40],
		"plaintext":          string(plaintext),
		"plaintext (b64url)": base64.RawURLEncoding.EncodeToString(plaintext)[:30],
	}
	for what, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the %s appears in the server log", what)
		}
	}
}
