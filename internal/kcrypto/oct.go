package kcrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"fmt"
	"io"
	"slices"

	jose "github.com/go-jose/go-jose/v4/cipher"

	"github.com/keyward/keyward/internal/fault"
)

// octKey is an AES key. The block cipher and its GCM mode are built once:
// building them per call costs more than the operation itself. GCM draws
// its own nonces (NewGCMWithRandomNonce): the only GCM FIPS 140-3 mode
// approves, and a caller-chosen nonce is refused anyway.
type octKey struct {
	raw   []byte
	block cipher.Block
	gcm   cipher.AEAD
}

var _ Key = (*octKey)(nil)

const (
	gcmNonceSize = 12
	gcmTagSize   = 16
)

// GenerateOct creates an AES key of 128, 192 or 256 bits.
func GenerateOct(rand io.Reader, bits int) (Key, error) {
	if bits != 128 && bits != 192 && bits != 256 {
		return nil, fault.Invalidf("oct key size must be 128, 192 or 256, got %d", bits)
	}
	raw := make([]byte, bits/8)
	if _, err := io.ReadFull(rand, raw); err != nil {
		return nil, fmt.Errorf("kcrypto: generating AES key: %w", err)
	}
	return newOct(raw)
}

func newOct(raw []byte) (*octKey, error) {
	switch len(raw) {
	case 16, 24, 32:
	default:
		return nil, fault.Invalidf("oct key size must be 128, 192 or 256 bits, got %d", len(raw)*8)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("kcrypto: %w", err)
	}
	gcm, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("kcrypto: %w", err)
	}
	return &octKey{raw: raw, block: block, gcm: gcm}, nil
}

func (k *octKey) Type() KeyType      { return Oct }
func (k *octKey) Size() int          { return len(k.raw) * 8 }
func (k *octKey) Curve() Curve       { return "" }
func (k *octKey) Public() JSONWebKey { return JSONWebKey{Kty: Oct} }

// aesMode splits an AES algorithm name into its key size and mode.
func aesMode(alg Algorithm) (bits int, mode string, ok bool) {
	switch alg {
	case "A128GCM", "A192GCM", "A256GCM":
		mode = "GCM"
	case "A128CBC", "A192CBC", "A256CBC":
		mode = "CBC"
	case "A128CBCPAD", "A192CBCPAD", "A256CBCPAD":
		mode = "CBCPAD"
	case "A128KW", "A192KW", "A256KW":
		mode = "KW"
	case "CKM_AES_KEY_WRAP":
		return 0, "KW", true // any key size
	default:
		return 0, "", false
	}
	fmt.Sscanf(string(alg[1:4]), "%d", &bits)
	return bits, mode, true
}

// checkMode resolves alg for this key and refuses modes outside allowed.
func (k *octKey) checkMode(alg Algorithm, allowed ...string) (string, error) {
	bits, mode, ok := aesMode(alg)
	if !ok {
		return "", unsupported(alg, Oct)
	}
	if bits != 0 && bits != k.Size() {
		return "", ErrUnsupportedAlgorithm.With("algorithm %q needs a %d-bit key; this key has %d bits", alg, bits, k.Size())
	}
	for _, m := range allowed {
		if m == mode {
			return mode, nil
		}
	}
	return "", ErrUnsupportedAlgorithm.With("algorithm %q is not valid for this operation", alg)
}

// Encrypt uses a fresh random 96-bit nonce for GCM: a caller-chosen IV is
// refused, since one repeated nonce breaks GCM. CBC takes the caller's IV,
// or a random one when none is given; the IV used is returned.
func (k *octKey) Encrypt(rand io.Reader, alg Algorithm, in Sealed) (Sealed, error) {
	mode, err := k.checkMode(alg, "GCM", "CBC", "CBCPAD")
	if err != nil {
		return Sealed{}, err
	}
	if mode == "GCM" {
		if len(in.IV) != 0 {
			return Sealed{}, fault.Invalidf("%s generates its own IV; do not send one", alg)
		}
		out := k.gcm.Seal(nil, nil, in.Value, in.AAD) // nonce || ct || tag
		cut := len(out) - gcmTagSize
		return Sealed{Value: out[gcmNonceSize:cut], Tag: out[cut:], IV: out[:gcmNonceSize], AAD: in.AAD}, nil
	}
	iv := in.IV
	if len(iv) == 0 {
		iv = make([]byte, aes.BlockSize)
		if _, err := io.ReadFull(rand, iv); err != nil {
			return Sealed{}, fmt.Errorf("kcrypto: reading IV: %w", err)
		}
	}
	if len(iv) != aes.BlockSize {
		return Sealed{}, fault.Invalidf("the IV for %s must be %d bytes", alg, aes.BlockSize)
	}
	pt := in.Value
	if mode == "CBCPAD" {
		pt = pkcs7Pad(pt)
	} else if len(pt)%aes.BlockSize != 0 || len(pt) == 0 {
		return Sealed{}, fault.Invalidf("the plaintext for %s must be a non-empty multiple of %d bytes; use %sPAD to pad", alg, aes.BlockSize, alg)
	}
	out := make([]byte, len(pt))
	cipher.NewCBCEncrypter(k.block, iv).CryptBlocks(out, pt)
	return Sealed{Value: out, IV: iv}, nil
}

