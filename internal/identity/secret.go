package identity

import (
	"context"
	"crypto/fips140"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/argon2"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// Two kinds of secret, two kinds of hash.
//
// A client secret is generated here with 180 random bits, so guessing it is
// hopeless whatever the hash; it is stored as HMAC-SHA-256 under a pepper
// that the node seal protects, and checked in constant time, as API-token
// issuers do. A secret also carries a key id (the first 48 bits of its
// credential's id), so one HMAC decides: a wrong secret costs a lookup and
// a hash of a few dozen bytes, never one slow hash per stored credential.
//
// A password is chosen by a person and may be weak, so it is stored as
// salted Argon2id. Each check costs 19 MiB and tens of milliseconds;
// Directory runs at most a few at once (see ErrBusy). In FIPS 140-3 mode
// Argon2id is outside Go's module, so new passwords are stored as
// PBKDF2-HMAC-SHA-512 (NIST SP 800-132), which is in it; hashes made
// before still check until the password changes.

// Argon2id parameters: OWASP's minimum recommendation (19 MiB, 2 passes).
// They are written into each hash, so raising them later keeps old hashes
// valid.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// PBKDF2 parameters for FIPS mode: OWASP's figure for HMAC-SHA-512.
const (
	pbkdf2Iterations = 210_000
	pbkdf2KeyLen     = 32
	// maxPBKDF2Iterations bounds a stored hash's work when it is checked.
	maxPBKDF2Iterations = 10_000_000
)

var b64 = base64.RawStdEncoding

// hashSecret returns a PHC-style hash of secret with a fresh salt:
// Argon2id, or PBKDF2-HMAC-SHA-512 in FIPS 140-3 mode.
func hashSecret(rand io.Reader, secret string) (string, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return "", fmt.Errorf("identity: reading salt: %w", err)
	}
	if fips140.Enforced() {
		sum, err := pbkdf2.Key(sha512.New, secret, salt, pbkdf2Iterations, pbkdf2KeyLen)
		if err != nil {
			return "", fmt.Errorf("identity: hashing a password: %w", err)
		}
		return fmt.Sprintf("$pbkdf2-sha512$i=%d$%s$%s", pbkdf2Iterations, b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
	}
	sum := argon2.IDKey([]byte(secret), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

// checkSecret reports whether secret matches the Argon2id or PBKDF2 hash
// encoded, in constant time with respect to the secret.
func checkSecret(encoded, secret string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) == 5 && parts[1] == "pbkdf2-sha512" {
		return checkPBKDF2(parts[2:], secret)
	}
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(secret), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// checkPBKDF2 checks secret against a PBKDF2 hash's "i=N", salt and sum.
func checkPBKDF2(parts []string, secret string) bool {
	var iter int
	if _, err := fmt.Sscanf(parts[0], "i=%d", &iter); err != nil || iter < 1 || iter > maxPBKDF2Iterations {
		return false
	}
	salt, err1 := b64.DecodeString(parts[1])
	want, err2 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got, err := pbkdf2.Key(sha512.New, secret, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when there is no password to check, so that
// a wrong user name costs as long as a wrong password: a hash of the kind
// hashSecret makes now.
func dummyHash() string {
	if fips140.Enforced() {
		return fmt.Sprintf("$pbkdf2-sha512$i=%d$c2FsdHNhbHRzYWx0c2FsdA$5mOe4WcV0o1cY3bQ0m1rGm2mW7fX4m3mV1Xl0f2g8kM", pbkdf2Iterations)
	}
	return dummyArgon2id
}

const dummyArgon2id = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$0YmhU7ZsoRfJ3UqV3f3Zx8mLqf7kK1X3cT2VXn0Qm5o"

// ErrBusy is returned when a password cannot be checked now because as many
// Argon2id hashes as the node allows are already running and none finished
// within the wait. The caller should retry after a second.
var ErrBusy = fault.New(fault.Unavailable, "temporarily_unavailable",
	"AADSTS90055: the token service is busy checking other sign-ins: retry after a second")

// maxSlowHashes bounds the Argon2id hashes running at once, whatever the
// number of cores, so memory stays under maxSlowHashes × 19 MiB.
const maxSlowHashes = 8

// slowHashWait is how long a password check waits for a hashing slot.
const slowHashWait = 2 * time.Second

// newSlots returns the hashing slots: half the cores (at least one, at
// most maxSlowHashes), so that a flood of sign-ins leaves the other half
// to everyone else.
func newSlots() chan struct{} {
	return make(chan struct{}, max(1, min(runtime.NumCPU()/2, maxSlowHashes)))
}

// slowCheck runs checkSecret(encoded, secret) in one of the directory's
// hashing slots. It returns ErrBusy when no slot frees up within
// slowHashWait or before ctx ends.
func (d *Directory) slowCheck(ctx context.Context, encoded, secret string) (bool, error) {
	var ok bool
	err := d.slow(ctx, func() { ok = checkSecret(encoded, secret) })
	return ok, err
}

func (d *Directory) slow(ctx context.Context, fn func()) error {
	t := time.NewTimer(slowHashWait)
	defer t.Stop()
	select {
	case d.slots <- struct{}{}:
	case <-t.C:
		return ErrBusy
	case <-ctx.Done():
		return ErrBusy
	}
	defer func() { <-d.slots }()
	d.slowHashes.Add(1)
	fn()
	return nil
}

// Client secret format: Entra's look, forty characters, three of them, "Q~",
// then the key id (8 characters) and 27 more random ones. Secrets issued
// before the key id existed are 42 characters long and hashed with Argon2id.
const (
	secretLen       = 40
	legacySecretLen = 42
	keyIDLen        = 8
	macPrefix       = "$hmac-sha256$"
)

var b64url = base64.RawURLEncoding

// keyIDOf returns the key id that a credential's secret carries: the first
// six bytes of its id (a random UUID) in base64url.
func keyIDOf(credentialID string) string {
	u, err := uuid.Parse(credentialID)
	if err != nil {
		return ""
	}
	return b64url.EncodeToString(u[:6])
}

// secretKeyID returns the key id carried by a client secret of the current
// format.
func secretKeyID(secret string) (string, bool) {
	if len(secret) != secretLen || secret[3:5] != "Q~" {
		return "", false
	}
	return secret[5 : 5+keyIDLen], true
}

func isLegacySecret(secret string) bool {
	return len(secret) == legacySecretLen && secret[3:5] == "Q~"
}

// newSecret returns a random client secret that carries keyID.
func newSecret(rand io.Reader, keyID string) (string, error) {
	if len(keyID) != keyIDLen {
		return "", fmt.Errorf("identity: key id %q is not %d characters", keyID, keyIDLen)
	}
	b := make([]byte, 30)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", fmt.Errorf("identity: reading randomness: %w", err)
	}
	s := b64url.EncodeToString(b) // 40 characters, of which 30 are used: 180 bits
	return s[:3] + "Q~" + keyID + s[3:30], nil
}

// mac returns the stored form of a client secret.
func (d *Directory) mac(secret string) string {
	m := hmac.New(sha256.New, d.pepper)
	m.Write([]byte(secret))
	return macPrefix + b64.EncodeToString(m.Sum(nil))
}

// checkMAC reports whether secret matches the stored form encoded, in
// constant time. It costs the same whether encoded is well formed or not.
func (d *Directory) checkMAC(encoded, secret string) bool {
	got := d.mac(secret)
	return strings.HasPrefix(encoded, macPrefix) && subtle.ConstantTimeCompare([]byte(got), []byte(encoded)) == 1
}

// PepperSize is the size of the key under which client secrets are stored.
const PepperSize = 32

// pepperAAD binds the sealed pepper to its use.
var pepperAAD = []byte("keyward client secret pepper")

// LoadOrCreatePepper returns the node's client-secret pepper from s,
// opened with seal, creating and storing a random one (sealed) on first
// use. Pass it to Directory.SetPepper before serving.
func LoadOrCreatePepper(ctx context.Context, s store.Store, seal domain.Seal, rand io.Reader) ([]byte, error) {
	var pepper []byte
	err := s.Update(ctx, func(tx store.Tx) error {
		n, err := tx.GetNode(ctx)
		if err != nil {
			return err
		}
		if len(n.SecretPepper) > 0 {
			if pepper, err = seal.Open(ctx, n.SecretPepper, pepperAAD); err != nil {
				return fmt.Errorf("identity: opening the secret pepper: %w", err)
			}
			return nil
		}
		pepper = make([]byte, PepperSize)
		if _, err := io.ReadFull(rand, pepper); err != nil {
			return fmt.Errorf("identity: reading randomness: %w", err)
		}
		sealed, err := seal.Seal(ctx, pepper, pepperAAD)
		if err != nil {
			return fmt.Errorf("identity: sealing the secret pepper: %w", err)
		}
		n.SecretPepper = sealed
		return tx.UpdateNode(ctx, n)
	})
	if err != nil {
		return nil, err
	}
	if len(pepper) != PepperSize {
		return nil, fmt.Errorf("identity: the secret pepper has %d bytes, not %d", len(pepper), PepperSize)
	}
	return pepper, nil
}
