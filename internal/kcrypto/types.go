package kcrypto

import (
	"crypto"
	"io"

	"github.com/keyward/keyward/internal/fault"
)

// KeyType is the family of a key, without Azure's "-HSM" suffix.
type KeyType string

// Key families.
const (
	RSA KeyType = "RSA"
	EC  KeyType = "EC"
	Oct KeyType = "oct"
)

// Curve names an elliptic curve as in JWK "crv".
type Curve string

// Supported curves.
const (
	P256  Curve = "P-256"
	P384  Curve = "P-384"
	P521  Curve = "P-521"
	P256K Curve = "P-256K" // secp256k1
)

// Algorithm is a JWA algorithm name, such as "RS256" or "A256GCM".
type Algorithm string

// JSONWebKey holds the fields of a JWK as raw bytes. Public returns only
// the public members; the private members are read only by Import.
type JSONWebKey struct {
	Kty  KeyType
	Crv  Curve
	N, E []byte // RSA public
	X, Y []byte // EC public
	Pub  []byte // ML-DSA and ML-KEM public key (FIPS 204 / FIPS 203 encoding)
	// Private members, accepted on import and never produced.
	D, P, Q, DP, DQ, QI []byte
	K                   []byte // symmetric
	Seed                []byte // ML-DSA ξ (32 bytes) or ML-KEM d‖z (64 bytes)
}

// Sealed is the input or output of a symmetric or asymmetric cipher.
// IV, AAD and Tag apply to AES modes only.
type Sealed struct {
	Value []byte
	IV    []byte
	AAD   []byte
	Tag   []byte
}

// Key is a private or symmetric key held by the service.
//
// Methods return an error of kind fault.Invalid when the algorithm does not
// apply to the key or the input is malformed (for example a digest of the
// wrong length). Verify reports a bad signature as false, not as an error.
type Key interface {
	Type() KeyType
	// Size is the modulus size for RSA and the key size for AES, in bits,
	// and zero for EC keys.
	Size() int
	// Curve is the curve of an EC key and empty otherwise.
	Curve() Curve
	// Public returns the public members; for AES keys only Kty is set.
	Public() JSONWebKey

	Sign(rand io.Reader, alg Algorithm, digest []byte) ([]byte, error)
	Verify(alg Algorithm, digest, signature []byte) (bool, error)
	Encrypt(rand io.Reader, alg Algorithm, in Sealed) (Sealed, error)
	Decrypt(alg Algorithm, in Sealed) ([]byte, error)
	WrapKey(rand io.Reader, alg Algorithm, key []byte) ([]byte, error)
	UnwrapKey(alg Algorithm, wrapped []byte) ([]byte, error)

	marshalPrivate() (sealedForm, error)
}

// ErrUnsupportedAlgorithm is returned (wrapped with detail) when an
// algorithm is unknown or does not apply to the key.
var ErrUnsupportedAlgorithm = fault.New(fault.Invalid, "BadParameter", "kcrypto: algorithm not supported for this key")

// ErrDecryption is returned when a ciphertext fails authentication or is
// malformed. It says nothing more, so that it cannot serve as an oracle.
var ErrDecryption = fault.New(fault.Invalid, "BadParameter", "decryption failed")

func unsupported(alg Algorithm, kty KeyType) error {
	return ErrUnsupportedAlgorithm.With("algorithm %q is not valid for a key of type %s", alg, kty)
}

// signatureHash returns the digest algorithm of a signature algorithm.
func signatureHash(alg Algorithm) (crypto.Hash, bool) {
	switch alg {
	case "RS256", "PS256", "ES256", "ES256K":
		return crypto.SHA256, true
	case "RS384", "PS384", "ES384":
		return crypto.SHA384, true
	case "RS512", "PS512", "ES512":
		return crypto.SHA512, true
	}
	return 0, false
}

func checkDigest(alg Algorithm, h crypto.Hash, digest []byte) error {
	if len(digest) != h.Size() {
		return fault.Invalidf("the digest for %s must be %d bytes, got %d", alg, h.Size(), len(digest))
	}
	return nil
}
