package backup_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/backup"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/egress"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/store/sqlite"
	"github.com/keyward/keyward/internal/testenv"
)

// BenchmarkBackup5000 backs up and restores an HSM holding 5,000 keys
// (Azure's per-HSM maximum), to and from Azurite on loopback.
//
//	go test ./internal/backup -run '^$' -bench Backup5000 -benchtime 3x
func BenchmarkBackup5000(b *testing.B) {
	ctx := context.Background()
	az := testenv.StartAzurite(b)
	uri, sas := az.Container("bench")
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "k.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	seal, _ := domain.OpenFileSeal(filepath.Join(b.TempDir(), "seal"), rand.Reader)
	reg := domain.NewRegistry(db, seal, rand.Reader, time.Now, nil)
	h, err := reg.Create(ctx, domain.CreateParams{Name: "bench", Admins: []string{"a"}, Activated: true})
	if err != nil {
		b.Fatal(err)
	}
	ks := keys.NewService(db, rand.Reader, time.Now, keys.Events{})
	for i := range 5000 {
		if _, err := ks.Create(ctx, h, fmt.Sprintf("k%04d", i), keys.CreateParams{Type: kcrypto.EC}); err != nil {
			b.Fatal(err)
		}
	}
	svc := backup.NewService(db, reg, time.Now, egress.Policy{AllowPrivate: true}, "bench")
	t := backup.Target{ContainerURI: uri, SASToken: sas}
	var folder string
	b.Run("backup", func(b *testing.B) {
		for b.Loop() {
			j, err := svc.StartBackup(ctx, h, t)
			if err != nil {
				b.Fatal(err)
			}
			if j, err = svc.Wait(ctx, h.Name, j.ID); err != nil || j.Status != backup.Succeeded {
				b.Fatalf("%+v %v", j, err)
			}
			folder = j.FolderURI[len(uri)+1:]
		}
		b.ReportMetric(5000*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
	})
	b.Run("restore", func(b *testing.B) {
		for b.Loop() {
			j, err := svc.StartRestore(ctx, h, t, folder)
			if err != nil {
				b.Fatal(err)
			}
			if j, err = svc.Wait(ctx, h.Name, j.ID); err != nil || j.Status != backup.Succeeded {
				b.Fatalf("%+v %v", j, err)
			}
		}
		b.ReportMetric(5000*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
	})
}
