package server_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
	"github.com/keyward/keyward/internal/testenv"
)

// TestPKCS11Seal runs a server whose domain keys are sealed by a SoftHSM2
// token, restarts it, and refuses a wrong PIN and a change of seal.
func TestPKCS11Seal(t *testing.T) {
	token := testenv.SoftHSM(t)
	dir := t.TempDir()
	withToken := func(pin string) func(*server.Config) {
		return func(c *server.Config) {
			c.Seal, c.PKCS11 = "pkcs11", token
			c.PKCS11.PIN = pin
		}
	}
	a := servertest.StartWith(t, dir, withToken(token.PIN))
	if _, err := os.Stat(filepath.Join(dir, "seal.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a PKCS#11-sealed server wrote a seal key file")
	}
	_, err := a.Keys.CreateKey(ctx, "sealed", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil)
	must(t, err)
	a.Stop()

	b := servertest.StartWith(t, dir, withToken(token.PIN))
	if _, err := b.Keys.Sign(ctx, "sealed", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: digest32}, nil); err != nil {
		t.Fatalf("sign after restart under the token: %v", err)
	}
	b.Stop()

	_, err = servertest.TryStart(t, dir, withToken("00000000"))
	if !errors.Is(err, domain.ErrPKCS11PIN) || !strings.Contains(err.Error(), "refused the PIN") {
		t.Fatalf("wrong PIN: %v", err)
	}
	_, err = servertest.TryStart(t, dir, nil) // the file seal on a token-sealed directory
	if err == nil || !strings.Contains(err.Error(), "sealed with the pkcs11 seal") {
		t.Fatalf("switching to the file seal: %v", err)
	}
	other := token
	other.TokenLabel = "no-such-token"
	if _, err := servertest.TryStart(t, dir, func(c *server.Config) { c.Seal, c.PKCS11 = "pkcs11", other }); err == nil || !strings.Contains(err.Error(), "no PKCS#11 token") {
		t.Fatalf("unknown token: %v", err)
	}
}
