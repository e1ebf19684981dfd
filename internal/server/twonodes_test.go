package server_test

import (
	"crypto/sha256"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
	"github.com/keyward/keyward/internal/testenv"
)

// Two nodes on one PostgreSQL database and one seal file: a role
// assignment created through node A lets its principal sign through node B
// within a second, and deleting it through A stops B within a second (the
// stores' LISTEN/NOTIFY invalidates B's role index).
//
// Each node has a data dir of its own (its CA and bootstrap.json): B joins
// the bootstrap administrator A created, with a secret of its own, and
// tokens are asked of the node they are used on (each node's issuer is its
// own address).
func TestTwoNodesShareRoleChanges(t *testing.T) {
	t.Parallel()
	db := testenv.StartPostgres(t)
	seal := filepath.Join(t.TempDir(), "seal.key")
	shared := func(c *server.Config) { c.DatabaseURL, c.SealKeyFile = db, seal }
	a := servertest.StartWith(t, t.TempDir(), shared)
	b := servertest.StartWith(t, t.TempDir(), shared)

	if _, err := a.Keys.CreateKey(ctx, "shared-signer", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, nil); err != nil {
		t.Fatal(err)
	}
	sp := a.ServicePrincipal("two-nodes-app")
	onB := b.KeysClient(b.Credential(sp.AppID, sp.Secret))
	digest := sha256.Sum256([]byte("two nodes"))
	sign := func() error {
		_, err := onB.Sign(ctx, "shared-signer", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
		return err
	}
	forbidden := func(err error) bool {
		var re *azcore.ResponseError
		return errors.As(err, &re) && re.StatusCode == 403
	}
	// B has built its index of the HSM's roles (and cached the key).
	if err := sign(); !forbidden(err) {
		t.Fatalf("signing through B before any assignment: %v", err)
	}
	if _, err := b.Keys.Sign(ctx, "shared-signer", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil); err != nil {
		t.Fatalf("the administrator signing through B: %v", err)
	}

	// within polls sign until ok(err) for at most a second.
	within := func(what string, ok func(error) bool) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for {
			err := sign()
			if ok(err) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still %v after a second", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	name := a.Assign(sp.ObjectID, rbac.CryptoUserID, "/keys")
	within("after the assignment through A, signing through B", func(err error) bool { return err == nil })

	tok := a.AdminToken("https://managedhsm.azure.net")
	if r := a.Do("DELETE", "/keys/providers/Microsoft.Authorization/roleAssignments/"+name+"?api-version=7.6", tok, nil); r.Status != 200 {
		t.Fatalf("deleting the assignment through A: %d %s", r.Status, r.Body)
	}
	within("after the deletion through A, signing through B", forbidden)

	// B's metrics show it hears A: it listens, and A's changes arrived.
	rec := httptest.NewRecorder()
	b.Server.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if !strings.Contains(body, "keyward_invalidation_listening 1") || strings.Contains(body, "keyward_invalidations_received_total 0") ||
		!strings.Contains(body, "keyward_invalidation_lag_seconds ") || !strings.Contains(body, "keyward_db_connections_open ") {
		t.Fatalf("B's metrics of the shared store:\n%s", grepLines(body, "keyward_invalidation", "keyward_db_"))
	}
}

// grepLines keeps the lines of s that start with one of prefixes.
func grepLines(s string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

// A diagnostic setting made through node A sends node B's records too:
// B's shipper follows the setting through the change feed, ships its own
// journal (its records name it) under a cursor of its own.
func TestTwoNodesShipTheirOwnAuditRecords(t *testing.T) {
	t.Parallel()
	db := testenv.StartPostgres(t)
	seal := filepath.Join(t.TempDir(), "seal.key")
	az := testenv.StartAzurite(t)
	a := servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.DatabaseURL, c.SealKeyFile, c.NodeName = db, seal, "node-a" })
	b := servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.DatabaseURL, c.SealKeyFile, c.NodeName = db, seal, "node-b" })
	enableBlobLogging(t, a, az)

	tok := b.AdminToken("https://managedhsm.azure.net")
	deadline := time.Now().Add(15 * time.Second)
	for {
		// Requests through B after the setting exists are B's to ship.
		b.Do("GET", "/keys/shipped-by-b?api-version=7.6", tok, nil)
		var fromB int
		for _, e := range blobRecords(t, az) {
			if strings.Contains(e.RequestURI, "shipped-by-b") {
				if e.Node != "node-b" {
					t.Fatalf("B's record names node %q", e.Node)
				}
				fromB++
			}
		}
		if fromB > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node B never shipped its records for the setting made through node A")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A node joining a sealed database without the cluster's seal key is
// refused with the reason, rather than making a key of its own that opens
// nothing; so is a node whose seal key was lost.
func TestJoiningWithoutTheSealKeyIsRefused(t *testing.T) {
	t.Parallel()
	db := testenv.StartPostgres(t)
	seal := filepath.Join(t.TempDir(), "seal.key")
	servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.DatabaseURL, c.SealKeyFile = db, seal })
	missing := filepath.Join(t.TempDir(), "seal.key")
	_, err := servertest.TryStart(t, t.TempDir(), func(c *server.Config) { c.DatabaseURL, c.SealKeyFile = db, missing })
	if err == nil || !strings.Contains(err.Error(), "copy the key the first node made") {
		t.Fatalf("joining without the seal key: %v", err)
	}
	if _, statErr := os.Stat(missing); statErr == nil {
		t.Fatal("a new seal key was made anyway")
	}
}

