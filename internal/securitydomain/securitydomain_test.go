package securitydomain

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func word(x, y int) []byte {
	b := make([]byte, 2)
	binary.LittleEndian.PutUint16(b, uint16(x<<9|y))
	return b
}

// Vectors computed by hand: f(x) = s + a·x mod 257.
func TestCombineHandVectors(t *testing.T) {
	cases := []struct {
		name   string
		shares [][]byte
		want   byte
	}{
		{"5+3x at x=1,3", [][]byte{word(1, 8), word(3, 14)}, 5},
		{"5+3x at x=2,3", [][]byte{word(2, 11), word(3, 14)}, 5},
		{"250+200x wraps at x=1,2", [][]byte{word(1, 193), word(2, 136)}, 250},
		{"0+128x reaches 256 at x=2", [][]byte{word(1, 128), word(2, 256)}, 0},
		// f(x) = 7 + 2x + x² at x=1,2,4: 10, 15, 31.
		{"quadratic", [][]byte{word(1, 10), word(2, 15), word(4, 31)}, 7},
	}
	for _, c := range cases {
		got, err := combine(c.shares)
		if err != nil || len(got) != 1 || got[0] != c.want {
			t.Errorf("%s: combine = %v, %v; want %d", c.name, got, err, c.want)
		}
	}
	if _, err := combine([][]byte{word(1, 8), word(1, 8)}); err == nil {
		t.Error("two shares of the same custodian were combined")
	}
	if _, err := combine([][]byte{word(0, 8), word(1, 8)}); err == nil {
		t.Error("x = 0 was accepted")
	}
	if _, err := combine([][]byte{word(1, 300), word(2, 8)}); err == nil {
		t.Error("a value above 256 was accepted")
	}
}

func TestSplitCombineEveryQuorum(t *testing.T) {
	secret := make([]byte, 32)
	rand.Read(secret)
	for n := 3; n <= 10; n++ {
		for m := 2; m <= n; m++ {
			shares, err := split(rand.Reader, secret, m, n)
			if err != nil {
				t.Fatal(err)
			}
			// Any m consecutive shares (wrapping) recover the secret.
			for start := 0; start < n; start++ {
				var pick [][]byte
				for k := 0; k < m; k++ {
					pick = append(pick, shares[(start+k)%n])
				}
				got, err := combine(pick)
				if err != nil || !bytes.Equal(got, secret) {
					t.Fatalf("n=%d m=%d start=%d: %x, %v", n, m, start, got, err)
				}
				if m > 2 {
					if got, err := combine(pick[:m-1]); err == nil && bytes.Equal(got, secret) {
						t.Fatalf("n=%d m=%d: %d shares recovered the secret", n, m, m-1)
					}
				}
			}
		}
	}
}

// TestSplitUsesFreshCoefficients guards against the Azure CLI's splitter
// bug: with one set of coefficients for all bytes, share values minus the
// secret would be the same for every byte.
func TestSplitUsesFreshCoefficients(t *testing.T) {
	secret := make([]byte, 32) // all zero: each value is the polynomial's noise
	shares, err := split(rand.Reader, secret, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	first := binary.LittleEndian.Uint16(shares[0]) & 0x1ff
	for j := 1; j < 32; j++ {
		if binary.LittleEndian.Uint16(shares[0][2*j:])&0x1ff != first {
			return
		}
	}
	t.Fatal("every byte's share has the same value: coefficients are reused")
}

func FuzzCombine(f *testing.F) {
	f.Add([]byte{8, 2, 14, 6}, []byte{11, 4, 14, 6})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		combine([][]byte{a, b}) // must not panic
	})
}

func newCustodian(t testing.TB) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "custodian"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return k, c
}

