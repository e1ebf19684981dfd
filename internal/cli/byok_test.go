package cli

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBYOKWalkthrough: the BYOK flow from the command line, as the
// README shows it: a key-exchange key, its public key downloaded, `keyward
// byok` wrapping a PEM key for it as a vendor's tool would, the .byok
// file imported with --byok-file, and the key signing what its original
// public key verifies. A file for a key that is no KEK is refused.
func TestBYOKWalkthrough(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	dir := t.TempDir()
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "kek", "--kty", "RSA-HSM", "--size", "3072", "--ops", "import", "-o", "none")
	kid := strings.TrimSpace(admin.ok("keyvault", "key", "show", "--hsm-name", "dev", "--name", "kek", "--query", "key.kid", "-o", "tsv"))
	admin.ok("keyvault", "key", "download", "--hsm-name", "dev", "--name", "kek", "--file", filepath.Join(dir, "kek.pem"), "--encoding", "PEM")

	target, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(target)
	os.WriteFile(filepath.Join(dir, "onprem.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	admin.ok("byok", "--key", filepath.Join(dir, "onprem.pem"), "--kek-file", filepath.Join(dir, "kek.pem"), "--kek-kid", kid,
		"--file", filepath.Join(dir, "onprem.byok"), "-o", "none")
	admin.ok("keyvault", "key", "import", "--hsm-name", "dev", "--name", "onprem", "--byok-file", filepath.Join(dir, "onprem.byok"),
		"--kty", "EC", "--curve", "P-256", "-o", "none")

	digest := sha256.Sum256([]byte("signed by a key that came in under a KEK"))
	sig := strings.TrimSpace(admin.ok("keyvault", "key", "sign", "--hsm-name", "dev", "--name", "onprem", "--algorithm", "ES256",
		"--digest", base64.StdEncoding.EncodeToString(digest[:]), "--query", "signature", "-o", "tsv"))
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(raw) != 64 {
		t.Fatalf("the signature %q: %v", sig, err)
	}
	if !ecdsa.Verify(&target.PublicKey, digest[:], new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])) {
		t.Fatal("the signature does not verify with the on-premises key's public key")
	}

	// What a newcomer gets wrong is said in words: a file that exists is
	// not overwritten, an Ed25519 key is not a key a Managed HSM holds,
	// and an EC key's file is not an AES key's.
	if errs := admin.fails(exitUsage, "byok", "--key", filepath.Join(dir, "onprem.pem"), "--kek-file", filepath.Join(dir, "kek.pem"), "--kek-kid", kid,
		"--file", filepath.Join(dir, "onprem.byok")); !strings.Contains(errs, "already exists") {
		t.Fatalf("byok over an existing file: %q", errs)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	os.WriteFile(filepath.Join(dir, "ed.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER}), 0o600)
	if errs := admin.fails(exitUsage, "byok", "--key", filepath.Join(dir, "ed.pem"), "--kek-file", filepath.Join(dir, "kek.pem"), "--kek-kid", kid,
		"--file", filepath.Join(dir, "ed.byok")); !strings.Contains(errs, "an Ed25519 key is not a key a Managed HSM holds") {
		t.Fatalf("byok of an Ed25519 key: %q", errs)
	}
	if errs := admin.fails(exitFailure, "keyvault", "key", "import", "--hsm-name", "dev", "--name", "as-oct", "--byok-file", filepath.Join(dir, "onprem.byok"),
		"--kty", "oct-HSM"); !strings.Contains(errs, "not an AES key") {
		t.Fatalf("an EC key's file imported as oct: %q", errs)
	}
	admin.ok("keyvault", "key", "download", "--hsm-name", "dev", "--name", "onprem", "--file", filepath.Join(dir, "onprem.der"), "-e", "der")

	// A key that is no KEK (no import operation) opens no transfer file.
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "not-a-kek", "--kty", "RSA-HSM", "-o", "none")
	nk := strings.TrimSpace(admin.ok("keyvault", "key", "show", "--hsm-name", "dev", "--name", "not-a-kek", "--query", "key.kid", "-o", "tsv"))
	admin.ok("keyvault", "key", "download", "--hsm-name", "dev", "--name", "not-a-kek", "--file", filepath.Join(dir, "nk.pem"), "--encoding", "PEM")
	admin.ok("byok", "--key", filepath.Join(dir, "onprem.pem"), "--kek-file", filepath.Join(dir, "nk.pem"), "--kek-kid", nk,
		"--file", filepath.Join(dir, "nk.byok"), "-o", "none")
	admin.fails(exitFailure, "keyvault", "key", "import", "--hsm-name", "dev", "--name", "onprem-2", "--byok-file", filepath.Join(dir, "nk.byok"),
		"--kty", "EC", "-o", "none")
}
