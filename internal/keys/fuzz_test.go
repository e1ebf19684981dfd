package keys

import (
	"crypto/rand"
	"encoding/json"
	"testing"

	"github.com/keyward/keyward/internal/backup/format"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/kcrypto"
)

// FuzzOpenKeyBackup feeds arbitrary key backup blobs (a restore request's
// body) to openBackup, both as sealed blobs and as plaintext sealed
// under the right key (so the decoder behind the seal is reached): it
// must never panic, and what it accepts must be a restorable key.
func FuzzOpenKeyBackup(f *testing.F) {
	dk, err := domain.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	h := &domain.HSM{Name: "fuzz", DomainID: "d0m41n", Key: dk}
	k, err := kcrypto.GenerateEC(rand.Reader, kcrypto.P256)
	if err != nil {
		f.Fatal(err)
	}
	raw, err := kcrypto.MarshalPrivate(k)
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := dk.Encrypt(raw, materialAAD(h.DomainID, "k", "v1"))
	if err != nil {
		f.Fatal(err)
	}
	plain, _ := json.Marshal(format.KeyBackup{Format: format.Version, DomainID: h.DomainID, Key: format.Key{Name: "k"},
		Versions: []format.KeyVersion{{Name: "k", Version: "v1", Kty: "EC", Sealed: sealed}}})
	blob, _ := dk.Encrypt(plain, backupAAD(h.DomainID))
	f.Add(plain, false)
	f.Add(blob, true)
	f.Add([]byte(`{"format":1,"domainId":"d0m41n","key":{"name":"../x"},"versions":[{}]}`), false)
	f.Fuzz(func(t *testing.T, data []byte, isSealed bool) {
		if !isSealed {
			if data, err = dk.Encrypt(data, backupAAD(h.DomainID)); err != nil {
				t.Fatal(err)
			}
		}
		b, err := openBackup(h, data)
		if err != nil {
			return
		}
		if len(b.Versions) == 0 || checkName(b.Key.Name) != nil {
			t.Fatalf("accepted a backup with no versions or a bad name: %+v", b.Key)
		}
	})
}
