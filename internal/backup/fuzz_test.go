package backup

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/keyward/keyward/internal/backup/format"
	"github.com/keyward/keyward/internal/domain"
)

// FuzzOpenBackup feeds arbitrary manifests and backup contents (both read
// from storage the caller names) to openBackup: it must never panic.
// With fix set, the manifest is made to match, so the fuzzer reaches the
// sealed content's decoder.
func FuzzOpenBackup(f *testing.F) {
	dk, err := domain.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	h := &domain.HSM{Name: "fuzz", DomainID: "d0m41n", Key: dk}
	plain, _ := json.Marshal(content{Format: format.Version, DomainID: h.DomainID})
	f.Add([]byte(`{"format":1,"domainId":"d0m41n","size":3,"sha256":"00"}`), plain, true)
	f.Add([]byte(`{"format":1}`), []byte(`{"format":1,"domainId":"d0m41n","keys":[{}],"versions":[{"sealed":"AA=="}]}`), true)
	f.Add([]byte(`[]`), []byte{}, false)
	f.Fuzz(func(t *testing.T, mb, data []byte, fix bool) {
		sealed := data
		if fix {
			if sealed, err = dk.Encrypt(data, backupAAD(h.DomainID)); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(sealed)
			mb, _ = json.Marshal(manifest{Format: 1, DomainID: h.DomainID, Size: len(sealed), SHA256: hex.EncodeToString(sum[:])})
		}
		b, err := openBackup(h, mb, sealed)
		if err == nil && (b.Format != 1 || b.DomainID != h.DomainID) {
			t.Fatalf("accepted content of another format or domain: %d %q", b.Format, b.DomainID)
		}
	})
}

// FuzzReadStream feeds arbitrary plaintext, sealed for the HSM, and
// arbitrary sealed bytes to readStream: it must never panic.
func FuzzReadStream(f *testing.F) {
	h := testHSM(f, "fuzz", "d0m41n")
	f.Add([]byte(`{"format":2,"domainId":"d0m41n"}`+"\n"+`{"key":{"Name":"k"}}`+"\n"+`{"end":{"keys":1}}`+"\n"), true)
	f.Add([]byte(`{"format":2,"domainId":"d0m41n"}`+"\n"+`{"end":{"keys":0}}`), true)
	f.Add([]byte(`{"format":2,"domainId":"d0m41n"}{"version":{"Sealed":"AA=="}}{"end":{"versions":1}}`), true)
	f.Add([]byte("age-encryption.org/v1\n-> keyward-domain\nAAAA\n--- AAAA\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, seal bool) {
		if seal {
			data = sealLines(t, h, string(data))
		}
		for _, err := range readStream(bytes.NewReader(data), h) {
			if err != nil {
				return
			}
		}
	})
}
