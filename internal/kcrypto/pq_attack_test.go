package kcrypto

import "testing"

// TestAttackParsePrivateUnknownMLDSASet: a sealed ml-dsa form with a
// parameter set mldsaScheme does not know makes mldsaFromSeed call
// SeedSize on a nil sign.Scheme in its error message: a nil-pointer
// panic instead of an error (ParsePrivate is exported; only sealed,
// authenticated input reaches it today).
func TestAttackParsePrivateUnknownMLDSASet(t *testing.T) {
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("ParsePrivate panicked: %v", p)
		}
	}()
	if _, err := ParsePrivate([]byte(`{"form":"ml-dsa","set":"ML-DSA-13","bytes":""}`)); err == nil {
		t.Fatal("an unknown ML-DSA set parsed")
	}
}
