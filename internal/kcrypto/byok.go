package kcrypto

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"errors"
	"io"

	"github.com/tink-crypto/tink-go/v2/kwp/subtle"

	"github.com/keyward/keyward/internal/fault"
)

// BYOK: a key moved from another HSM without its plaintext leaving one,
// as Azure's "Bring your own key specification" (learn.microsoft.com/
// azure/key-vault/keys/byok-specification) describes it. The key-exchange
// key (KEK) is an RSA key of this HSM whose only operation is import. The
// other HSM sends the target key under PKCS#11's CKM_RSA_AES_KEY_WRAP:
//
//	an ephemeral AES key, encrypted to the KEK with RSA-OAEP and SHA-1
//	(the mechanism's default, as the specification says), followed by
//	the target key wrapped under that AES key with AES key wrap with
//	padding (RFC 5649)
//
// where the target key is its PKCS#8 DER for RSA and EC keys, and its raw
// bytes for an AES (oct) key. AES key wrap with padding is Tink's.

// ErrTransferBlob is a key transfer blob that does not open with its KEK:
// for another KEK, altered, or not CKM_RSA_AES_KEY_WRAP. It says no more,
// so that it cannot serve as an oracle.
var ErrTransferBlob = fault.New(fault.Invalid, "BadParameter",
	"The key transfer blob (key_hsm) could not be unwrapped with its key-exchange key: it is for another KEK, altered, or not CKM_RSA_AES_KEY_WRAP.")

// OpenTransferBlob unwraps the target key of ciphertext with kek and
// returns it as a key of type kty (and curve crv, for EC keys).
func OpenTransferBlob(kek Key, ciphertext []byte, kty KeyType, crv Curve) (Key, error) {
	rk, ok := kek.(*rsaKey)
	if !ok {
		return nil, fault.Invalidf("a key-exchange key must be an RSA key")
	}
	if err := TransferAvailable(); err != nil {
		return nil, err
	}
	n := rk.priv.Size()
	if len(ciphertext) < n+24 {
		return nil, ErrTransferBlob
	}
	aesKey, err := rsa.DecryptOAEP(sha1.New(), nil, rk.priv, ciphertext[:n], nil)
	if err != nil {
		return nil, ErrTransferBlob
	}
	kwp, err := subtle.NewKWP(aesKey)
	if err != nil {
		return nil, ErrTransferBlob
	}
	plain, err := kwp.Unwrap(ciphertext[n:])
	if err != nil {
		return nil, ErrTransferBlob
	}
	defer clear(plain)
	switch kty {
	case Oct:
		if _, err := x509.ParsePKCS8PrivateKey(plain); err == nil {
			return nil, fault.Invalidf("the transferred key is a PKCS#8 private key (RSA or EC), not an AES key: import it as RSA-HSM or EC-HSM (az: --kty RSA or EC)")
		}
		return newOct(append([]byte(nil), plain...))
	case RSA, EC:
		parsed, err := x509.ParsePKCS8PrivateKey(plain)
		if err != nil {
			return nil, fault.Invalidf("the transferred key is not a PKCS#8 private key (secp256k1 keys cannot be transferred yet)")
		}
		var k Key
		switch p := parsed.(type) {
		case *rsa.PrivateKey:
			if kty != RSA {
				return nil, fault.Invalidf("the transferred key is an RSA key, not %s: import it as RSA-HSM (az: --kty RSA)", kty)
			}
			if !rsaSizes[p.N.BitLen()] {
				return nil, fault.Invalidf("RSA key size must be 2048, 3072 or 4096, got %d", p.N.BitLen())
			}
			p.Precompute()
			k = &rsaKey{p}
		case *ecdsa.PrivateKey:
			if kty != EC {
				return nil, fault.Invalidf("the transferred key is an EC key, not %s: import it as EC-HSM (az: --kty EC)", kty)
			}
			for c := range curveAlgorithm {
				if ec, ok := nistCurve(c); ok && ec == p.Curve {
					k = &ecKey{priv: p, curve: c}
				}
			}
			if k == nil {
				return nil, fault.Invalidf("the transferred EC key is on a curve Managed HSM does not offer")
			}
			if crv != "" && crv != k.Curve() {
				return nil, fault.Invalidf("the transferred key is on %s, not %s", k.Curve(), crv)
			}
		default:
			return nil, fault.Invalidf("the transferred key is of a type Managed HSM does not offer")
		}
		return k, nil
	}
	return nil, fault.Invalidf("keys of type %s cannot be transferred", kty)
}

// IsTransferBlobError tells whether err is a transfer blob that did not open.
func IsTransferBlobError(err error) bool { return errors.Is(err, ErrTransferBlob) }

// SealTransferBlob makes a key transfer blob of target (PKCS#8 DER, or an
// AES key's bytes) for a KEK's public key: what an HSM vendor's BYOK tool
// does, for `keyward byok`. aesKey is the ephemeral wrapping key (32 bytes).
func SealTransferBlob(rand io.Reader, kek *rsa.PublicKey, aesKey, target []byte) ([]byte, error) {
	if err := TransferAvailable(); err != nil {
		return nil, err
	}
	return rsaAESKeyWrap(sha1.New, rand, kek, aesKey, target)
}
