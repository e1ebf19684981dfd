package kcrypto

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"

	"github.com/keyward/keyward/internal/fault"
)

// ecKey is an ECDSA key on a NIST curve, served by crypto/ecdsa.
type ecKey struct {
	priv  *ecdsa.PrivateKey
	curve Curve
}

var _ Key = (*ecKey)(nil)

func nistCurve(c Curve) (elliptic.Curve, bool) {
	switch c {
	case P256:
		return elliptic.P256(), true
	case P384:
		return elliptic.P384(), true
	case P521:
		return elliptic.P521(), true
	}
	return nil, false
}

// curveAlgorithm is the one signature algorithm each curve allows.
var curveAlgorithm = map[Curve]Algorithm{P256: "ES256", P384: "ES384", P521: "ES512", P256K: "ES256K"}

// GenerateEC creates an elliptic-curve key on P-256, P-384, P-521 or P-256K.
func GenerateEC(rand io.Reader, crv Curve) (Key, error) {
	if crv == P256K {
		if err := fipsSecp256k1(); err != nil {
			return nil, err
		}
		return generateK1(rand)
	}
	c, ok := nistCurve(crv)
	if !ok {
		return nil, fault.Invalidf("unknown curve %q: use P-256, P-384, P-521 or P-256K", crv)
	}
	priv, err := ecdsa.GenerateKey(c, rand)
	if err != nil {
		return nil, fmt.Errorf("kcrypto: generating %s key: %w", crv, err)
	}
	return &ecKey{priv: priv, curve: crv}, nil
}

func importEC(j JSONWebKey) (Key, error) {
	if len(j.D) == 0 {
		return nil, fault.Invalidf("an EC key to import needs d")
	}
	if j.Crv == P256K {
		if err := fipsSecp256k1(); err != nil {
			return nil, err
		}
		return importK1(j)
	}
	c, ok := nistCurve(j.Crv)
	if !ok {
		return nil, fault.Invalidf("unknown curve %q: use P-256, P-384, P-521 or P-256K", j.Crv)
	}
	size := (c.Params().BitSize + 7) / 8
	if len(j.D) > size {
		return nil, fault.Invalidf("the private scalar is too long for %s", j.Crv)
	}
	d := make([]byte, size)
	copy(d[size-len(j.D):], j.D)
	priv, err := ecdsa.ParseRawPrivateKey(c, d)
	if err != nil {
		return nil, fault.Invalidf("the %s private key is invalid", j.Crv)
	}
	k := &ecKey{priv: priv, curve: j.Crv}
	if err := checkPublicMatches(j, k.Public()); err != nil {
		return nil, err
	}
	return k, nil
}

// checkPublicMatches refuses an imported key whose optional x and y do not
// belong to its private scalar.
func checkPublicMatches(in, derived JSONWebKey) error {
	if len(in.X) == 0 && len(in.Y) == 0 {
		return nil
	}
	eq := func(a, b []byte) bool { return new(big.Int).SetBytes(a).Cmp(new(big.Int).SetBytes(b)) == 0 }
	if !eq(in.X, derived.X) || !eq(in.Y, derived.Y) {
		return fault.Invalidf("x and y do not match the private key")
	}
	return nil
}

func (k *ecKey) Type() KeyType { return EC }
func (k *ecKey) Size() int     { return 0 }
func (k *ecKey) Curve() Curve  { return k.curve }

func (k *ecKey) byteSize() int { return (k.priv.Curve.Params().BitSize + 7) / 8 }

func (k *ecKey) Public() JSONWebKey {
	pub, err := k.priv.PublicKey.Bytes()
	if err != nil {
		panic("kcrypto: EC public key does not encode: " + err.Error()) // impossible for a valid key
	}
	n := k.byteSize()
	return JSONWebKey{Kty: EC, Crv: k.curve, X: pub[1 : 1+n], Y: pub[1+n:]}
}

func (k *ecKey) checkAlg(alg Algorithm, digest []byte) error {
	if curveAlgorithm[k.curve] != alg {
		return ErrUnsupportedAlgorithm.With("algorithm %q is not valid for a %s key; use %s", alg, k.curve, curveAlgorithm[k.curve])
	}
	h, _ := signatureHash(alg)
	return checkDigest(alg, h, digest)
}

// Sign returns the signature as r||s, each left-padded to the curve size,
// the JWS form Azure uses (not ASN.1).
func (k *ecKey) Sign(rand io.Reader, alg Algorithm, digest []byte) ([]byte, error) {
	if err := k.checkAlg(alg, digest); err != nil {
		return nil, err
	}
	r, s, err := ecdsa.Sign(rand, k.priv, digest)
	if err != nil {
		return nil, fmt.Errorf("kcrypto: ECDSA sign: %w", err)
	}
	n := k.byteSize()
	sig := make([]byte, 2*n)
	r.FillBytes(sig[:n])
	s.FillBytes(sig[n:])
	return sig, nil
}

func (k *ecKey) Verify(alg Algorithm, digest, sig []byte) (bool, error) {
	if err := k.checkAlg(alg, digest); err != nil {
		return false, err
	}
	n := k.byteSize()
	if len(sig) != 2*n {
		return false, nil
	}
	r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
	return ecdsa.Verify(&k.priv.PublicKey, digest, r, s), nil
}

func (k *ecKey) Encrypt(_ io.Reader, alg Algorithm, _ Sealed) (Sealed, error) {
	return Sealed{}, unsupported(alg, EC)
}
func (k *ecKey) Decrypt(alg Algorithm, _ Sealed) ([]byte, error) { return nil, unsupported(alg, EC) }
func (k *ecKey) WrapKey(_ io.Reader, alg Algorithm, _ []byte) ([]byte, error) {
	return nil, unsupported(alg, EC)
}
func (k *ecKey) UnwrapKey(alg Algorithm, _ []byte) ([]byte, error) { return nil, unsupported(alg, EC) }

func (k *ecKey) marshalPrivate() (sealedForm, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return sealedForm{}, fmt.Errorf("kcrypto: marshal EC key: %w", err)
	}
	return sealedForm{Form: formPKCS8, Bytes: der}, nil
}
