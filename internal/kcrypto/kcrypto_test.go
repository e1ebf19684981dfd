package kcrypto

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	k1ecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/keyward/keyward/internal/fault"
)

func mustKey(t *testing.T, k Key, err error) Key {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	// Every key must survive the sealed encoding unchanged.
	b, err := MarshalPrivate(k)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParsePrivate(b)
	if err != nil {
		t.Fatal(err)
	}
	return k2
}

func digest(h crypto.Hash, msg string) []byte {
	d := h.New()
	d.Write([]byte(msg))
	return d.Sum(nil)
}

// stdlibVerify checks a signature with the public JWK only, independently
// of the Key that made it.
func stdlibVerify(t *testing.T, pub JSONWebKey, alg Algorithm, dig, sig []byte) bool {
	t.Helper()
	h, _ := signatureHash(alg)
	switch {
	case pub.Kty == RSA:
		pk := &rsa.PublicKey{N: new(big.Int).SetBytes(pub.N), E: int(new(big.Int).SetBytes(pub.E).Int64())}
		if alg[0] == 'P' {
			return rsa.VerifyPSS(pk, h, dig, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(pk, h, dig, sig) == nil
	case pub.Crv == P256K:
		pk, err := secp256k1.ParsePubKey(append(append([]byte{4}, pub.X...), pub.Y...))
		if err != nil {
			t.Fatal(err)
		}
		var r, s secp256k1.ModNScalar
		r.SetByteSlice(sig[:32])
		s.SetByteSlice(sig[32:])
		return k1ecdsa.NewSignature(&r, &s).Verify(dig, pk)
	default:
		c, _ := nistCurve(pub.Crv)
		pk := &ecdsa.PublicKey{Curve: c, X: new(big.Int).SetBytes(pub.X), Y: new(big.Int).SetBytes(pub.Y)}
		n := len(sig) / 2
		return ecdsa.Verify(pk, dig, new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:]))
	}
}

func TestSignVerifyAllKeys(t *testing.T) {
	type tc struct {
		key  func() (Key, error)
		algs []Algorithm
	}
	rsaAlgs := []Algorithm{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	cases := map[string]tc{
		"RSA-2048": {func() (Key, error) { return GenerateRSA(rand.Reader, 2048, 65537) }, rsaAlgs},
		"RSA-3072": {func() (Key, error) { return GenerateRSA(rand.Reader, 3072, 0) }, rsaAlgs},
		"RSA-4096": {func() (Key, error) { return GenerateRSA(rand.Reader, 4096, 65537) }, rsaAlgs},
		"P-256":    {func() (Key, error) { return GenerateEC(rand.Reader, P256) }, []Algorithm{"ES256"}},
		"P-384":    {func() (Key, error) { return GenerateEC(rand.Reader, P384) }, []Algorithm{"ES384"}},
		"P-521":    {func() (Key, error) { return GenerateEC(rand.Reader, P521) }, []Algorithm{"ES512"}},
		"P-256K":   {func() (Key, error) { return GenerateEC(rand.Reader, P256K) }, []Algorithm{"ES256K"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			k, err := c.key()
			k = mustKey(t, k, err)
			for _, alg := range c.algs {
				h, _ := signatureHash(alg)
				dig := digest(h, "hello "+string(alg))
				sig, err := k.Sign(rand.Reader, alg, dig)
				if err != nil {
					t.Fatalf("%s: %v", alg, err)
				}
				if !stdlibVerify(t, k.Public(), alg, dig, sig) {
					t.Fatalf("%s: the public key does not verify the signature", alg)
				}
				if ok, err := k.Verify(alg, dig, sig); !ok || err != nil {
					t.Fatalf("%s: Verify = %v, %v", alg, ok, err)
				}
				bad := append([]byte(nil), sig...)
				bad[len(bad)/3] ^= 1
				if ok, _ := k.Verify(alg, dig, bad); ok {
					t.Fatalf("%s: a flipped signature verified", alg)
				}
				if _, err := k.Sign(rand.Reader, alg, dig[1:]); fault.KindOf(err) != fault.Invalid {
					t.Fatalf("%s: short digest: err = %v, want invalid", alg, err)
				}
			}
			if _, err := k.Sign(rand.Reader, "HS256", make([]byte, 32)); !errors.Is(err, ErrUnsupportedAlgorithm) {
				t.Fatalf("HS256: err = %v", err)
			}
		})
	}
}

func TestECWrongCurveAlgorithm(t *testing.T) {
	k, err := GenerateEC(rand.Reader, P384)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Sign(rand.Reader, "ES256", make([]byte, 32)); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Fatalf("ES256 on P-384: err = %v", err)
	}
	if _, err := k.Encrypt(rand.Reader, "RSA-OAEP", Sealed{Value: []byte("x")}); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Fatalf("encrypt with EC: err = %v", err)
	}
}

