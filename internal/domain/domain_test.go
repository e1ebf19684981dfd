package domain

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestDomainKeySealedByFileSeal(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "seal.key")
	s, err := OpenFileSeal(path, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("seal key mode = %v", fi.Mode())
	}
	k, _ := GenerateKey(rand.Reader)
	sealed, err := SealKey(ctx, s, k, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, k.raw) {
		t.Fatal("sealed domain key contains the raw key")
	}
	s2, err := OpenFileSeal(path, rand.Reader) // reopened from disk
	if err != nil {
		t.Fatal(err)
	}
	k2, err := OpenKey(ctx, s2, sealed, "d1")
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := k.Encrypt([]byte("material"), []byte("aad"))
	if pt, err := k2.Decrypt(ct, []byte("aad")); err != nil || string(pt) != "material" {
		t.Fatalf("decrypt = %q, %v", pt, err)
	}
	if _, err := k2.Decrypt(ct, []byte("other")); !errors.Is(err, ErrOpen) {
		t.Fatalf("wrong aad: %v", err)
	}
	if _, err := OpenKey(ctx, s2, sealed, "d2"); !errors.Is(err, ErrOpen) {
		t.Fatalf("wrong domain id: %v", err)
	}
	ct[len(ct)-1] ^= 1
	if _, err := k2.Decrypt(ct, []byte("aad")); !errors.Is(err, ErrOpen) {
		t.Fatalf("tampered: %v", err)
	}
}
