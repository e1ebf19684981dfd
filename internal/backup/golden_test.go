package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/backup/format"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/egress"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

var update = flag.Bool("update", false, "rewrite testdata/golden-v2 (only when the format changes on purpose: old backups must keep restoring)")

// goldenHSM holds the fixed domain key testdata/golden-v* are sealed
// under. It protects nothing: it exists so the test can open the blob.
func goldenHSM(t testing.TB, name string) *domain.HSM {
	t.Helper()
	seed := bytes.Repeat([]byte{0x6b}, 32)
	dk, err := domain.GenerateKey(io.MultiReader(bytes.NewReader(seed), rand.Reader))
	if err != nil {
		t.Fatal(err)
	}
	return &domain.HSM{ID: "id-" + name, Name: name, DomainID: "golden-domain", Key: dk}
}

// register records h in db, as the HSM's registry would: a backup and a
// restore check that their HSM is still the one of its name.
func register(t testing.TB, db *sqlite.DB, h *domain.HSM) {
	t.Helper()
	err := db.Update(context.Background(), func(tx store.Tx) error {
		return tx.InsertHSM(context.Background(), &store.HSM{ID: h.ID, Name: h.Name, DomainID: h.DomainID, State: "Active"})
	})
	if err != nil {
		t.Fatal(err)
	}
}

var goldenTime = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func openDB(t testing.TB) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// writeGolden fills an HSM with two keys (one with two versions, one
// deleted), a custom role and two assignments (one time-bound), and
// writes its backup to testdata/golden-v2. testdata/golden-v1 was written
// alike by the format 1 writer, which is gone; it stays as it is.
func writeGolden(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	h := goldenHSM(t, "golden")
	register(t, db, h)
	clock := goldenTime
	ks := keys.NewService(db, rand.Reader, func() time.Time { clock = clock.Add(time.Minute); return clock }, keys.Events{})
	f := false
	if _, err := ks.Create(ctx, h, "signing", keys.CreateParams{Type: kcrypto.EC, Tags: map[string]string{"team": "payments"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Create(ctx, h, "signing", keys.CreateParams{Type: kcrypto.EC, Attributes: keys.Attributes{Exportable: &f}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Create(ctx, h, "old", keys.CreateParams{Type: kcrypto.Oct, Size: 256}); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Delete(ctx, h, "old"); err != nil {
		t.Fatal(err)
	}
	err := db.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutRoleDefinition(ctx, &store.RoleDefinition{HSM: h.Name, ID: "6a1f7b4c-0d3e-4b8a-9c2d-5e6f7a8b9c0d",
			Name: "Key Signer", Description: "signs with keys",
			Permissions:      []store.Permission{{DataActions: []string{"Microsoft.KeyVault/managedHsm/keys/sign/action"}, NotDataActions: []string{}}},
			AssignableScopes: []string{"/"}, Created: goldenTime, Updated: goldenTime.Add(time.Hour)}); err != nil {
			return err
		}
		if err := tx.InsertRoleAssignment(ctx, &store.RoleAssignment{HSM: h.Name, ID: "11111111-2222-4333-8444-555555555555",
			Scope: "/keys/signing", RoleDefinitionID: "6a1f7b4c-0d3e-4b8a-9c2d-5e6f7a8b9c0d", PrincipalID: "aaaaaaaa-0000-4000-8000-000000000001",
			Created: goldenTime, Source: "direct", CreatedBy: "aaaaaaaa-0000-4000-8000-000000000009"}); err != nil {
			return err
		}
		return tx.InsertRoleAssignment(ctx, &store.RoleAssignment{HSM: h.Name, ID: "11111111-2222-4333-8444-666666666666",
			Scope: "/", RoleDefinitionID: "21dbd100-6940-42c2-9190-5d6cb909625b", PrincipalID: "aaaaaaaa-0000-4000-8000-000000000002",
			Created: goldenTime, Start: goldenTime, End: goldenTime.Add(8 * time.Hour), Source: "pim-request-1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	var sealed bytes.Buffer
	var end format.End
	err = db.View(ctx, func(tx store.Tx) (err error) { end, err = writeStream(ctx, tx, h, &sealed); return err })
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(sealed.Bytes())
	m, _ := json.Marshal(manifest{Format: format.StreamVersion, HSM: h.Name, DomainID: h.DomainID, Created: goldenTime.Format(time.RFC3339),
		Keys: end.Keys, Size: sealed.Len(), SHA256: hex.EncodeToString(sum[:])})
	dir := filepath.Join("testdata", "golden-v2")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, manifestName), m, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, backupName), sealed.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGolden(t *testing.T, version string) (mb, sealed []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "golden-"+version)
	mb, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		t.Fatal(err)
	}
	if sealed, err = os.ReadFile(filepath.Join(dir, backupName)); err != nil {
		t.Fatal(err)
	}
	return mb, sealed
}

// TestGoldenV2 restores a streamed full backup written by an earlier
// Keyward into an HSM of another name.
func TestGoldenV2(t *testing.T) {
	if *update {
		writeGolden(t)
	}
	mb, sealed := readGolden(t, "v2")
	h := goldenHSM(t, "restored")
	m, err := openManifest(h, mb)
	if err != nil || m.Format != format.StreamVersion {
		t.Fatalf("manifest: %+v %v", m, err)
	}
	f, err := spool(bytes.NewReader(sealed), m, h)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	db := openDB(t)
	register(t, db, h)
	if err := NewService(db, nil, time.Now, egress.Policy{}, "node-a").apply(context.Background(), h, readStream(f, h), ""); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, db, h, [2]string{"76183164fb43bec17c2962c21f20c44c", "0f81c31e2edeb04aa158ebb8e2218b1a"})
}

// TestGoldenV1 restores a full backup written by an earlier Keyward into
// an HSM of another name: every backup made since format 1 must keep
// restoring, keys, versions, material, roles and assignments.
func TestGoldenV1(t *testing.T) {
	mb, sealed := readGolden(t, "v1")
	h := goldenHSM(t, "restored")
	b, err := openBackup(h, mb, sealed)
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t)
	register(t, db, h)
	if err := NewService(db, nil, time.Now, egress.Policy{}, "node-a").apply(context.Background(), h, recordsOf(b), ""); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, db, h, [2]string{"30e454e5c367bbecfb2c53cc9e0f9dcc", "dc4d097cc1dd6f83f751f901c330d743"})

	// What today's code writes is what format 1 was: the golden plaintext
	// decodes and encodes again to the same bytes.
	plain, err := h.Key.Decrypt(sealed, backupAAD(h.DomainID))
	if err != nil {
		t.Fatal(err)
	}
	var again content
	if err := json.Unmarshal(plain, &again); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, plain) {
		t.Fatalf("re-encoded golden backup differs:\n%s\n%s", out, plain)
	}
}