// A node started with another public URL than the cluster's is told why
// its tokens will be refused.
func TestAnotherPublicURLIsWarnedOf(t *testing.T) {
	t.Parallel()
	db := testenv.StartPostgres(t)
	seal := filepath.Join(t.TempDir(), "seal.key")
	servertest.StartWith(t, t.TempDir(), func(c *server.Config) {
		c.DatabaseURL, c.SealKeyFile, c.PublicURL = db, seal, "https://keyward.test:8443"
	})
	b := servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.DatabaseURL, c.SealKeyFile = db, seal })
	if !strings.Contains(b.Logs(), "give every node the same --public-url") {
		t.Fatalf("no warning of the other public URL:\n%s", b.Logs())
	}
}

// A node started again and again on fresh data directories (a container's)
// under one name keeps one bootstrap secret, the latest: it neither piles
// up live administrator secrets nor, at the limit, stops starting.
func TestRejoiningNodeReplacesItsBootstrapSecret(t *testing.T) {
	t.Parallel()
	db := testenv.StartPostgres(t)
	seal := filepath.Join(t.TempDir(), "seal.key")
	servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.DatabaseURL, c.SealKeyFile, c.NodeName = db, seal, "first" })
	var last, previous *servertest.Env
	for range identity.MaxSecrets + 2 {
		if last != nil {
			last.Stop()
		}
		previous = last
		last = servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.DatabaseURL, c.SealKeyFile, c.NodeName = db, seal, "ephemeral" })
	}
	token := func(secret string) error {
		_, err := last.Credential(last.Boot.ClientID, secret).GetToken(ctx,
			policy.TokenRequestOptions{Scopes: []string{"https://managedhsm.azure.net/.default"}})
		return err
	}
	if err := token(last.Boot.ClientSecret); err != nil {
		t.Fatalf("the latest start's secret: %v", err)
	}
	if err := token(previous.Boot.ClientSecret); err == nil {
		t.Fatal("the secret of the node's previous start still works")
	}
}

// A second live node under a name another live node holds, or on a copy
// of its data directory (its journal), is refused at start; once the
// first has stopped, the name is free.
func TestSecondLiveNodeOfOneNameIsRefused(t *testing.T) {
	t.Parallel()
	db := testenv.StartPostgres(t)
	seal := filepath.Join(t.TempDir(), "seal.key")
	shared := func(name string) func(*server.Config) {
		return func(c *server.Config) { c.DatabaseURL, c.SealKeyFile, c.NodeName = db, seal, name }
	}
	a := servertest.StartWith(t, t.TempDir(), shared("node-a"))
	if _, err := servertest.TryStart(t, t.TempDir(), shared("node-a")); err == nil || !strings.Contains(err.Error(), "another live node") {
		t.Fatalf("a second node-a: %v", err)
	}
	copied := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(copied, "audit"), 0o700))
	id, err := os.ReadFile(filepath.Join(a.Dir, "audit", "journal-id"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(copied, "audit", "journal-id"), id, 0o600))
	if _, err := servertest.TryStart(t, copied, shared("node-b")); err == nil || !strings.Contains(err.Error(), "another live node") {
		t.Fatalf("a node on a copy of node-a's journal: %v", err)
	}
	a.Stop()
	servertest.StartWith(t, t.TempDir(), shared("node-a"))
}
