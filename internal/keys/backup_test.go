package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/backup/format"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

var update = flag.Bool("update", false, "rewrite testdata/key-backup-v1.kwb (only when the format changes on purpose: old backups must keep restoring)")

// goldenHSM holds the fixed domain key testdata/key-backup-v1.kwb is
// sealed under. It protects nothing: it exists so the test can open it.
func goldenHSM(t testing.TB, name string) *domain.HSM {
	t.Helper()
	seed := bytes.Repeat([]byte{0x6b}, 32)
	dk, err := domain.GenerateKey(io.MultiReader(bytes.NewReader(seed), rand.Reader))
	if err != nil {
		t.Fatal(err)
	}
	return &domain.HSM{Name: name, DomainID: "golden-domain", Key: dk}
}

func goldenService(t testing.TB) *Service {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	return NewService(db, rand.Reader, func() time.Time { clock = clock.Add(time.Minute); return clock }, Events{})
}

const goldenKeyBackup = "testdata/key-backup-v1.kwb"

func writeGoldenKeyBackup(t *testing.T) {
	ctx := context.Background()
	s, h := goldenService(t), goldenHSM(t, "golden")
	if _, err := s.Create(ctx, h, "signing", CreateParams{Type: kcrypto.EC, Tags: map[string]string{"team": "payments"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, h, "signing", CreateParams{Type: kcrypto.EC}); err != nil {
		t.Fatal(err)
	}
	blob, err := s.Backup(ctx, h, "signing")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(goldenKeyBackup, blob, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestKeyBackupGoldenV1 restores a key backup written by an earlier
// Keyward: every backup made since format 1 must keep restoring.
func TestKeyBackupGoldenV1(t *testing.T) {
	if *update {
		writeGoldenKeyBackup(t)
	}
	ctx := context.Background()
	blob, err := os.ReadFile(goldenKeyBackup)
	if err != nil {
		t.Fatal(err)
	}
	s, h := goldenService(t), goldenHSM(t, "restored")
	latest, err := s.Restore(ctx, h, blob)
	if err != nil {
		t.Fatal(err)
	}
	if latest.Name != "signing" || latest.Version != "60c46b39284db4cbcde0fd9cb98d3e16" || latest.Type != kcrypto.EC {
		t.Fatalf("latest = %s/%s %s", latest.Name, latest.Version, latest.Type)
	}
	page, err := s.ListVersions(ctx, h, "signing", "", 25)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 2 {
		t.Fatalf("%d versions restored, want 2", len(page.Items))
	}
	first, err := s.Get(ctx, h, "signing", "69b0d7b06f546ac05b14faca222e00a2")
	if err != nil {
		t.Fatal(err)
	}
	if first.Tags["team"] != "payments" || !first.Enabled || !first.Created.Equal(time.Date(2024, 5, 1, 12, 1, 0, 0, time.UTC)) {
		t.Fatalf("first version = %+v", first)
	}
	// The sealed material came through: both versions sign and verify.
	digest := sha256.Sum256([]byte("golden"))
	for _, v := range []string{first.Version, latest.Version} {
		res, err := s.Sign(ctx, h, "signing", v, kcrypto.Algorithm("ES256"), digest[:])
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Verify(ctx, h, "signing", v, kcrypto.Algorithm("ES256"), digest[:], res.Value); err != nil || !ok {
			t.Fatalf("verify with %s: %v %v", v, ok, err)
		}
	}
	// What today's code writes is what format 1 was: decoding the golden
	// plaintext and encoding it again gives the same bytes.
	plain, err := h.Key.Decrypt(blob, backupAAD(h.DomainID))
	if err != nil {
		t.Fatal(err)
	}
	var b format.KeyBackup
	if err := json.Unmarshal(plain, &b); err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, plain) {
		t.Fatalf("re-encoded golden backup differs:\n%s\n%s", again, plain)
	}
}

// TestRestoreAppliesKeyOpRules replays a backup taken before a key-exchange
// key had to be an RSA key whose only operation is import: the restored
// key keeps its other operations and loses import, so it cannot open a
// transfer blob while it also decrypts.
func TestRestoreAppliesKeyOpRules(t *testing.T) {
	ctx := context.Background()
	s, h := goldenService(t), goldenHSM(t, "legacy")
	if _, err := s.Create(ctx, h, "old-kek", CreateParams{Type: kcrypto.RSA, Ops: []string{OpDecrypt}}); err != nil {
		t.Fatal(err)
	}
	// What an earlier Keyward allowed, written as it would have stored it.
	err := s.store.Update(ctx, func(tx store.Tx) error {
		v, err := tx.LatestKeyVersion(ctx, h.Name, "old-kek")
		if err != nil {
			return err
		}
		v.Ops = []string{OpImport, OpDecrypt, OpDecrypt}
		return tx.UpdateKeyVersion(ctx, v)
	})
	if err != nil {
		t.Fatal(err)
	}
	blob, err := s.Backup(ctx, h, "old-kek")
	if err != nil {
		t.Fatal(err)
	}
	other := goldenHSM(t, "restored")
	other.DomainID = h.DomainID
	restored, err := s.Restore(ctx, other, blob)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(restored.Ops, []string{OpDecrypt}) {
		t.Fatalf("restored ops = %v, want [decrypt]", restored.Ops)
	}
	if _, err := s.ImportTransfer(ctx, other, "smuggled", TransferParams{KEKName: "old-kek", KEKVersion: restored.Version, Ciphertext: make([]byte, 512), Type: kcrypto.EC}); err == nil {
		t.Fatal("a restored decrypting key opened a transfer blob")
	}
}
