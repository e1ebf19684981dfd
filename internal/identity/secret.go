package identity

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: OWASP's minimum recommendation (19 MiB, 2 passes).
// They are written into each hash, so raising them later keeps old hashes
// valid.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

var b64 = base64.RawStdEncoding

// hashSecret returns a PHC-style Argon2id hash of secret with a fresh salt.
func hashSecret(rand io.Reader, secret string) (string, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return "", fmt.Errorf("identity: reading salt: %w", err)
	}
	sum := argon2.IDKey([]byte(secret), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

// checkSecret reports whether secret matches encoded, in constant time
// with respect to the secret.
func checkSecret(encoded, secret string) bool {
	parts := strings.Split(encoded, "$")
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

// dummyHash is checked against when the principal does not exist, so that
// a wrong client id costs as long as a wrong secret.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$0YmhU7ZsoRfJ3UqV3f3Zx8mLqf7kK1X3cT2VXn0Qm5o"

// newSecret returns a random client secret in the form Entra uses: three
// characters, "Q~", and 37 more.
func newSecret(rand io.Reader) (string, error) {
	b := make([]byte, 30)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", fmt.Errorf("identity: reading randomness: %w", err)
	}
	s := base64.RawURLEncoding.EncodeToString(b) // 40 characters
	return s[:3] + "Q~" + s[3:], nil
}
