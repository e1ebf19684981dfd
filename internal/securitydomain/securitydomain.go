// Package securitydomain reads and writes Azure Managed HSM security-domain
// files, so that a Keyward file can be recovered with the steps Azure's own
// tooling performs and the reverse.
//
// A file holds data (EncData) encrypted under keys derived from a random
// master key with the SP 800-108 counter KDF (HMAC-SHA-512), and the master
// key split with Shamir's scheme over GF(257) (SharedKeys), each share
// encrypted to one custodian's RSA certificate as a compact JWE
// (RSA-OAEP-256 with A256CBC-HS512). Recovery combines a quorum of shares,
// decrypts the data, re-encrypts it under a fresh master key and wraps that
// key to the recovering HSM's exchange certificate: the restore blob.
//
// The package knows the format only; what the data means belongs to the
// domain package.
package securitydomain

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"slices"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keyward/keyward/internal/fault"
)

// File is a security-domain file, field for field as Azure writes it.
type File struct {
	EncData    EncData    `json:"EncData"`
	SharedKeys SharedKeys `json:"SharedKeys"`
	Version    int        `json:"version"`
}

// EncData is the encrypted data of a file or restore blob.
type EncData struct {
	Data []Datum `json:"data"`
	KDF  string  `json:"kdf"`
}

// Datum is one encrypted item, labelled by its tag.
type Datum struct {
	CompactJWE string `json:"compact_jwe"`
	Tag        string `json:"tag"`
}

// SharedKeys holds the encrypted shares of the master key.
type SharedKeys struct {
	EncShares    []EncShare `json:"enc_shares"`
	KeyAlgorithm string     `json:"key_algorithm"`
	Required     int        `json:"required"`
}

// EncShare is one custodian's share, encrypted to the certificate whose
// SHA-256 thumbprint is X5t256.
type EncShare struct {
	EncKey string `json:"enc_key"`
	X5t256 string `json:"x5t_256"`
}

// RestoreBlob is what a recovering HSM receives: the data under a fresh
// master key, and that key wrapped to the HSM's exchange certificate.
type RestoreBlob struct {
	EncData    EncData    `json:"EncData"`
	WrappedKey WrappedKey `json:"WrappedKey"`
}

// WrappedKey is the master key of a restore blob, as a compact JWE.
type WrappedKey struct {
	EncKey string `json:"enc_key"`
	X5t256 string `json:"x5t_256"`
}

// Limits of a download, as Azure sets them.
const (
	MinCertificates = 3
	MaxCertificates = 10
	MinQuorum       = 2
	MinRSABits      = 2048
)

const (
	masterKeySize = 32
	kdfName       = "sp108_kdf"
	shareAlg      = "shamir_share"
	fileVersion   = 2
	notUsed       = "not used" // the kid Azure puts on share and key JWEs
)

// Errors.
var (
	ErrNoQuorum = fault.New(fault.Invalid, "BadParameter", "the private keys given do not open enough shares to reach the quorum")
	ErrCorrupt  = fault.New(fault.Invalid, "BadParameter", "the security domain data does not authenticate: wrong shares, another domain, or an altered file")
)

// Thumbprint is the x5t#S256 of a certificate: base64url SHA-256 of its DER.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// deriveKey is the SP 800-108 counter-mode KDF with HMAC-SHA-512, one
// 512-bit block: HMAC(master, be32(1) || label || 0x00 || context || be32(512)).
func deriveKey(master []byte, label string) []byte {
	mac := hmac.New(sha512.New, master)
	var be [4]byte
	binary.BigEndian.PutUint32(be[:], 1)
	mac.Write(be[:])
	mac.Write([]byte(label))
	mac.Write([]byte{0})
	binary.BigEndian.PutUint32(be[:], 512)
	mac.Write(be[:])
	return mac.Sum(nil)
}

// encrypt makes a compact JWE with A256CBC-HS512. go-jose draws the IV
// and content key from crypto/rand.
func encrypt(rcpt jose.Recipient, plaintext []byte) (string, error) {
	enc, err := jose.NewEncrypter(jose.A256CBC_HS512, rcpt, &jose.EncrypterOptions{})
	if err != nil {
		return "", fmt.Errorf("securitydomain: %w", err)
	}
	obj, err := enc.Encrypt(plaintext)
	if err != nil {
		return "", fmt.Errorf("securitydomain: %w", err)
	}
	return obj.CompactSerialize()
}

func decrypt(compact string, algs []jose.KeyAlgorithm, key any) ([]byte, error) {
	obj, err := jose.ParseEncrypted(compact, algs, []jose.ContentEncryption{jose.A256CBC_HS512})
	if err != nil {
		return nil, err
	}
	return obj.Decrypt(key)
}

var rsaAlgs = []jose.KeyAlgorithm{jose.RSA_OAEP_256, jose.RSA_OAEP}

// sealData encrypts each item under a key derived from master and its tag.
func sealData(master []byte, items map[string][]byte) (EncData, error) {
	out := EncData{KDF: kdfName}
	for _, tag := range slices.Sorted(maps.Keys(items)) {
		jwe, err := encrypt(jose.Recipient{Algorithm: jose.DIRECT, Key: deriveKey(master, tag), KeyID: tag}, items[tag])
		if err != nil {
			return EncData{}, err
		}
		out.Data = append(out.Data, Datum{CompactJWE: jwe, Tag: tag})
	}
	return out, nil
}

// openData decrypts every item; any failure means the master key is wrong
// or the file was altered.
func openData(master []byte, d EncData) (map[string][]byte, error) {
	if d.KDF != kdfName || len(d.Data) == 0 {
		return nil, ErrCorrupt
	}
	out := map[string][]byte{}
	for _, item := range d.Data {
		pt, err := decrypt(item.CompactJWE, []jose.KeyAlgorithm{jose.DIRECT}, deriveKey(master, item.Tag))
		if err != nil {
			return nil, ErrCorrupt
		}
		out[item.Tag] = pt
	}
	return out, nil
}

