package identity

import (
	"context"
	"crypto/fips140"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestPasswordsInFIPSMode replays the outside review's finding: in FIPS
// 140-3 mode passwords were still hashed with Argon2id, outside Go's
// module. There, a new password is stored as PBKDF2-HMAC-SHA-512 and
// signs in; a wrong one and an unknown user are refused. The test runs
// itself again with GODEBUG=fips140=only.
func TestPasswordsInFIPSMode(t *testing.T) {
	if !fips140.Enforced() {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestPasswordsInFIPSMode$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "GODEBUG=fips140=only")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestPasswordsInFIPSMode") || !strings.Contains(string(out), "enforced") {
			t.Fatalf("in FIPS mode: %v\n%s", err, out)
		}
		return
	}
	t.Log("FIPS 140-3 mode enforced")
	ctx := context.Background()
	_, dir, _, _ := newTestService(t)
	u, err := dir.CreateUser(ctx, "Alice", "alice@contoso.test", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.PasswordHash, "$pbkdf2-sha512$i=210000$") {
		t.Fatalf("a password in FIPS mode is stored as %.20s…", u.PasswordHash)
	}
	if _, err := dir.AuthenticateUser(ctx, "alice@contoso.test", "correct horse"); err != nil {
		t.Fatalf("the password does not sign in: %v", err)
	}
	if _, err := dir.AuthenticateUser(ctx, "alice@contoso.test", "wrong horse"); !errors.Is(err, ErrInvalidPassword) {
		t.Fatalf("a wrong password: %v", err)
	}
	if _, err := dir.AuthenticateUser(ctx, "mallory@contoso.test", "correct horse"); !errors.Is(err, ErrInvalidPassword) {
		t.Fatalf("an unknown user: %v", err)
	}
	if checkSecret("$pbkdf2-sha512$i=999999999$c2FsdA$c3Vt", "x") {
		t.Fatal("a stored hash with unbounded work was checked")
	}
}
