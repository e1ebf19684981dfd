package kcrypto

import (
	"fmt"
	"io"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	k1ecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/keyward/keyward/internal/fault"
)

// k1Key is an ECDSA key on secp256k1 (JWK curve "P-256K"), which the
// standard library does not offer.
type k1Key struct{ priv *secp256k1.PrivateKey }

var _ Key = (*k1Key)(nil)

func generateK1(rand io.Reader) (Key, error) {
	priv, err := secp256k1.GeneratePrivateKeyFromRand(rand)
	if err != nil {
		return nil, fmt.Errorf("kcrypto: generating P-256K key: %w", err)
	}
	return &k1Key{priv}, nil
}

func importK1(j JSONWebKey) (Key, error) {
	if len(j.D) > 32 {
		return nil, fault.Invalidf("the private scalar is too long for P-256K")
	}
	var s secp256k1.ModNScalar
	d := make([]byte, 32)
	copy(d[32-len(j.D):], j.D)
	if overflow := s.SetByteSlice(d); overflow || s.IsZero() {
		return nil, fault.Invalidf("the P-256K private key is invalid")
	}
	k := &k1Key{secp256k1.NewPrivateKey(&s)}
	if err := checkPublicMatches(j, k.Public()); err != nil {
		return nil, err
	}
	return k, nil
}

func k1FromBytes(b []byte) (Key, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("kcrypto: sealed P-256K key has %d bytes", len(b))
	}
	return &k1Key{secp256k1.PrivKeyFromBytes(b)}, nil
}

func (k *k1Key) Type() KeyType { return EC }
func (k *k1Key) Size() int     { return 0 }
func (k *k1Key) Curve() Curve  { return P256K }

func (k *k1Key) Public() JSONWebKey {
	pub := k.priv.PubKey().SerializeUncompressed() // 0x04 || X || Y
	return JSONWebKey{Kty: EC, Crv: P256K, X: pub[1:33], Y: pub[33:]}
}

func (k *k1Key) checkAlg(alg Algorithm, digest []byte) error {
	if alg != "ES256K" {
		return ErrUnsupportedAlgorithm.With("algorithm %q is not valid for a P-256K key; use ES256K", alg)
	}
	if err := fipsSecp256k1(); err != nil {
		return err
	}
	h, _ := signatureHash(alg)
	return checkDigest(alg, h, digest)
}

// Sign returns r||s. The nonce is derived per RFC 6979, so rand is unused.
func (k *k1Key) Sign(_ io.Reader, alg Algorithm, digest []byte) ([]byte, error) {
	if err := k.checkAlg(alg, digest); err != nil {
		return nil, err
	}
	compact := k1ecdsa.SignCompact(k.priv, digest, false) // recovery byte || r || s
	return compact[1:], nil
}

func (k *k1Key) Verify(alg Algorithm, digest, sig []byte) (bool, error) {
	if err := k.checkAlg(alg, digest); err != nil {
		return false, err
	}
	if len(sig) != 64 {
		return false, nil
	}
	var r, s secp256k1.ModNScalar
	if r.SetByteSlice(sig[:32]) || s.SetByteSlice(sig[32:]) || r.IsZero() || s.IsZero() {
		return false, nil
	}
	return k1ecdsa.NewSignature(&r, &s).Verify(digest, k.priv.PubKey()), nil
}

func (k *k1Key) Encrypt(_ io.Reader, alg Algorithm, _ Sealed) (Sealed, error) {
	return Sealed{}, unsupported(alg, EC)
}
func (k *k1Key) Decrypt(alg Algorithm, _ Sealed) ([]byte, error) { return nil, unsupported(alg, EC) }
func (k *k1Key) WrapKey(_ io.Reader, alg Algorithm, _ []byte) ([]byte, error) {
	return nil, unsupported(alg, EC)
}
func (k *k1Key) UnwrapKey(alg Algorithm, _ []byte) ([]byte, error) { return nil, unsupported(alg, EC) }

func (k *k1Key) marshalPrivate() (sealedForm, error) {
	return sealedForm{Form: formSecp256k1, Bytes: k.priv.Serialize()}, nil
}