func TestRSAEncryptWrap(t *testing.T) {
	k, err := GenerateRSA(rand.Reader, 2048, 65537)
	k = mustKey(t, k, err)
	for _, alg := range []Algorithm{"RSA-OAEP", "RSA-OAEP-256", "RSA1_5"} {
		pt := []byte("secret message " + alg)
		ct, err := k.Encrypt(rand.Reader, alg, Sealed{Value: pt})
		if err != nil {
			t.Fatal(alg, err)
		}
		got, err := k.Decrypt(alg, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%s: decrypt = %q, %v", alg, got, err)
		}
		w, err := k.WrapKey(rand.Reader, alg, pt)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := k.UnwrapKey(alg, w); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%s: unwrap = %q, %v", alg, got, err)
		}
		ct.Value[5] ^= 1
		if _, err := k.Decrypt(alg, ct); !errors.Is(err, ErrDecryption) && alg != "RSA1_5" {
			t.Fatalf("%s: tampered ciphertext: err = %v", alg, err)
		}
	}
	if _, err := k.Encrypt(rand.Reader, "RSA-OAEP", Sealed{Value: make([]byte, 300)}); fault.KindOf(err) != fault.Invalid {
		t.Fatalf("oversize plaintext: %v", err)
	}
	if _, err := k.Encrypt(rand.Reader, "A256GCM", Sealed{Value: []byte("x")}); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Fatalf("A256GCM with RSA: %v", err)
	}
}

func TestAESModes(t *testing.T) {
	for _, bits := range []int{128, 192, 256} {
		k, err := GenerateOct(rand.Reader, bits)
		k = mustKey(t, k, err)
		p := "A" + big.NewInt(int64(bits)).String()
		for _, mode := range []string{"GCM", "CBC", "CBCPAD"} {
			alg := Algorithm(p + mode)
			for _, n := range []int{16, 32, 1, 33} {
				pt := bytes.Repeat([]byte{7}, n)
				ct, err := k.Encrypt(rand.Reader, alg, Sealed{Value: pt, AAD: aadFor(mode)})
				if mode == "CBC" && n%16 != 0 {
					if fault.KindOf(err) != fault.Invalid {
						t.Fatalf("%s with %d bytes: err = %v", alg, n, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", alg, err)
				}
				got, err := k.Decrypt(alg, ct)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%s: decrypt = %x, %v", alg, got, err)
				}
			}
		}
		gcm := Algorithm(p + "GCM")
		ct, _ := k.Encrypt(rand.Reader, gcm, Sealed{Value: []byte("abc"), AAD: []byte("ctx")})
		ct.Tag[0] ^= 1
		if _, err := k.Decrypt(gcm, ct); !errors.Is(err, ErrDecryption) {
			t.Fatalf("tampered tag: %v", err)
		}
		if _, err := k.Encrypt(rand.Reader, gcm, Sealed{Value: []byte("a"), IV: make([]byte, 12)}); fault.KindOf(err) != fault.Invalid {
			t.Fatalf("GCM with caller IV: %v", err)
		}
		kw := Algorithm(p + "KW")
		cek := bytes.Repeat([]byte{9}, 32)
		w, err := k.WrapKey(rand.Reader, kw, cek)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := k.UnwrapKey(kw, w); err != nil || !bytes.Equal(got, cek) {
			t.Fatalf("%s unwrap: %x, %v", kw, got, err)
		}
		w[3] ^= 1
		if _, err := k.UnwrapKey(kw, w); !errors.Is(err, ErrDecryption) {
			t.Fatalf("tampered wrap: %v", err)
		}
	}
	k, _ := GenerateOct(rand.Reader, 128)
	if _, err := k.Encrypt(rand.Reader, "A256GCM", Sealed{Value: []byte("x")}); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Fatalf("A256GCM with a 128-bit key: %v", err)
	}
}

func aadFor(mode string) []byte {
	if mode == "GCM" {
		return []byte("additional")
	}
	return nil
}