// checkGolden checks that db holds, in h, what writeGolden wrote: keys,
// versions, material, roles and assignments.
// versions are the IDs the two versions of "signing" were given.
func checkGolden(t *testing.T, db *sqlite.DB, h *domain.HSM, versions [2]string) {
	t.Helper()
	ctx := context.Background()
	err := db.View(ctx, func(tx store.Tx) error {
		var names []string
		for _, deleted := range []bool{false, true} {
			items, err := tx.ListKeys(ctx, h.Name, deleted, "", 10)
			if err != nil {
				return err
			}
			for _, it := range items {
				names = append(names, fmt.Sprintf("%s deleted=%v", it.Key.Name, !it.Key.Deleted.IsZero()))
			}
		}
		if got := strings.Join(names, ", "); got != "signing deleted=false, old deleted=true" {
			t.Errorf("keys: %s", got)
		}
		vs, err := tx.ListKeyVersions(ctx, h.Name, "signing", 0, 10)
		if err != nil {
			return err
		}
		if len(vs) != 2 || vs[0].Version != versions[0] || vs[1].Version != versions[1] ||
			vs[0].Tags["team"] != "payments" || vs[0].Kty != "EC" || !vs[0].Created.Equal(goldenTime.Add(time.Minute)) || vs[0].HSM != h.Name {
			t.Errorf("versions of signing: %+v", vs)
		}
		d, err := tx.GetRoleDefinition(ctx, h.Name, "6a1f7b4c-0d3e-4b8a-9c2d-5e6f7a8b9c0d")
		if err != nil {
			return err
		}
		if d.Name != "Key Signer" || len(d.Permissions) != 1 || len(d.Permissions[0].DataActions) != 1 ||
			!d.Updated.Equal(goldenTime.Add(time.Hour)) {
			t.Errorf("role: %+v", d)
		}
		as, err := tx.ListRoleAssignments(ctx, h.Name)
		if err != nil {
			return err
		}
		byID := map[string]*store.RoleAssignment{}
		for _, a := range as {
			byID[a.ID] = a
		}
		if a := byID["11111111-2222-4333-8444-555555555555"]; a == nil || a.Scope != "/keys/signing" ||
			a.CreatedBy != "aaaaaaaa-0000-4000-8000-000000000009" || a.Source != "direct" {
			t.Errorf("direct assignment: %+v", a)
		}
		if a := byID["11111111-2222-4333-8444-666666666666"]; a == nil || !a.End.Equal(goldenTime.Add(8*time.Hour)) ||
			a.Source != "pim-request-1" || a.RoleDefinitionID != "21dbd100-6940-42c2-9190-5d6cb909625b" {
			t.Errorf("time-bound assignment: %+v", a)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The sealed material came through: the restored key signs.
	ks := keys.NewService(db, rand.Reader, time.Now, keys.Events{})
	digest := sha256.Sum256([]byte("golden"))
	if _, err := ks.Sign(ctx, h, "signing", versions[0], kcrypto.Algorithm("ES256"), digest[:]); err != nil {
		t.Fatal(err)
	}
}
