// Package domain holds the key hierarchy of an HSM.
//
// Each HSM has a 256-bit domain key. Every key version's private material
// is encrypted under it with AES-256-GCM, bound by additional data to the
// security domain, the key name and the version, so a sealed blob cannot
// be moved to another key. The domain key itself rests sealed by the node's
// Seal: a key file in the data directory in development, a PKCS#11 token in
// production. The security domain (a Shamir split of the domain key to
// custodians) builds on this package.
package domain

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// Seal protects secrets at rest on one node.
type Seal interface {
	// Seal encrypts plaintext, binding it to aad.
	Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	// Open decrypts what Seal produced with the same aad.
	Open(ctx context.Context, sealed, aad []byte) ([]byte, error)
}

// ErrOpen is returned when a sealed blob does not authenticate: it was
// altered, or sealed under another key or for other additional data.
var ErrOpen = errors.New("domain: sealed data does not authenticate")

// sealVersion prefixes every blob, so the format can change later.
const sealVersion = 1

// aeadBox seals with AES-256-GCM and random 96-bit nonces drawn by the
// cipher itself: version || nonce || ct. A nonce the module draws is the
// only GCM FIPS 140-3 approves, and its output is the same layout.
type aeadBox struct {
	aead cipher.AEAD
}

func newBox(key []byte) (aeadBox, error) {
	if len(key) != 32 {
		return aeadBox{}, fmt.Errorf("domain: key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return aeadBox{}, fmt.Errorf("domain: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return aeadBox{}, fmt.Errorf("domain: %w", err)
	}
	return aeadBox{aead: aead}, nil
}

func (b aeadBox) seal(plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, 1, 1+len(plaintext)+b.aead.Overhead())
	out[0] = sealVersion
	return b.aead.Seal(out, nil, plaintext, aad), nil
}

func (b aeadBox) open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1+b.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrOpen
	}
	pt, err := b.aead.Open(nil, nil, sealed[1:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// Key is an HSM's domain key. Its bytes never leave the package except
// sealed (SealKey) or, later, split into a security domain.
type Key struct {
	raw []byte
	box aeadBox
}

// GenerateKey returns a fresh domain key.
func GenerateKey(rand io.Reader) (*Key, error) {
	raw := make([]byte, 32)
	if _, err := io.ReadFull(rand, raw); err != nil {
		return nil, fmt.Errorf("domain: generating domain key: %w", err)
	}
	return newKey(raw)
}

func newKey(raw []byte) (*Key, error) {
	box, err := newBox(raw)
	if err != nil {
		return nil, err
	}
	return &Key{raw: raw, box: box}, nil
}

// Encrypt seals plaintext under the domain key, bound to aad.
func (k *Key) Encrypt(plaintext, aad []byte) ([]byte, error) { return k.box.seal(plaintext, aad) }

// Decrypt opens what Encrypt produced. It returns ErrOpen on any mismatch.
func (k *Key) Decrypt(sealed, aad []byte) ([]byte, error) { return k.box.open(sealed, aad) }

// domainKeyAAD binds a sealed domain key to its security domain.
func domainKeyAAD(domainID string) []byte { return []byte("keyward domain key\x00" + domainID) }

// SealKey seals k with the node seal for storage.
func SealKey(ctx context.Context, s Seal, k *Key, domainID string) ([]byte, error) {
	return s.Seal(ctx, k.raw, domainKeyAAD(domainID))
}

// OpenKey opens a domain key sealed by SealKey.
func OpenKey(ctx context.Context, s Seal, sealed []byte, domainID string) (*Key, error) {
	raw, err := s.Open(ctx, sealed, domainKeyAAD(domainID))
	if err != nil {
		return nil, fmt.Errorf("domain: opening the domain key of %s: %w", domainID, err)
	}
	return newKey(raw)
}
