package kcrypto

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"io"

	"github.com/tink-crypto/tink-go/v2/kwp/subtle"

	"github.com/keyward/keyward/internal/fault"
)

// Secure key release sends a key to an attested workload under the
// workload's RSA key, as BYOK sends one to an HSM: CKM_RSA_AES_KEY_WRAP,
// an ephemeral AES-256 key under RSA-OAEP followed by the key under AES key
// wrap with padding (RFC 5649). The release request's enc names the OAEP
// hash: SHA-1 for CKM_RSA_AES_KEY_WRAP (PKCS#11's default),
// SHA-256 and SHA-384 for RSA_AES_KEY_WRAP_256 and _384.
var releaseHashes = map[string]func() hash.Hash{
	"CKM_RSA_AES_KEY_WRAP": sha1.New,
	"RSA_AES_KEY_WRAP_256": sha256.New,
	"RSA_AES_KEY_WRAP_384": sha512.New384,
}

// DefaultReleaseEnc is the wrapping a release request gets without enc.
const DefaultReleaseEnc = "CKM_RSA_AES_KEY_WRAP"

// Releasable tells whether keys of type kty on curve crv can be exported
// by key release: Azure's RSA, EC on NIST curves and AES keys, whose
// private form is PKCS#8 or the AES key's bytes.
func Releasable(kty KeyType, crv Curve) bool {
	switch kty {
	case RSA, Oct:
		return true
	case EC:
		_, nist := nistCurve(crv)
		return nist || crv == ""
	}
	return false
}

// WrapForRelease wraps k's private material for target with enc: the
// PKCS#8 DER of an RSA or EC key, an AES key's bytes.
func WrapForRelease(rand io.Reader, k Key, target *rsa.PublicKey, enc string) ([]byte, error) {
	newHash, ok := releaseHashes[enc]
	if !ok {
		return nil, fault.Invalidf("enc must be CKM_RSA_AES_KEY_WRAP, RSA_AES_KEY_WRAP_256 or RSA_AES_KEY_WRAP_384, not %q", enc)
	}
	if err := refuseInFIPS("Key release ("+enc+")", releaseOutside); err != nil {
		return nil, err
	}
	f, err := k.marshalPrivate()
	if err != nil {
		return nil, err
	}
	defer clear(f.Bytes)
	if f.Form != formPKCS8 && f.Form != formAES {
		return nil, fault.Invalidf("keys of type %s cannot be released", k.Type())
	}
	aesKey := make([]byte, 32)
	defer clear(aesKey)
	if _, err := io.ReadFull(rand, aesKey); err != nil {
		return nil, fmt.Errorf("kcrypto: reading a wrapping key: %w", err)
	}
	return rsaAESKeyWrap(newHash, rand, target, aesKey, f.Bytes)
}

// rsaAESKeyWrap is CKM_RSA_AES_KEY_WRAP: RSA-OAEP(aesKey) || KWP(aesKey, target).
func rsaAESKeyWrap(newHash func() hash.Hash, rand io.Reader, to *rsa.PublicKey, aesKey, target []byte) ([]byte, error) {
	enc, err := rsa.EncryptOAEP(newHash(), rand, to, aesKey, nil)
	if err != nil {
		return nil, fmt.Errorf("kcrypto: encrypting the wrapping key: %w", err)
	}
	kwp, err := subtle.NewKWP(aesKey)
	if err != nil {
		return nil, fmt.Errorf("kcrypto: %w", err)
	}
	wrapped, err := kwp.Wrap(target)
	if err != nil {
		return nil, fmt.Errorf("kcrypto: wrapping the key: %w", err)
	}
	return append(enc, wrapped...), nil
}
