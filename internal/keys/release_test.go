package keys

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/store"
)

// TestExportableKEKIsRefused replays an attack: a key-exchange key made
// exportable under a policy its creator controls, then released, would
// carry the KEK's private key, and so every BYOK blob sent to it, out of
// the HSM. It is refused when made, and a stored one (made before this
// rule) is refused when released.
func TestExportableKEKIsRefused(t *testing.T) {
	ctx := context.Background()
	s, fs, h := setup(t)
	yes := true
	policy := &ReleasePolicy{Data: []byte(`{"version":"1.0.0","anyOf":[{"authority":"https://attest.example","allOf":[{"claim":"x","equals":"y"}]}]}`)}
	_, err := s.Create(ctx, h, "kek", CreateParams{Type: kcrypto.RSA, Ops: []string{OpImport},
		Attributes: Attributes{Exportable: &yes}, ReleasePolicy: policy})
	if fault.KindOf(err) != fault.Invalid || !errors.Is(err, ErrKEKOps) {
		t.Fatalf("an exportable KEK: %v", err)
	}

	v, err := s.Create(ctx, h, "old-kek", CreateParams{Type: kcrypto.RSA, Attributes: Attributes{Exportable: &yes}, ReleasePolicy: policy})
	if err != nil {
		t.Fatal(err)
	}
	err = fs.Update(ctx, func(tx store.Tx) error {
		stored, err := tx.GetKeyVersion(ctx, h.Name, "old-kek", v.Version)
		if err != nil {
			return err
		}
		stored.Ops = []string{OpImport}
		return tx.UpdateKeyVersion(ctx, stored)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.SetCacheSize(0)
	workload, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Release(ctx, h, "old-kek", "", ReleaseParams{Issuer: "https://attest.example", Claims: map[string]any{"x": "y"}, Target: &workload.PublicKey})
	if !errors.Is(err, ErrKEKOps) {
		t.Fatalf("releasing a stored exportable KEK: %v", err)
	}
}
