package domain

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"sync"
	"testing"
)

// Nodes that share one seal file and start together agree on one key:
// what any of them seals, every other opens.
func TestFileSealCreatedAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seal.key")
	seals := make([]*FileSeal, 8)
	errs := make([]error, len(seals))
	var wg sync.WaitGroup
	for i := range seals {
		wg.Add(1)
		go func() { defer wg.Done(); seals[i], errs[i] = OpenFileSeal(path, rand.Reader) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("opener %d: %v", i, err)
		}
	}
	ctx := context.Background()
	sealed, err := seals[0].Seal(ctx, []byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range seals {
		if got, err := s.Open(ctx, sealed, nil); err != nil || string(got) != "secret" {
			t.Fatalf("opener %d has another key: %v", i, err)
		}
	}
}
