package kcrypto

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"hash"
	"io"
	"math/big"

	"github.com/keyward/keyward/internal/fault"
)

type rsaKey struct{ priv *rsa.PrivateKey }

var _ Key = (*rsaKey)(nil)

// rsaSizes are the modulus sizes Managed HSM offers.
var rsaSizes = map[int]bool{2048: true, 3072: true, 4096: true}

// GenerateRSA creates an RSA key of 2048, 3072 or 4096 bits with public
// exponent 65537, the only exponent offered.
func GenerateRSA(rand io.Reader, bits, publicExponent int) (Key, error) {
	if !rsaSizes[bits] {
		return nil, fault.Invalidf("RSA key size must be 2048, 3072 or 4096, got %d", bits)
	}
	if publicExponent != 0 && publicExponent != 65537 {
		return nil, fault.Invalidf("RSA public exponent must be 65537, got %d", publicExponent)
	}
	priv, err := rsa.GenerateKey(rand, bits)
	if err != nil {
		return nil, fmt.Errorf("kcrypto: generating RSA key: %w", err)
	}
	return &rsaKey{priv}, nil
}

func importRSA(j JSONWebKey) (Key, error) {
	if len(j.N) == 0 || len(j.E) == 0 || len(j.D) == 0 || len(j.P) == 0 || len(j.Q) == 0 {
		return nil, fault.Invalidf("an RSA key to import needs n, e, d, p and q")
	}
	e := new(big.Int).SetBytes(j.E)
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, fault.Invalidf("the RSA public exponent is out of range")
	}
	priv := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: new(big.Int).SetBytes(j.N), E: int(e.Int64())},
		D:         new(big.Int).SetBytes(j.D),
		Primes:    []*big.Int{new(big.Int).SetBytes(j.P), new(big.Int).SetBytes(j.Q)},
	}
	if !rsaSizes[priv.N.BitLen()] {
		return nil, fault.Invalidf("RSA key size must be 2048, 3072 or 4096, got %d", priv.N.BitLen())
	}
	if err := priv.Validate(); err != nil {
		return nil, fault.Invalidf("the RSA key is not consistent: %v", err)
	}
	priv.Precompute()
	return &rsaKey{priv}, nil
}

func (k *rsaKey) Type() KeyType { return RSA }
func (k *rsaKey) Size() int     { return k.priv.N.BitLen() }
func (k *rsaKey) Curve() Curve  { return "" }

func (k *rsaKey) Public() JSONWebKey {
	return JSONWebKey{Kty: RSA, N: k.priv.N.Bytes(), E: big.NewInt(int64(k.priv.E)).Bytes()}
}

func (k *rsaKey) Sign(rand io.Reader, alg Algorithm, digest []byte) ([]byte, error) {
	h, pss, err := rsaSignatureHash(alg)
	if err != nil {
		return nil, err
	}
	if err := checkDigest(alg, h, digest); err != nil {
		return nil, err
	}
	if pss {
		return rsa.SignPSS(rand, k.priv, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	}
	return rsa.SignPKCS1v15(nil, k.priv, h, digest)
}

func (k *rsaKey) Verify(alg Algorithm, digest, sig []byte) (bool, error) {
	h, pss, err := rsaSignatureHash(alg)
	if err != nil {
		return false, err
	}
	if err := checkDigest(alg, h, digest); err != nil {
		return false, err
	}
	if pss {
		return rsa.VerifyPSS(&k.priv.PublicKey, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil, nil
	}
	return rsa.VerifyPKCS1v15(&k.priv.PublicKey, h, digest, sig) == nil, nil
}

func rsaSignatureHash(alg Algorithm) (h crypto.Hash, pss bool, err error) {
	switch alg {
	case "RS256", "RS384", "RS512":
	case "PS256", "PS384", "PS512":
		pss = true
	default:
		return 0, false, unsupported(alg, RSA)
	}
	h, _ = signatureHash(alg)
	return h, pss, nil
}

// rsaOAEPHash returns the OAEP hash of alg, or nil for RSA1_5.
func rsaOAEPHash(alg Algorithm) (func() hash.Hash, error) {
	if err := fipsRSAEncryption(alg); err != nil {
		return nil, err
	}
	switch alg {
	case "RSA-OAEP":
		return sha1.New, nil
	case "RSA-OAEP-256":
		return sha256.New, nil
	case "RSA1_5":
		return nil, nil
	}
	return nil, unsupported(alg, RSA)
}

func (k *rsaKey) Encrypt(rand io.Reader, alg Algorithm, in Sealed) (Sealed, error) {
	out, err := k.encrypt(rand, alg, in.Value)
	return Sealed{Value: out}, err
}

func (k *rsaKey) encrypt(rand io.Reader, alg Algorithm, plaintext []byte) ([]byte, error) {
	newHash, err := rsaOAEPHash(alg)
	if err != nil {
		return nil, err
	}
	var out []byte
	if newHash == nil {
		out, err = rsa.EncryptPKCS1v15(rand, &k.priv.PublicKey, plaintext)
	} else {
		out, err = rsa.EncryptOAEP(newHash(), rand, &k.priv.PublicKey, plaintext, nil)
	}
	if err != nil {
		// The only failure for a valid key is a message too long for the modulus.
		return nil, fault.Invalidf("the plaintext is too long for %s with a %d-bit key", alg, k.Size())
	}
	return out, nil
}

func (k *rsaKey) Decrypt(alg Algorithm, in Sealed) ([]byte, error) {
	newHash, err := rsaOAEPHash(alg)
	if err != nil {
		return nil, err
	}
	var out []byte
	if newHash == nil {
		out, err = rsa.DecryptPKCS1v15(nil, k.priv, in.Value)
	} else {
		out, err = rsa.DecryptOAEP(newHash(), nil, k.priv, in.Value, nil)
	}
	if err != nil {
		return nil, ErrDecryption
	}
	return out, nil
}

func (k *rsaKey) WrapKey(rand io.Reader, alg Algorithm, key []byte) ([]byte, error) {
	return k.encrypt(rand, alg, key)
}

func (k *rsaKey) UnwrapKey(alg Algorithm, wrapped []byte) ([]byte, error) {
	return k.Decrypt(alg, Sealed{Value: wrapped})
}

func (k *rsaKey) marshalPrivate() (sealedForm, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return sealedForm{}, fmt.Errorf("kcrypto: marshal RSA key: %w", err)
	}
	return sealedForm{Form: formPKCS8, Bytes: der}, nil
}