func (k *octKey) Decrypt(alg Algorithm, in Sealed) ([]byte, error) {
	mode, err := k.checkMode(alg, "GCM", "CBC", "CBCPAD")
	if err != nil {
		return nil, err
	}
	if mode == "GCM" {
		if len(in.IV) != gcmNonceSize {
			return nil, fault.Invalidf("the IV for %s must be %d bytes", alg, gcmNonceSize)
		}
		if len(in.Tag) != gcmTagSize {
			return nil, fault.Invalidf("the authentication tag for %s must be %d bytes", alg, gcmTagSize)
		}
		sealed := slices.Concat(in.IV, in.Value, in.Tag)
		pt, err := k.gcm.Open(nil, nil, sealed, in.AAD)
		if err != nil {
			return nil, ErrDecryption
		}
		return pt, nil
	}
	if len(in.IV) != aes.BlockSize {
		return nil, fault.Invalidf("the IV for %s must be %d bytes", alg, aes.BlockSize)
	}
	if len(in.Value) == 0 || len(in.Value)%aes.BlockSize != 0 {
		return nil, fault.Invalidf("the ciphertext for %s must be a non-empty multiple of %d bytes", alg, aes.BlockSize)
	}
	out := make([]byte, len(in.Value))
	cipher.NewCBCDecrypter(k.block, in.IV).CryptBlocks(out, in.Value)
	if mode == "CBCPAD" {
		return pkcs7Unpad(out)
	}
	return out, nil
}

func (k *octKey) WrapKey(_ io.Reader, alg Algorithm, key []byte) ([]byte, error) {
	if _, err := k.checkMode(alg, "KW"); err != nil {
		return nil, err
	}
	if err := fipsAESKeyWrap(string(alg)); err != nil {
		return nil, err
	}
	if len(key) < 16 || len(key)%8 != 0 {
		return nil, fault.Invalidf("AES key wrap needs a key of at least 16 bytes in multiples of 8, got %d", len(key))
	}
	return jose.KeyWrap(k.block, key)
}

func (k *octKey) UnwrapKey(alg Algorithm, wrapped []byte) ([]byte, error) {
	if _, err := k.checkMode(alg, "KW"); err != nil {
		return nil, err
	}
	if err := fipsAESKeyWrap(string(alg)); err != nil {
		return nil, err
	}
	if len(wrapped) < 24 || len(wrapped)%8 != 0 {
		return nil, ErrDecryption
	}
	out, err := jose.KeyUnwrap(k.block, wrapped)
	if err != nil {
		return nil, ErrDecryption
	}
	return out, nil
}

func (k *octKey) Sign(_ io.Reader, alg Algorithm, _ []byte) ([]byte, error) {
	return nil, unsupported(alg, Oct)
}
func (k *octKey) Verify(alg Algorithm, _, _ []byte) (bool, error) {
	return false, unsupported(alg, Oct)
}

func (k *octKey) marshalPrivate() (sealedForm, error) {
	return sealedForm{Form: formAES, Bytes: append([]byte(nil), k.raw...)}, nil
}

func pkcs7Pad(b []byte) []byte {
	n := aes.BlockSize - len(b)%aes.BlockSize
	out := make([]byte, len(b)+n)
	copy(out, b)
	for i := len(b); i < len(out); i++ {
		out[i] = byte(n)
	}
	return out
}

// pkcs7Unpad checks the padding of the last block in constant time, so that
// the time taken does not reveal where the padding went wrong.
func pkcs7Unpad(b []byte) ([]byte, error) {
	n := b[len(b)-1]
	good := subtle.ConstantTimeLessOrEq(1, int(n)) & subtle.ConstantTimeLessOrEq(int(n), aes.BlockSize)
	last := b[len(b)-aes.BlockSize:]
	for i := 0; i < aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(aes.BlockSize-int(n), i)
		match := subtle.ConstantTimeByteEq(last[i], n)
		good &= match | (inPad ^ 1)
	}
	if good != 1 {
		return nil, ErrDecryption
	}
	return b[:len(b)-int(n)], nil
}
