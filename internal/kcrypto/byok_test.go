package kcrypto

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"testing"
)

// TestTransferBlobs: RSA, EC and AES keys come through a transfer blob
// whole; a blob for another KEK, a truncated or altered one, a key of
// another type than announced, and a KEK that is no RSA key are refused.
func TestTransferBlobs(t *testing.T) {
	kekKey, err := GenerateRSA(rand.Reader, 2048, 0)
	if err != nil {
		t.Fatal(err)
	}
	kek := &kekKey.(*rsaKey).priv.PublicKey
	otherKey, _ := GenerateRSA(rand.Reader, 2048, 0)
	aesKey := bytes.Repeat([]byte{1}, 32)

	rsaTarget, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecTarget, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaTarget)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecTarget)
	octKey := bytes.Repeat([]byte{9}, 32)
	for _, c := range []struct {
		kty    KeyType
		crv    Curve
		target []byte
		check  func(Key) bool
	}{
		{RSA, "", rsaDER, func(k Key) bool { return bytes.Equal(k.Public().N, rsaTarget.N.Bytes()) }},
		{EC, P384, ecDER, func(k Key) bool {
			return k.Curve() == P384 && bytes.Equal(k.Public().X, ecTarget.X.FillBytes(make([]byte, 48)))
		}},
		{Oct, "", octKey, func(k Key) bool { return k.Size() == 256 }},
	} {
		blob, err := SealTransferBlob(rand.Reader, kek, aesKey, c.target)
		if err != nil {
			t.Fatal(err)
		}
		k, err := OpenTransferBlob(kekKey, blob, c.kty, c.crv)
		if err != nil || !c.check(k) {
			t.Fatalf("%s: %v", c.kty, err)
		}
		if _, err := OpenTransferBlob(otherKey, blob, c.kty, c.crv); !errors.Is(err, ErrTransferBlob) {
			t.Errorf("%s: another KEK: %v", c.kty, err)
		}
		for _, bad := range [][]byte{blob[:len(blob)-8], blob[:100], func() []byte { b := bytes.Clone(blob); b[len(b)-9] ^= 1; return b }()} {
			if _, err := OpenTransferBlob(kekKey, bad, c.kty, c.crv); !errors.Is(err, ErrTransferBlob) {
				t.Errorf("%s: a damaged blob: %v", c.kty, err)
			}
		}
	}
	blob, _ := SealTransferBlob(rand.Reader, kek, aesKey, ecDER)
	if _, err := OpenTransferBlob(kekKey, blob, RSA, ""); err == nil || errors.Is(err, ErrTransferBlob) {
		t.Errorf("an EC key announced as RSA: %v", err)
	}
	if _, err := OpenTransferBlob(kekKey, blob, EC, P256); err == nil {
		t.Error("a P-384 key announced as P-256")
	}
	ecKEK, _ := GenerateEC(rand.Reader, P256)
	if _, err := OpenTransferBlob(ecKEK, blob, EC, ""); err == nil {
		t.Error("an EC key as KEK")
	}
}
