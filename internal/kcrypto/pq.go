package kcrypto

import (
	"bytes"
	"crypto/aes"
	"crypto/mlkem"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	jose "github.com/go-jose/go-jose/v4/cipher"

	"github.com/keyward/keyward/internal/fault"
)

// Post-quantum keys, Keyward extensions of the Managed HSM key types
// (Azure has none). The parameter set travels in crv, as an EC key's
// curve does, and is also the key's one algorithm:
//
//   - ML-DSA (FIPS 204) signs the value itself (pure ML-DSA, empty
//     context, hedged), so any FIPS 204 library verifies it;
//   - ML-KEM (FIPS 203) wraps a key as the KEM ciphertext followed by the
//     key under AES-256 key wrap (RFC 3394) with the shared secret.
//
// ML-DSA is circl's (Go 1.26 has no public ML-DSA); ML-KEM is crypto/mlkem.
// Keys are kept as their seeds, FIPS 204's ξ and FIPS 203's d‖z, from
// which each is derived again.
const (
	MLDSA KeyType = "ML-DSA"
	MLKEM KeyType = "ML-KEM"
)

// Parameter sets, as JWK crv values.
const (
	MLDSA44   Curve = "ML-DSA-44"
	MLDSA65   Curve = "ML-DSA-65"
	MLDSA87   Curve = "ML-DSA-87"
	MLKEM768  Curve = "ML-KEM-768"
	MLKEM1024 Curve = "ML-KEM-1024"
)

const formMLDSA, formMLKEM = "ml-dsa", "ml-kem" // sealed forms: the seed

// mldsaScheme returns the scheme of an ML-DSA parameter set and its
// hedged signing function.
func mldsaScheme(set Curve) (sign.Scheme, func(sk sign.PrivateKey, msg, sig []byte) error, bool) {
	switch set {
	case MLDSA44:
		return mldsa44.Scheme(), func(sk sign.PrivateKey, msg, sig []byte) error {
			return mldsa44.SignTo(sk.(*mldsa44.PrivateKey), msg, nil, true, sig)
		}, true
	case MLDSA65:
		return mldsa65.Scheme(), func(sk sign.PrivateKey, msg, sig []byte) error {
			return mldsa65.SignTo(sk.(*mldsa65.PrivateKey), msg, nil, true, sig)
		}, true
	case MLDSA87:
		return mldsa87.Scheme(), func(sk sign.PrivateKey, msg, sig []byte) error {
			return mldsa87.SignTo(sk.(*mldsa87.PrivateKey), msg, nil, true, sig)
		}, true
	}
	return nil, nil, false
}

// mldsaKey is an ML-DSA key.
type mldsaKey struct {
	set    Curve
	scheme sign.Scheme
	sign   func(sk sign.PrivateKey, msg, sig []byte) error
	seed   []byte
	priv   sign.PrivateKey
	pub    []byte
}

var _ Key = (*mldsaKey)(nil)

// GenerateMLDSA creates an ML-DSA key of parameter set ML-DSA-44, -65 or -87.
func GenerateMLDSA(rand io.Reader, set Curve) (Key, error) {
	scheme, _, ok := mldsaScheme(set)
	if !ok {
		return nil, fault.Invalidf("unknown ML-DSA parameter set %q: use ML-DSA-44, ML-DSA-65 or ML-DSA-87", set)
	}
	if err := fipsMLDSA(); err != nil {
		return nil, err
	}
	seed := make([]byte, scheme.SeedSize())
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("kcrypto: generating %s key: %w", set, err)
	}
	return mldsaFromSeed(set, seed)
}

func mldsaFromSeed(set Curve, seed []byte) (Key, error) {
	scheme, signTo, ok := mldsaScheme(set)
	if !ok {
		return nil, fmt.Errorf("kcrypto: unknown ML-DSA parameter set %q", set)
	}
	if len(seed) != scheme.SeedSize() {
		return nil, fmt.Errorf("kcrypto: an %s seed must be %d bytes", set, scheme.SeedSize())
	}
	pk, sk := scheme.DeriveKey(seed)
	pub, err := pk.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("kcrypto: encoding an %s public key: %w", set, err)
	}
	return &mldsaKey{set: set, scheme: scheme, sign: signTo, seed: append([]byte(nil), seed...), priv: sk, pub: pub}, nil
}

func (k *mldsaKey) Type() KeyType      { return MLDSA }
func (k *mldsaKey) Size() int          { return 0 }
func (k *mldsaKey) Curve() Curve       { return k.set }
func (k *mldsaKey) Public() JSONWebKey { return JSONWebKey{Kty: MLDSA, Crv: k.set, Pub: k.pub} }

// wrongParameterSet refuses an algorithm other than a post-quantum key's
// one, its parameter set.
func wrongParameterSet(alg Algorithm, set Curve) error {
	return ErrUnsupportedAlgorithm.With("algorithm %q is not valid for this %s key: its algorithm is %s", alg, set, set)
}

