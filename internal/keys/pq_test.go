package keys

import (
	"context"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/kcrypto"
)

// TestPostQuantumKeysDoOneThing: an ML-KEM key only wraps and unwraps, an
// ML-DSA key only signs and verifies; operations they could never do are
// refused when the key is made or changed, not left to fail later.
func TestPostQuantumKeysDoOneThing(t *testing.T) {
	ctx := context.Background()
	s, _, h := setup(t)
	_, err := s.Create(ctx, h, "kem", CreateParams{Type: kcrypto.MLKEM, Curve: kcrypto.MLKEM768, Ops: []string{OpSign}})
	if fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), "an ML-KEM key can only wrapKey and unwrapKey, not sign") {
		t.Fatalf("an ML-KEM key that signs: %v", err)
	}
	if _, err := s.Create(ctx, h, "dsa", CreateParams{Type: kcrypto.MLDSA, Curve: kcrypto.MLDSA65, Ops: []string{OpSign}}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Update(ctx, h, "dsa", "", UpdateParams{Ops: []string{OpSign, OpWrapKey}})
	if fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), "an ML-DSA key can only sign and verify, not wrapKey") {
		t.Fatalf("an ML-DSA key given wrapKey: %v", err)
	}
	if ops := restoredOpsOf(t, kcrypto.MLKEM, []string{OpWrapKey, OpSign}); len(ops) != 1 || ops[0] != OpWrapKey {
		t.Fatalf("a restored ML-KEM key keeps %v", ops)
	}
}

func restoredOpsOf(t *testing.T, kty kcrypto.KeyType, ops []string) []string {
	t.Helper()
	out, err := restoredOps(kty, ops)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
