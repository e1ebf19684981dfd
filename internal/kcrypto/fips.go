package kcrypto

import (
	"crypto/fips140"

	"github.com/keyward/keyward/internal/fault"
)

// ErrFIPS refuses, in FIPS 140-3 mode, what Go's FIPS 140-3 module does
// not implement or does not approve. Its message names FIPS mode and says
// what to use instead.
var ErrFIPS = fault.New(fault.Invalid, "BadParameter", "This is not available in FIPS 140-3 mode.")

// FIPSMode reports whether the process runs Go's FIPS 140-3 module with
// strict enforcement (GODEBUG=fips140=only, as keyward serve --fips sets).
// It is process state fixed at start, read from the runtime.
func FIPSMode() bool { return fips140.Enforced() }

// FIPSModuleVersion names the Go Cryptographic Module in use: a frozen,
// validated version (such as "v1.0.0") when built with GOFIPS140, else
// "latest", the module's source in this Go release.
func FIPSModuleVersion() string { return fips140.Version() }

// refuseInFIPS returns ErrFIPS for what, with why and what to use instead,
// when the process is in FIPS mode; nil otherwise.
func refuseInFIPS(what, why string) error {
	if !FIPSMode() {
		return nil
	}
	return ErrFIPS.With("%s is not available in FIPS 140-3 mode: %s", what, why)
}

// The refusals, one per thing outside the module.
func fipsSecp256k1() error {
	return refuseInFIPS("P-256K (secp256k1)", "it is not a FIPS 186-5 curve; use P-256, P-384 or P-521")
}

func fipsMLDSA() error {
	return refuseInFIPS("ML-DSA", "Go's FIPS 140-3 module has no ML-DSA that Keyward can call, and cloudflare/circl's is outside the module; use ECDSA or RSA keys")
}

func fipsAESKeyWrap(what string) error {
	return refuseInFIPS(what, "AES key wrap (RFC 3394, RFC 5649) is not part of Go's FIPS 140-3 module; use A256GCM, or RSA-OAEP-256 with an RSA key")
}

// Why BYOK and key release are outside the module, and what to use instead.
const (
	transferOutside = "BYOK's CKM_RSA_AES_KEY_WRAP uses RSA-OAEP with SHA-1 and AES key wrap with padding, neither in Go's FIPS 140-3 module; import the key's JWK over TLS instead (key import --pem-file)"
	releaseOutside  = "a released key is wrapped with AES key wrap with padding (CKM_RSA_AES_KEY_WRAP), which is not part of Go's FIPS 140-3 module; keep the key in the HSM and wrap data keys with it (RSA-OAEP-256, A256GCM) instead"
)

// TransferAvailable refuses, in FIPS mode, a BYOK transfer blob
// (CKM_RSA_AES_KEY_WRAP): it is opened outside the module.
func TransferAvailable() error { return refuseInFIPS("CKM_RSA_AES_KEY_WRAP (BYOK)", transferOutside) }

// KeyExchangeKeysAvailable refuses, in FIPS mode, a key-exchange key (a
// key whose operation is import): what it opens, BYOK's transfer blobs,
// is outside the module, so the key could never be used.
func KeyExchangeKeysAvailable() error {
	return refuseInFIPS("A key-exchange key (import)", transferOutside)
}

// ReleaseAvailable refuses, in FIPS mode, an exportable key: it could
// never be released (see WrapForRelease).
func ReleaseAvailable() error {
	return refuseInFIPS("An exportable key (secure key release)", releaseOutside)
}

func fipsRSAEncryption(alg Algorithm) error {
	switch alg {
	case "RSA-OAEP":
		return refuseInFIPS("RSA-OAEP", "it uses SHA-1; use RSA-OAEP-256")
	case "RSA1_5":
		return refuseInFIPS("RSA1_5", "RSA PKCS#1 v1.5 encryption is not approved; use RSA-OAEP-256")
	}
	return nil
}