// maxMessage bounds what an ML-DSA key signs in one request.
const maxMessage = 64 << 10

// Sign signs msg itself (not a digest), with the parameter set as alg.
func (k *mldsaKey) Sign(_ io.Reader, alg Algorithm, msg []byte) ([]byte, error) {
	if alg != Algorithm(k.set) {
		return nil, wrongParameterSet(alg, k.set)
	}
	if err := fipsMLDSA(); err != nil {
		return nil, err
	}
	if len(msg) > maxMessage {
		return nil, fault.Invalidf("an %s key signs at most %d bytes", k.set, maxMessage)
	}
	sig := make([]byte, k.scheme.SignatureSize())
	if err := k.sign(k.priv, msg, sig); err != nil {
		return nil, fmt.Errorf("kcrypto: %s signature: %w", k.set, err)
	}
	return sig, nil
}

func (k *mldsaKey) Verify(alg Algorithm, msg, sig []byte) (bool, error) {
	if alg != Algorithm(k.set) {
		return false, wrongParameterSet(alg, k.set)
	}
	if err := fipsMLDSA(); err != nil {
		return false, err
	}
	return VerifyMLDSA(k.set, k.pub, msg, sig)
}

// VerifyMLDSA checks a pure ML-DSA signature with an empty context, as any
// FIPS 204 verifier does, for a public key in FIPS 204's encoding.
func VerifyMLDSA(set Curve, pub, msg, sig []byte) (bool, error) {
	scheme, _, ok := mldsaScheme(set)
	if !ok {
		return false, fault.Invalidf("unknown ML-DSA parameter set %q", set)
	}
	pk, err := scheme.UnmarshalBinaryPublicKey(pub)
	if err != nil {
		return false, fault.Invalidf("not an %s public key", set)
	}
	if len(sig) != scheme.SignatureSize() {
		return false, nil
	}
	return scheme.Verify(pk, msg, sig, nil), nil
}

func (k *mldsaKey) Encrypt(_ io.Reader, alg Algorithm, _ Sealed) (Sealed, error) {
	return Sealed{}, unsupported(alg, MLDSA)
}
func (k *mldsaKey) Decrypt(alg Algorithm, _ Sealed) ([]byte, error) {
	return nil, unsupported(alg, MLDSA)
}
func (k *mldsaKey) WrapKey(_ io.Reader, alg Algorithm, _ []byte) ([]byte, error) {
	return nil, unsupported(alg, MLDSA)
}
func (k *mldsaKey) UnwrapKey(alg Algorithm, _ []byte) ([]byte, error) {
	return nil, unsupported(alg, MLDSA)
}

func (k *mldsaKey) marshalPrivate() (sealedForm, error) {
	return sealedForm{Form: formMLDSA, Set: string(k.set), Bytes: append([]byte(nil), k.seed...)}, nil
}

// mlkemKey is an ML-KEM decapsulation key, 768 or 1024.
type mlkemKey struct {
	set  Curve
	seed []byte // d‖z, 64 bytes
	dk   interface {
		Decapsulate(ciphertext []byte) ([]byte, error)
	}
	ek          []byte
	encapsulate func() (shared, ciphertext []byte)
	ctSize      int
}

var _ Key = (*mlkemKey)(nil)

// GenerateMLKEM creates an ML-KEM key of parameter set ML-KEM-768 or -1024.
func GenerateMLKEM(rand io.Reader, set Curve) (Key, error) {
	if set != MLKEM768 && set != MLKEM1024 {
		return nil, fault.Invalidf("unknown ML-KEM parameter set %q: use ML-KEM-768 or ML-KEM-1024", set)
	}
	seed := make([]byte, mlkem.SeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("kcrypto: generating %s key: %w", set, err)
	}
	return mlkemFromSeed(set, seed)
}

func mlkemFromSeed(set Curve, seed []byte) (Key, error) {
	k := &mlkemKey{set: set, seed: append([]byte(nil), seed...)}
	switch set {
	case MLKEM768:
		dk, err := mlkem.NewDecapsulationKey768(seed)
		if err != nil {
			return nil, fmt.Errorf("kcrypto: %s key: %w", set, err)
		}
		ek := dk.EncapsulationKey()
		k.dk, k.ek, k.ctSize, k.encapsulate = dk, ek.Bytes(), mlkem.CiphertextSize768, ek.Encapsulate
	case MLKEM1024:
		dk, err := mlkem.NewDecapsulationKey1024(seed)
		if err != nil {
			return nil, fmt.Errorf("kcrypto: %s key: %w", set, err)
		}
		ek := dk.EncapsulationKey()
		k.dk, k.ek, k.ctSize, k.encapsulate = dk, ek.Bytes(), mlkem.CiphertextSize1024, ek.Encapsulate
	default:
		return nil, fmt.Errorf("kcrypto: unknown ML-KEM parameter set %q", set)
	}
	return k, nil
}

