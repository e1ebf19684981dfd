package cli

import (
	"bytes"
	"crypto/mlkem"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// TestPostQuantumKeysCLI: the CLI shows a post-quantum key's public key
// (pub, which azkeys drops) and downloads it as a SubjectPublicKeyInfo
// with NIST's identifier; an ML-DSA signature made through the CLI
// verifies with it in CIRCL, and an ML-KEM key's pub is an encapsulation
// key Go's crypto/mlkem reads.
func TestPostQuantumKeysCLI(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	dir := t.TempDir()
	var created struct {
		Key struct {
			Kty, Crv, Pub string
		}
	}
	out := admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "pq", "--kty", "ML-DSA", "--curve", "ML-DSA-65")
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Key.Kty != "ML-DSA" || created.Key.Crv != "ML-DSA-65" {
		t.Fatalf("key create: %v\n%s", err, out)
	}
	pub, err := base64.StdEncoding.DecodeString(created.Key.Pub)
	if err != nil || len(pub) != mldsa65.PublicKeySize {
		t.Fatalf("key create's pub %q: %v", created.Key.Pub, err)
	}
	if shown := strings.TrimSpace(admin.ok("keyvault", "key", "show", "--hsm-name", "dev", "--name", "pq", "--query", "key.pub", "-o", "tsv")); shown != created.Key.Pub {
		t.Fatalf("key show's pub %q, key create's %q", shown, created.Key.Pub)
	}

	file := filepath.Join(dir, "pq.pem")
	admin.ok("keyvault", "key", "download", "--hsm-name", "dev", "--name", "pq", "--file", file)
	spki := readSPKI(t, file)
	if !spki.Algorithm.Algorithm.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18}) || len(spki.Algorithm.Parameters.FullBytes) != 0 ||
		!bytes.Equal(spki.PublicKey.Bytes, pub) {
		t.Fatalf("the downloaded key: %+v", spki.Algorithm)
	}
	var pk mldsa65.PublicKey
	if err := pk.UnmarshalBinary(spki.PublicKey.Bytes); err != nil {
		t.Fatal(err)
	}
	msg := []byte("release 4.2.0 of the payments service")
	sig := strings.TrimSpace(admin.ok("keyvault", "key", "sign", "--hsm-name", "dev", "--name", "pq", "--algorithm", "ML-DSA-65",
		"--digest", base64.StdEncoding.EncodeToString(msg), "--query", "signature", "-o", "tsv"))
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || !mldsa65.Verify(&pk, msg, nil, raw) {
		t.Fatalf("the CLI's ML-DSA signature does not verify with the downloaded key: %v", err)
	}

	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "pq-kem", "--kty", "ML-KEM", "--curve", "ML-KEM-768", "-o", "none")
	kemFile := filepath.Join(dir, "kem.pem")
	admin.ok("keyvault", "key", "download", "--hsm-name", "dev", "--name", "pq-kem", "--file", kemFile)
	kem := readSPKI(t, kemFile)
	if !kem.Algorithm.Algorithm.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 4, 2}) {
		t.Fatalf("the ML-KEM key's algorithm: %v", kem.Algorithm.Algorithm)
	}
	if _, err := mlkem.NewEncapsulationKey768(kem.PublicKey.Bytes); err != nil {
		t.Fatalf("the downloaded ML-KEM key: %v", err)
	}
}

type subjectPublicKeyInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

func readSPKI(t *testing.T, file string) subjectPublicKeyInfo {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("%s is not a PEM public key:\n%s", file, data)
	}
	var spki subjectPublicKeyInfo
	if rest, err := asn1.Unmarshal(block.Bytes, &spki); err != nil || len(rest) != 0 {
		t.Fatalf("%s: %v", file, err)
	}
	return spki
}