func jweHeader(t *testing.T, compact string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(compact, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	json.Unmarshal(raw, &h)
	return h
}

func TestFileRoundTrip(t *testing.T) {
	var keys []*rsa.PrivateKey
	var certs []*x509.Certificate
	for range 3 {
		k, c := newCustodian(t)
		keys, certs = append(keys, k), append(certs, c)
	}
	items := map[string][]byte{"hsm_backup": []byte("the domain")}
	f, err := Seal(rand.Reader, items, certs, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Azure's field names and headers.
	raw, _ := json.Marshal(f)
	for _, field := range []string{`"EncData"`, `"compact_jwe"`, `"kdf":"sp108_kdf"`, `"SharedKeys"`, `"enc_shares"`, `"x5t_256"`, `"key_algorithm":"shamir_share"`, `"required":2`, `"version":2`} {
		if !bytes.Contains(raw, []byte(field)) {
			t.Fatalf("the file lacks %s: %s", field, raw)
		}
	}
	if h := jweHeader(t, f.SharedKeys.EncShares[0].EncKey); h["alg"] != "RSA-OAEP-256" || h["enc"] != "A256CBC-HS512" || h["kid"] != "not used" {
		t.Fatalf("share header = %v", h)
	}
	if h := jweHeader(t, f.EncData.Data[0].CompactJWE); h["alg"] != "dir" || h["enc"] != "A256CBC-HS512" || h["kid"] != "hsm_backup" {
		t.Fatalf("datum header = %v", h)
	}
	if f.SharedKeys.EncShares[1].X5t256 != Thumbprint(certs[1]) {
		t.Fatal("x5t_256 does not name the certificate")
	}

	exKey, exCert := newCustodian(t)
	for _, pick := range [][]*rsa.PrivateKey{{keys[0], keys[1]}, {keys[2], keys[0]}, {keys[1], keys[2], keys[0]}} {
		blob, err := RestoreBlobFor(rand.Reader, f, pick, exCert)
		if err != nil {
			t.Fatal(err)
		}
		got, err := OpenRestoreBlob(blob, exKey, exCert)
		if err != nil || string(got["hsm_backup"]) != "the domain" {
			t.Fatalf("restored %q, %v", got, err)
		}
	}
	if _, err := RestoreBlobFor(rand.Reader, f, keys[:1], exCert); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("one key: %v", err)
	}
	other, _ := newCustodian(t)
	if _, err := RestoreBlobFor(rand.Reader, f, []*rsa.PrivateKey{keys[0], other}, exCert); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("a stranger's key: %v", err)
	}
	tampered := *f
	tampered.EncData.Data = []Datum{{Tag: "hsm_backup", CompactJWE: flip(f.EncData.Data[0].CompactJWE)}}
	if _, err := RestoreBlobFor(rand.Reader, &tampered, keys, exCert); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered data: %v", err)
	}
	blob, _ := RestoreBlobFor(rand.Reader, f, keys[:2], exCert)
	if _, err := OpenRestoreBlob(blob, other, exCert); err == nil {
		t.Fatal("a restore blob opened with another exchange key")
	}
	if err := CheckCertificates(certs[:2], 2); err == nil {
		t.Fatal("two certificates accepted")
	}
	if err := CheckCertificates(certs, 4); err == nil {
		t.Fatal("quorum above the certificates accepted")
	}
	if err := CheckCertificates([]*x509.Certificate{certs[0], certs[0], certs[1]}, 2); err == nil {
		t.Fatal("a repeated certificate accepted")
	}
}

// flip changes one character in the ciphertext part of a compact JWE.
func flip(compact string) string {
	parts := strings.Split(compact, ".")
	ct := []byte(parts[3])
	if ct[0] == 'A' {
		ct[0] = 'B'
	} else {
		ct[0] = 'A'
	}
	parts[3] = string(ct)
	return strings.Join(parts, ".")
}

// TestCertificatesOverOneKeyRefused: three self-signed certificates over
// one RSA key have three thumbprints, but give one person every share.
func TestCertificatesOverOneKeyRefused(t *testing.T) {
	k, c1 := newCustodian(t)
	var certs []*x509.Certificate
	certs = append(certs, c1)
	for i := range 2 {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: "same key"},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		certs = append(certs, c)
	}
	if err := CheckCertificates(certs, 2); err == nil || !strings.Contains(err.Error(), "same public key") {
		t.Fatalf("three certificates over one key: %v", err)
	}
}
