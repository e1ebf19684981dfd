package server_test

import (
	"crypto/sha256"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
	"github.com/keyward/keyward/internal/testenv"
)

// The server on PostgreSQL instead of SQLite (--database): bootstrap, a key
// made and used through azkeys, and everything kept across a restart.
func TestServerOnPostgres(t *testing.T) {
	t.Parallel()
	db := testenv.StartPostgres(t)
	dir := t.TempDir()
	onPostgres := func(c *server.Config) { c.DatabaseURL = db }
	env := servertest.StartWith(t, dir, onPostgres)
	if _, err := env.Keys.CreateKey(ctx, "pg-signer", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, nil); err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("on postgres"))
	sig, err := env.Keys.Sign(ctx, "pg-signer", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	env.Stop()
	again := servertest.StartWith(t, dir, onPostgres)
	v, err := again.Keys.Verify(ctx, "pg-signer", "", azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256),
		Digest: digest[:], Signature: sig.Result}, nil)
	if err != nil || v.Value == nil || !*v.Value {
		t.Fatalf("the key after a restart on PostgreSQL: %v %v", v.Value, err)
	}
}