// TestAESKeyWrapRFC3394 checks the wrap against RFC 3394 §4.1 and §4.6.
func TestAESKeyWrapRFC3394(t *testing.T) {
	vectors := []struct{ kek, key, wrapped string }{
		{"000102030405060708090A0B0C0D0E0F", "00112233445566778899AABBCCDDEEFF", "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"},
		{"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
			"00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
			"28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
	}
	for _, v := range vectors {
		kek, _ := hex.DecodeString(v.kek)
		key, _ := hex.DecodeString(v.key)
		k, err := Import(JSONWebKey{Kty: Oct, K: kek})
		if err != nil {
			t.Fatal(err)
		}
		got, err := k.WrapKey(rand.Reader, "CKM_AES_KEY_WRAP", key)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := hex.DecodeString(v.wrapped); !bytes.Equal(got, want) {
			t.Fatalf("wrap = %X, want %s", got, v.wrapped)
		}
	}
}

// TestAESGCMVector checks GCM against NIST test case 4 of the GCM spec
// (McGrew & Viega), with its 60-byte plaintext and 20-byte AAD.
func TestAESGCMVector(t *testing.T) {
	h := func(s string) []byte { b, _ := hex.DecodeString(s); return b }
	k, err := Import(JSONWebKey{Kty: Oct, K: h("feffe9928665731c6d6a8f9467308308")})
	if err != nil {
		t.Fatal(err)
	}
	pt, err := k.Decrypt("A128GCM", Sealed{
		Value: h("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"),
		IV:    h("cafebabefacedbaddecaf888"),
		AAD:   h("feedfacedeadbeeffeedfacedeadbeefabaddad2"),
		Tag:   h("5bc94fbc3221a5db94fae95ae7121a47"),
	})
	want := h("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
	if err != nil || !bytes.Equal(pt, want) {
		t.Fatalf("decrypt = %x, %v", pt, err)
	}
}

func TestImport(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	j := JSONWebKey{Kty: RSA, N: rk.N.Bytes(), E: big.NewInt(int64(rk.E)).Bytes(), D: rk.D.Bytes(),
		P: rk.Primes[0].Bytes(), Q: rk.Primes[1].Bytes()}
	k, err := Import(j)
	k = mustKey(t, k, err)
	if !bytes.Equal(k.Public().N, rk.N.Bytes()) {
		t.Fatal("imported modulus differs")
	}
	j.D = append([]byte(nil), j.D...)
	j.D[0] ^= 1
	if _, err := Import(j); fault.KindOf(err) != fault.Invalid {
		t.Fatalf("inconsistent RSA key: %v", err)
	}

	ek, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	raw, _ := ek.Bytes()
	pub, _ := ek.PublicKey.Bytes()
	k, err = Import(JSONWebKey{Kty: EC, Crv: P384, D: raw, X: pub[1:49], Y: pub[49:]})
	k = mustKey(t, k, err)
	if k.Curve() != P384 || !bytes.Equal(k.Public().X, pub[1:49]) {
		t.Fatal("imported EC key differs")
	}
	if _, err := Import(JSONWebKey{Kty: EC, Crv: P384, D: raw, X: pub[2:50], Y: pub[49:]}); fault.KindOf(err) != fault.Invalid {
		t.Fatalf("mismatched x: %v", err)
	}
	k1, _ := secp256k1.GeneratePrivateKey()
	k, err = Import(JSONWebKey{Kty: EC, Crv: P256K, D: k1.Serialize()})
	k = mustKey(t, k, err)
	if !bytes.Equal(k.Public().X, k1.PubKey().SerializeUncompressed()[1:33]) {
		t.Fatal("imported P-256K key differs")
	}
	if _, err := Import(JSONWebKey{Kty: Oct, K: make([]byte, 20)}); fault.KindOf(err) != fault.Invalid {
		t.Fatalf("20-byte AES key: %v", err)
	}
	if _, err := GenerateEC(rand.Reader, "P-192"); fault.KindOf(err) != fault.Invalid {
		t.Fatalf("P-192: %v", err)
	}
	if _, err := GenerateRSA(rand.Reader, 1024, 65537); fault.KindOf(err) != fault.Invalid {
		t.Fatalf("RSA-1024: %v", err)
	}
}

func TestPKCS7UnpadRejectsBadPadding(t *testing.T) {
	for _, last := range [][]byte{
		append(bytes.Repeat([]byte{1}, 15), 0),  // zero pad length
		append(bytes.Repeat([]byte{1}, 15), 17), // longer than a block
		append(bytes.Repeat([]byte{1}, 14), 3, 3),
	} {
		if _, err := pkcs7Unpad(last); !errors.Is(err, ErrDecryption) {
			t.Fatalf("unpad(%x) = %v", last, err)
		}
	}
	if got, err := pkcs7Unpad(append(bytes.Repeat([]byte{1}, 13), 3, 3, 3)); err != nil || len(got) != 13 {
		t.Fatalf("good padding: %d, %v", len(got), err)
	}
}
