package kcrypto

import (
	"bytes"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

type acvp struct {
	MLDSAKeyGen []struct{ Set, Seed, Pk string }    `json:"mldsaKeyGen"`
	MLKEMEncap  []struct{ Set, Ek, M, C, K string } `json:"mlkemEncap"`
}

func loadACVP(t *testing.T) acvp {
	t.Helper()
	b, err := os.ReadFile("testdata/pq-acvp.json")
	if err != nil {
		t.Fatal(err)
	}
	var v acvp
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.MLDSAKeyGen) == 0 || len(v.MLKEMEncap) == 0 {
		t.Fatal("no vectors")
	}
	return v
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMLDSAKnownAnswers: keys derived from NIST's ACVP seeds have NIST's
// public keys (FIPS 204 key generation), for each parameter set.
func TestMLDSAKnownAnswers(t *testing.T) {
	for _, v := range loadACVP(t).MLDSAKeyGen {
		k, err := mldsaFromSeed(Curve(v.Set), unhex(t, v.Seed))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.Public().Pub, unhex(t, v.Pk)) {
			t.Errorf("%s: the public key of the ACVP seed differs", v.Set)
		}
	}
}

// TestMLKEMKnownAnswers: crypto/mlkem encapsulates as NIST's ACVP vectors
// say (FIPS 203), for the parameter sets Keyward offers, and a key of ours
// decapsulates its own encapsulation.
func TestMLKEMKnownAnswers(t *testing.T) {
	for _, v := range loadACVP(t).MLKEMEncap {
		var k, c []byte
		var err error
		switch Curve(v.Set) {
		case MLKEM768:
			ek, e := mlkem.NewEncapsulationKey768(unhex(t, v.Ek))
			if e != nil {
				t.Fatal(e)
			}
			k, c, err = mlkemtest.Encapsulate768(ek, unhex(t, v.M))
		case MLKEM1024:
			ek, e := mlkem.NewEncapsulationKey1024(unhex(t, v.Ek))
			if e != nil {
				t.Fatal(e)
			}
			k, c, err = mlkemtest.Encapsulate1024(ek, unhex(t, v.M))
		default:
			continue
		}
		if err != nil || !bytes.Equal(k, unhex(t, v.K)) || !bytes.Equal(c, unhex(t, v.C)) {
			t.Errorf("%s: encapsulation differs from the ACVP vector (%v)", v.Set, err)
		}
	}
}

