package keys

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// faultyStore fails every write transaction after its function ran, so the
// transaction is rolled back as if the disk had failed at commit.
type faultyStore struct {
	store.Store
	fail bool
}

var errDisk = errors.New("disk on fire")

func (s *faultyStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Update(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if s.fail {
			return errDisk
		}
		return nil
	})
}

func setup(t *testing.T) (*Service, *faultyStore, *domain.HSM) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	fs := &faultyStore{Store: db}
	seal, _ := domain.OpenFileSeal(filepath.Join(t.TempDir(), "seal"), rand.Reader)
	reg := domain.NewRegistry(db, seal, rand.Reader, time.Now, nil)
	h, err := reg.Create(ctx, domain.CreateParams{Name: "hsm1", Admins: []string{"a"}, Activated: true})
	if err != nil {
		t.Fatal(err)
	}
	return NewService(fs, rand.Reader, time.Now, Events{}), fs, h
}

func TestFailedWritesChangeNothing(t *testing.T) {
	ctx := context.Background()
	s, fs, h := setup(t)
	v1, err := s.Create(ctx, h, "k", CreateParams{Type: kcrypto.EC})
	if err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, 32)
	if _, err := s.Sign(ctx, h, "k", "", "ES256", digest); err != nil { // fills the cache
		t.Fatal(err)
	}

	fs.fail = true
	off := false
	steps := map[string]func() error{
		"disable": func() error {
			_, err := s.Update(ctx, h, "k", "", UpdateParams{Attributes: Attributes{Enabled: &off}})
			return err
		},
		"rotate": func() error { _, err := s.Rotate(ctx, h, "k"); return err },
		"delete": func() error { _, err := s.Delete(ctx, h, "k"); return err },
		"policy": func() error {
			_, err := s.SetRotationPolicy(ctx, h, "k", RotationPolicy{ExpiryTime: "P90D"})
			return err
		},
		"new name": func() error { _, err := s.Create(ctx, h, "other", CreateParams{Type: kcrypto.Oct}); return err },
	}
	for name, step := range steps {
		if err := step(); !errors.Is(err, errDisk) {
			t.Fatalf("%s: err = %v, want the store failure", name, err)
		}
	}
	fs.fail = false

	latest, err := s.Get(ctx, h, "k", "")
	if err != nil || latest.Version != v1.Version || !latest.Enabled {
		t.Fatalf("after failed writes the key is %+v, %v", latest, err)
	}
	if _, err := s.Sign(ctx, h, "k", "", "ES256", digest); err != nil {
		t.Fatalf("the key no longer signs after failed writes: %v", err)
	}
	if _, err := s.Get(ctx, h, "other", ""); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("a failed create left a key: %v", err)
	}
	p, err := s.GetRotationPolicy(ctx, h, "k")
	if err != nil || p.ExpiryTime != "" {
		t.Fatalf("a failed policy update stuck: %+v", p)
	}
}

func TestCacheFollowsChanges(t *testing.T) {
	ctx := context.Background()
	s, _, h := setup(t)
	if _, err := s.Create(ctx, h, "k", CreateParams{Type: kcrypto.RSA, Ops: []string{OpSign}}); err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, 32)
	sign := func() error { _, err := s.Sign(ctx, h, "K", "", "RS256", digest); return err } // names ignore case
	if err := sign(); err != nil {
		t.Fatal(err)
	}
	off, on := false, true
	if _, err := s.Update(ctx, h, "k", "", UpdateParams{Attributes: Attributes{Enabled: &off}}); err != nil {
		t.Fatal(err)
	}
	if err := sign(); !errors.Is(err, ErrOperationForbidden) {
		t.Fatalf("a disabled key signed from the cache: %v", err)
	}
	if _, err := s.Update(ctx, h, "k", "", UpdateParams{Attributes: Attributes{Enabled: &on}, Ops: []string{OpVerify}}); err != nil {
		t.Fatal(err)
	}
	if err := sign(); !errors.Is(err, ErrOperationForbidden) {
		t.Fatalf("signed after sign was removed from key_ops: %v", err)
	}
	if _, err := s.Update(ctx, h, "k", "", UpdateParams{Ops: []string{OpSign}}); err != nil {
		t.Fatal(err)
	}
	rot, err := s.Rotate(ctx, h, "k")
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Sign(ctx, h, "k", "", "RS256", digest)
	if err != nil || r.Version != rot.Version {
		t.Fatalf("latest after rotation signs with %v (%v), want %s", r, err, rot.Version)
	}
	if _, err := s.Delete(ctx, h, "k"); err != nil {
		t.Fatal(err)
	}
	if err := sign(); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("a deleted key signed from the cache: %v", err)
	}
}

func TestValidation(t *testing.T) {
	ctx := context.Background()
	s, _, h := setup(t)
	tooMany := map[string]string{}
	for i := 0; i < 16; i++ {
		tooMany[string(rune('a'+i))] = "v"
	}
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	cases := map[string]CreateParams{
		"curve on RSA":   {Type: kcrypto.RSA, Curve: kcrypto.P256},
		"unknown op":     {Type: kcrypto.Oct, Ops: []string{"fly"}},
		"16 tags":        {Type: kcrypto.Oct, Tags: tooMany},
		"nbf after exp":  {Type: kcrypto.Oct, Attributes: Attributes{NotBefore: &future, Expires: &past}},
		"exportable":     {Type: kcrypto.Oct, Attributes: Attributes{Exportable: new(bool)}},
		"unknown family": {Type: "DSA"},
	}
	*cases["exportable"].Attributes.Exportable = true
	for name, p := range cases {
		if _, err := s.Create(ctx, h, "k", p); fault.KindOf(err) != fault.Invalid {
			t.Errorf("%s: err = %v, want invalid", name, err)
		}
	}
	// key_size on an EC key is ignored, as Azure does (sigstore sends 2048).
	if k, err := s.Create(ctx, h, "ec-sized", CreateParams{Type: kcrypto.EC, Size: 2048}); err != nil || k.Public.Crv != kcrypto.P256 {
		t.Errorf("EC with key_size: %v", err)
	}
	for _, name := range []string{"", "under_score", "dot.ted", string(make([]byte, 128))} {
		if _, err := s.Create(ctx, h, name, CreateParams{Type: kcrypto.Oct}); fault.KindOf(err) != fault.Invalid {
			t.Errorf("name %q: err = %v", name, err)
		}
	}
	for _, d := range []string{"P1Y", "P90D", "PT36H", "P1Y2M3DT4H5M6S"} {
		if _, err := ParseDuration(d); err != nil {
			t.Errorf("ParseDuration(%q) = %v", d, err)
		}
	}
	for _, d := range []string{"", "P", "PT", "90D", "P1W", "P-1D"} {
		if _, err := ParseDuration(d); err == nil {
			t.Errorf("ParseDuration(%q) accepted", d)
		}
	}
}

func TestPurgeProtection(t *testing.T) {
	ctx := context.Background()
	s, _, h := setup(t)
	h.PurgeProtection = true
	if _, err := s.Create(ctx, h, "k", CreateParams{Type: kcrypto.Oct}); err != nil {
		t.Fatal(err)
	}
	v, err := s.Delete(ctx, h, "k")
	if err != nil || v.RecoveryLevel != "Recoverable" {
		t.Fatalf("delete = %+v, %v", v, err)
	}
	if err := s.Purge(ctx, h, "k"); !errors.Is(err, ErrOperationForbidden) {
		t.Fatalf("purge under protection: %v", err)
	}
}
