package kcrypto

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// FuzzImport feeds arbitrary JWK members to Import: it must never panic,
// and any key it accepts must survive the sealed encoding with the same
// public part.
func FuzzImport(f *testing.F) {
	k1, _ := GenerateEC(rand.Reader, P256K)
	ec, _ := GenerateEC(rand.Reader, P384)
	f.Add("EC", "P-256K", []byte{}, []byte{}, mustRaw(k1), []byte{}, []byte{})
	f.Add("EC", "P-384", ec.Public().X, ec.Public().Y, mustRaw(ec), []byte{}, []byte{})
	f.Add("oct", "", []byte{}, []byte{}, []byte{}, []byte{}, bytes.Repeat([]byte{1}, 32))
	f.Add("RSA", "", []byte{1, 0, 1}, []byte{3}, []byte{5}, []byte{7}, []byte{})
	f.Fuzz(func(t *testing.T, kty, crv string, a, b, d, p, k []byte) {
		j := JSONWebKey{Kty: KeyType(kty), Crv: Curve(crv), X: a, Y: b, N: a, E: b, D: d, P: p, Q: p, K: k}
		key, err := Import(j)
		if err != nil {
			return
		}
		raw, err := MarshalPrivate(key)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePrivate(raw)
		if err != nil {
			t.Fatalf("an imported %s key does not reparse: %v", kty, err)
		}
		if got, want := back.Public(), key.Public(); !bytes.Equal(got.X, want.X) || !bytes.Equal(got.N, want.N) || back.Size() != key.Size() {
			t.Fatal("the public part changed through the sealed encoding")
		}
	})
}

func mustRaw(k Key) []byte {
	f, _ := k.marshalPrivate()
	if f.Form == formSecp256k1 {
		return f.Bytes
	}
	return k.(*ecKey).mustD()
}

// mustD returns the private scalar; used by the fuzz seeds.
func (k *ecKey) mustD() []byte {
	d, err := k.priv.Bytes()
	if err != nil {
		panic(err)
	}
	return d
}