// Seal makes a security-domain file of items for the custodians' certs,
// any required of whom can recover it.
func Seal(rnd io.Reader, items map[string][]byte, certs []*x509.Certificate, required int) (*File, error) {
	if err := CheckCertificates(certs, required); err != nil {
		return nil, err
	}
	master := make([]byte, masterKeySize)
	if _, err := io.ReadFull(rnd, master); err != nil {
		return nil, fmt.Errorf("securitydomain: reading randomness: %w", err)
	}
	defer clear(master)
	data, err := sealData(master, items)
	if err != nil {
		return nil, err
	}
	shares, err := split(rnd, master, required, len(certs))
	if err != nil {
		return nil, err
	}
	f := &File{EncData: data, SharedKeys: SharedKeys{KeyAlgorithm: shareAlg, Required: required}, Version: fileVersion}
	for i, c := range certs {
		jwe, err := encrypt(jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: c.PublicKey, KeyID: notUsed}, shares[i])
		clear(shares[i])
		if err != nil {
			return nil, err
		}
		f.SharedKeys.EncShares = append(f.SharedKeys.EncShares, EncShare{EncKey: jwe, X5t256: Thumbprint(c)})
	}
	return f, nil
}

// CheckCertificates applies Azure's rules to a download request: 3 to 10
// distinct RSA certificates of at least 2048 bits, quorum 2 to their number.
// Distinct means distinct keys: several certificates over one key would
// give its holder several shares, a quorum alone perhaps.
func CheckCertificates(certs []*x509.Certificate, required int) error {
	if len(certs) < MinCertificates || len(certs) > MaxCertificates {
		return fault.Invalidf("a security domain needs %d to %d certificates, got %d", MinCertificates, MaxCertificates, len(certs))
	}
	if required < MinQuorum || required > len(certs) {
		return fault.Invalidf("the quorum (required) must be between %d and the number of certificates (%d), got %d", MinQuorum, len(certs), required)
	}
	seen := map[string]bool{}
	for i, c := range certs {
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok || pub.N.BitLen() < MinRSABits {
			return fault.Invalidf("certificate %d is not an RSA key of at least %d bits", i+1, MinRSABits)
		}
		key := string(c.RawSubjectPublicKeyInfo)
		if seen[key] {
			return fault.Invalidf("certificate %d carries the same public key as an earlier one: each custodian needs a key of their own", i+1)
		}
		seen[key] = true
	}
	return nil
}

// RecoverMaster opens the shares that keys can decrypt and combines them.
// It returns ErrNoQuorum when fewer than the required shares open, and
// ErrCorrupt when the result does not decrypt the file's data.
func RecoverMaster(f *File, keys []*rsa.PrivateKey) ([]byte, error) {
	var shares [][]byte
	used := map[int]bool{}
	for _, k := range keys {
		for i, s := range f.SharedKeys.EncShares {
			if used[i] {
				continue
			}
			if pt, err := decrypt(s.EncKey, rsaAlgs, k); err == nil {
				shares = append(shares, pt)
				used[i] = true
				break
			}
		}
	}
	if len(shares) < f.SharedKeys.Required || len(shares) < MinQuorum {
		return nil, ErrNoQuorum.With("%d of the keys open a share; the quorum is %d", len(shares), f.SharedKeys.Required)
	}
	master, err := combine(shares)
	if err != nil {
		return nil, ErrCorrupt
	}
	if _, err := openData(master, f.EncData); err != nil {
		return nil, err
	}
	return master, nil
}

// RestoreBlobFor recovers the file's master key with a quorum of custodian
// keys and re-wraps the data for the HSM whose exchange certificate is
// exchange, as Azure's CLI does before an upload.
func RestoreBlobFor(rnd io.Reader, f *File, keys []*rsa.PrivateKey, exchange *x509.Certificate) (*RestoreBlob, error) {
	master, err := RecoverMaster(f, keys)
	if err != nil {
		return nil, err
	}
	items, err := openData(master, f.EncData)
	clear(master)
	if err != nil {
		return nil, err
	}
	fresh := make([]byte, masterKeySize)
	if _, err := io.ReadFull(rnd, fresh); err != nil {
		return nil, fmt.Errorf("securitydomain: reading randomness: %w", err)
	}
	defer clear(fresh)
	data, err := sealData(fresh, items)
	if err != nil {
		return nil, err
	}
	wrapped, err := encrypt(jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: exchange.PublicKey, KeyID: notUsed}, fresh)
	if err != nil {
		return nil, err
	}
	return &RestoreBlob{EncData: data, WrappedKey: WrappedKey{EncKey: wrapped, X5t256: Thumbprint(exchange)}}, nil
}

// OpenRestoreBlob unwraps a restore blob with the HSM's exchange key and
// returns the data items.
func OpenRestoreBlob(b *RestoreBlob, exchange *rsa.PrivateKey, exchangeCert *x509.Certificate) (map[string][]byte, error) {
	if b.WrappedKey.X5t256 != "" && b.WrappedKey.X5t256 != Thumbprint(exchangeCert) {
		return nil, fault.Invalidf("the restore blob is wrapped to another exchange key; run init-recovery again and use its certificate")
	}
	master, err := decrypt(b.WrappedKey.EncKey, rsaAlgs, exchange)
	if err != nil {
		return nil, ErrCorrupt.With("the restore blob's key does not open with this HSM's exchange key")
	}
	defer clear(master)
	return openData(master, b.EncData)
}
