// Package kcrypto performs the cryptographic operations of Managed HSM keys:
// generation, import from a JSON Web Key, signing, verification, encryption,
// decryption and key wrapping, over RSA, elliptic-curve and AES keys.
//
// A Key is a handle: callers get signatures, ciphertexts and public parts out
// of it, never private material. The one exception is MarshalPrivate, whose
// output the keys package seals under the HSM's domain key before it is
// stored; nothing else may call it.
//
// Every primitive comes from the Go standard library, except secp256k1
// (github.com/decred/dcrd/dcrec/secp256k1) and AES key wrap, RFC 3394
// (github.com/go-jose/go-jose/v4/cipher). Algorithms are named as in JSON
// Web Algorithms and the Azure Key Vault REST API.
package kcrypto