func (k *mlkemKey) Type() KeyType      { return MLKEM }
func (k *mlkemKey) Size() int          { return 0 }
func (k *mlkemKey) Curve() Curve       { return k.set }
func (k *mlkemKey) Public() JSONWebKey { return JSONWebKey{Kty: MLKEM, Crv: k.set, Pub: k.ek} }

func (k *mlkemKey) Sign(_ io.Reader, alg Algorithm, _ []byte) ([]byte, error) {
	return nil, unsupported(alg, MLKEM)
}
func (k *mlkemKey) Verify(alg Algorithm, _, _ []byte) (bool, error) {
	return false, unsupported(alg, MLKEM)
}
func (k *mlkemKey) Encrypt(_ io.Reader, alg Algorithm, _ Sealed) (Sealed, error) {
	return Sealed{}, unsupported(alg, MLKEM)
}
func (k *mlkemKey) Decrypt(alg Algorithm, _ Sealed) ([]byte, error) {
	return nil, unsupported(alg, MLKEM)
}

// WrapKey encapsulates a fresh shared secret to the key and wraps key
// under it: the KEM ciphertext, then AES-256-KW(secret, key). (crypto/mlkem
// draws its own randomness.)
func (k *mlkemKey) WrapKey(_ io.Reader, alg Algorithm, key []byte) ([]byte, error) {
	if alg != Algorithm(k.set) {
		return nil, wrongParameterSet(alg, k.set)
	}
	if err := fipsAESKeyWrap("Wrapping with " + string(k.set)); err != nil {
		return nil, err
	}
	if len(key) < 16 || len(key)%8 != 0 || len(key) > 4096 {
		return nil, fault.Invalidf("%s wraps a key of 16 to 4096 bytes in multiples of 8, got %d", k.set, len(key))
	}
	shared, ct := k.encapsulate()
	wrapped, err := wrapWithSecret(shared, key)
	if err != nil {
		return nil, err
	}
	return append(ct, wrapped...), nil
}

func (k *mlkemKey) UnwrapKey(alg Algorithm, wrapped []byte) ([]byte, error) {
	if alg != Algorithm(k.set) {
		return nil, wrongParameterSet(alg, k.set)
	}
	if err := fipsAESKeyWrap("Unwrapping with " + string(k.set)); err != nil {
		return nil, err
	}
	if len(wrapped) < k.ctSize+24 || (len(wrapped)-k.ctSize)%8 != 0 {
		return nil, ErrDecryption
	}
	// Decapsulation never fails for a well-sized ciphertext (implicit
	// rejection): a wrong one gives another secret, and the key wrap's
	// integrity check refuses it.
	shared, err := k.dk.Decapsulate(wrapped[:k.ctSize])
	if err != nil {
		return nil, ErrDecryption
	}
	return unwrapWithSecret(shared, wrapped[k.ctSize:])
}

func (k *mlkemKey) marshalPrivate() (sealedForm, error) {
	return sealedForm{Form: formMLKEM, Set: string(k.set), Bytes: append([]byte(nil), k.seed...)}, nil
}

// wrapWithSecret wraps key with AES-256 key wrap under a 32-byte secret.
func wrapWithSecret(secret, key []byte) ([]byte, error) {
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, fmt.Errorf("kcrypto: %w", err)
	}
	return jose.KeyWrap(block, key)
}

func unwrapWithSecret(secret, wrapped []byte) ([]byte, error) {
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, ErrDecryption
	}
	out, err := jose.KeyUnwrap(block, wrapped)
	if err != nil {
		return nil, ErrDecryption
	}
	return out, nil
}

// importPQ builds a post-quantum key from its seed (the JWK's "seed",
// the private form the ML-DSA and ML-KEM JOSE drafts use), checking the
// public key when the JWK has one.
func importPQ(j JSONWebKey) (Key, error) {
	if len(j.Seed) == 0 {
		return nil, fault.Invalidf("an %s key to import needs its seed", j.Kty)
	}
	var k Key
	var err error
	switch {
	case j.Kty == MLDSA:
		if _, _, ok := mldsaScheme(j.Crv); !ok {
			return nil, fault.Invalidf("unknown ML-DSA parameter set %q: use ML-DSA-44, ML-DSA-65 or ML-DSA-87", j.Crv)
		}
		if err := fipsMLDSA(); err != nil {
			return nil, err
		}
		k, err = mldsaFromSeed(j.Crv, j.Seed)
	case j.Crv == MLKEM768 || j.Crv == MLKEM1024:
		k, err = mlkemFromSeed(j.Crv, j.Seed)
	default:
		return nil, fault.Invalidf("unknown ML-KEM parameter set %q: use ML-KEM-768 or ML-KEM-1024", j.Crv)
	}
	if err != nil {
		return nil, fault.Invalidf("the %s seed is invalid", j.Crv)
	}
	if len(j.Pub) > 0 && !bytes.Equal(j.Pub, k.Public().Pub) {
		return nil, fault.Invalidf("the public key does not match the seed")
	}
	return k, nil
}
