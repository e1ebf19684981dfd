package domain_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/testenv"
)

func TestPKCS11SealRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, err := domain.OpenPKCS11Seal(testenv.SoftHSM(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, _ := domain.GenerateKey(rand.Reader)
	sealed, err := domain.SealKey(ctx, s, k, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := domain.OpenKey(ctx, s, sealed, "d1"); err != nil {
		t.Fatalf("open: %v", err)
	}
	if _, err := domain.OpenKey(ctx, s, sealed, "d2"); !errors.Is(err, domain.ErrOpen) {
		t.Fatalf("wrong domain id: %v", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := domain.OpenKey(ctx, s, sealed, "d1"); !errors.Is(err, domain.ErrOpen) {
		t.Fatalf("tampered: %v", err)
	}
}