// TestPostQuantumKeys: each parameter set signs or wraps, survives its
// sealed form and import from its seed, refuses other algorithms and
// tampered input, and an ML-DSA signature verifies with circl's own
// FIPS 204 verifier from the JWK's public key alone.
func TestPostQuantumKeys(t *testing.T) {
	msg := []byte("the payload a client signs, not its digest")
	for _, set := range []Curve{MLDSA44, MLDSA65, MLDSA87} {
		k, err := GenerateMLDSA(rand.Reader, set)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := k.Sign(rand.Reader, Algorithm(set), msg)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := k.Verify(Algorithm(set), msg, sig); !ok || err != nil {
			t.Fatalf("%s: its own signature: %v %v", set, ok, err)
		}
		if ok, _ := k.Verify(Algorithm(set), append([]byte("x"), msg...), sig); ok {
			t.Errorf("%s: a signature verifies another message", set)
		}
		if _, err := k.Sign(rand.Reader, "ES256", msg); !errors.Is(err, ErrUnsupportedAlgorithm) {
			t.Errorf("%s: ES256: %v", set, err)
		}
		if _, err := k.Sign(rand.Reader, Algorithm(set), make([]byte, maxMessage+1)); err == nil {
			t.Errorf("%s: an oversized message was signed", set)
		}
		roundTrip(t, k, func(k2 Key) {
			if ok, _ := k2.Verify(Algorithm(set), msg, sig); !ok {
				t.Errorf("%s: the key from its sealed form does not verify", set)
			}
		})
		if set == MLDSA65 {
			var pk mldsa65.PublicKey
			if err := pk.UnmarshalBinary(k.Public().Pub); err != nil || !mldsa65.Verify(&pk, msg, nil, sig) {
				t.Errorf("the signature does not verify with a plain FIPS 204 verifier: %v", err)
			}
		}
	}
	for _, set := range []Curve{MLKEM768, MLKEM1024} {
		k, err := GenerateMLKEM(rand.Reader, set)
		if err != nil {
			t.Fatal(err)
		}
		cek := bytes.Repeat([]byte{7}, 32)
		wrapped, err := k.WrapKey(rand.Reader, Algorithm(set), cek)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := k.UnwrapKey(Algorithm(set), wrapped); err != nil || !bytes.Equal(got, cek) {
			t.Fatalf("%s: unwrap: %v", set, err)
		}
		for _, bad := range [][]byte{wrapped[:len(wrapped)-8], append(append([]byte{}, wrapped[:10]...), wrapped[11:]...),
			func() []byte { b := bytes.Clone(wrapped); b[5] ^= 1; return b }(),
			func() []byte { b := bytes.Clone(wrapped); b[len(b)-1] ^= 1; return b }()} {
			if _, err := k.UnwrapKey(Algorithm(set), bad); !errors.Is(err, ErrDecryption) {
				t.Errorf("%s: a tampered wrap: %v", set, err)
			}
		}
		if _, err := k.WrapKey(rand.Reader, "RSA-OAEP", cek); !errors.Is(err, ErrUnsupportedAlgorithm) {
			t.Errorf("%s: RSA-OAEP: %v", set, err)
		}
		if _, err := k.WrapKey(rand.Reader, Algorithm(set), cek[:15]); err == nil {
			t.Errorf("%s: a 15-byte key was wrapped", set)
		}
		roundTrip(t, k, func(k2 Key) {
			if got, err := k2.UnwrapKey(Algorithm(set), wrapped); err != nil || !bytes.Equal(got, cek) {
				t.Errorf("%s: the key from its sealed form does not unwrap: %v", set, err)
			}
		})
	}
	if _, err := GenerateMLDSA(rand.Reader, "ML-DSA-99"); err == nil {
		t.Error("an unknown ML-DSA parameter set")
	}
	if _, err := GenerateMLKEM(rand.Reader, "ML-KEM-512"); err == nil {
		t.Error("ML-KEM-512 is not offered")
	}
}

// roundTrip checks k through its sealed form and through an import of its
// seed, and calls check with each copy.
func roundTrip(t *testing.T, k Key, check func(Key)) {
	t.Helper()
	b, err := MarshalPrivate(k)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParsePrivate(b)
	if err != nil {
		t.Fatal(err)
	}
	check(k2)
	var f sealedForm
	json.Unmarshal(b, &f)
	pub := k.Public()
	k3, err := Import(JSONWebKey{Kty: pub.Kty, Crv: pub.Crv, Pub: pub.Pub, Seed: f.Bytes})
	if err != nil {
		t.Fatal(err)
	}
	check(k3)
	other := bytes.Clone(pub.Pub)
	other[0] ^= 1
	if _, err := Import(JSONWebKey{Kty: pub.Kty, Crv: pub.Crv, Pub: other, Seed: f.Bytes}); err == nil {
		t.Errorf("%s: an import whose public key does not match its seed", pub.Crv)
	}
}

func BenchmarkPostQuantum(b *testing.B) {
	msg := make([]byte, 32)
	dsa, _ := GenerateMLDSA(rand.Reader, MLDSA65)
	b.Run("ML-DSA-65/sign", func(b *testing.B) {
		for b.Loop() {
			dsa.Sign(rand.Reader, Algorithm(MLDSA65), msg)
		}
	})
	sig, _ := dsa.Sign(rand.Reader, Algorithm(MLDSA65), msg)
	b.Run("ML-DSA-65/verify", func(b *testing.B) {
		for b.Loop() {
			dsa.Verify(Algorithm(MLDSA65), msg, sig)
		}
	})
	kem, _ := GenerateMLKEM(rand.Reader, MLKEM768)
	wrapped, _ := kem.WrapKey(rand.Reader, Algorithm(MLKEM768), msg)
	b.Run("ML-KEM-768/unwrap (decaps + AES-KW)", func(b *testing.B) {
		for b.Loop() {
			kem.UnwrapKey(Algorithm(MLKEM768), wrapped)
		}
	})
	ec, _ := GenerateEC(rand.Reader, P256)
	b.Run("ES256/sign", func(b *testing.B) {
		for b.Loop() {
			ec.Sign(rand.Reader, "ES256", msg)
		}
	})
}
