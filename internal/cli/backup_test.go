package cli

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/servertest"
	"github.com/keyward/keyward/internal/testenv"
)

// TestFullBackupAndRestore backs up an HSM with keys, versions, a deleted
// key and role assignments into Azurite, purges everything, restores it,
// restores one key selectively, and recovers the whole into a new HSM
// through its security domain.
func TestFullBackupAndRestore(t *testing.T) {
	t.Parallel()
	az := testenv.StartAzurite(t)
	env := servertest.Start(t)
	b := env.Boot
	ctx := context.Background()
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	me := admin.ok("ad", "sp", "show", "--id", b.ClientID, "--query", "id", "-o", "tsv")
	dir := t.TempDir()

	// HSM A, activated, with content.
	var keys, certs []string
	for i := range 3 {
		k, c := custodian(t, dir, i)
		keys, certs = append(keys, k), append(certs, c)
	}
	admin.ok("keyvault", "create", "--hsm-name", "contoso-a", "-g", "keyward", "--administrators", me)
	sdFile := filepath.Join(dir, "sd.json")
	admin.ok("keyvault", "security-domain", "download", "--hsm-name", "contoso-a", "--sd-wrapping-keys", certs[0], certs[1], certs[2],
		"--sd-quorum", "2", "--security-domain-file", sdFile)
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "contoso-a", "--assignee", me, "--scope", "/", "--role", "Managed HSM Crypto User")
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "contoso-a", "--assignee", me, "--scope", "/", "--role", "Managed HSM Crypto Officer")
	app := env.ServicePrincipal("app")
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "contoso-a", "--assignee", app.ObjectID, "--scope", "/keys/signer",
		"--role", "Managed HSM Crypto User")
	hsmA := "https://contoso-a.mhsm.localhost:" + port(b.AuthorityHost)
	ka := env.KeysClientFor(hsmA, env.Cred)
	signer, err := ka.CreateKey(ctx, "signer", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil)
	must(t, err)
	rotated, err := ka.RotateKey(ctx, "signer", nil)
	must(t, err)
	_, err = ka.CreateKey(ctx, "cmk", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM)}, nil)
	must(t, err)
	_, err = ka.CreateKey(ctx, "retired", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	must(t, err)
	_, err = ka.DeleteKey(ctx, "retired", nil)
	must(t, err)
	digest := sha256.Sum256([]byte("before"))
	sig, err := ka.Sign(ctx, "signer", signer.Key.KID.Version(), azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: digest[:]}, nil)
	must(t, err)

	// Back up (the container URL and SAS as az takes them).
	containerURI, sasToken := az.Container("mhsm-backups")
	folderURI := admin.ok("keyvault", "backup", "start", "--hsm-name", "contoso-a", "--storage-resource-uri", containerURI,
		"--storage-container-SAS-token", sasToken, "--query", "folderUrl", "-o", "tsv")
	folder := folderURI[strings.LastIndex(folderURI, "/")+1:]
	if !strings.HasPrefix(folder, "mhsm-contoso-a-") {
		t.Fatalf("backup folder %q", folderURI)
	}
	assignmentsBefore := admin.ok("keyvault", "role", "assignment", "list", "--hsm-name", "contoso-a", "--query", "sort([].name)", "-o", "tsv")

	// Lose everything: keys purged, an assignment deleted.
	for _, k := range []string{"signer", "cmk"} {
		_, err := ka.DeleteKey(ctx, k, nil)
		must(t, err)
	}
	for _, k := range []string{"signer", "cmk", "retired"} {
		_, err := ka.PurgeDeletedKey(ctx, k, nil)
		must(t, err)
	}
	admin.ok("keyvault", "role", "assignment", "delete", "--hsm-name", "contoso-a", "--assignee", app.ObjectID, "--scope", "/keys/signer")

	// Selective restore of one key first.
	// As az, a restore prints nothing, and takes the folder's URL that
	// backup start printed (as folderUrl).
	if out := admin.ok("keyvault", "restore", "start", "--hsm-name", "contoso-a", "--storage-resource-uri", containerURI,
		"--storage-container-SAS-token", sasToken, "--backup-folder", folderURI, "--key-name", "cmk"); out != "" {
		t.Fatalf("restore start printed %q", out)
	}
	if got := admin.ok("keyvault", "key", "list", "--hsm-name", "contoso-a", "--query", "[].name", "-o", "tsv"); got != "cmk" {
		t.Fatalf("after selective restore: %q", got)
	}
	_, errs, code := admin.run("", "keyvault", "restore", "start", "--hsm-name", "contoso-a", "--storage-resource-uri", containerURI,
		"--storage-container-SAS-token", sasToken, "--backup-folder", folder, "--key-name", "cmk")
	if code != 1 || !strings.Contains(errs, "exists") {
		t.Fatalf("selective restore onto an existing key: %d %q", code, errs)
	}

	// Full restore brings back everything.
	admin.ok("keyvault", "restore", "start", "--hsm-name", "contoso-a", "--storage-resource-uri", containerURI,
		"--storage-container-SAS-token", sasToken, "--backup-folder", folder)
	if got := admin.ok("keyvault", "role", "assignment", "list", "--hsm-name", "contoso-a", "--query", "sort([].name)", "-o", "tsv"); got != assignmentsBefore {
		t.Fatalf("assignments after restore:\n%s\nwant\n%s", got, assignmentsBefore)
	}
	if got := admin.ok("keyvault", "key", "list-deleted", "--hsm-name", "contoso-a", "--query", "[].name", "-o", "tsv"); got != "retired" {
		t.Fatalf("deleted keys after restore: %q", got)
	}
	checkKeys := func(kc *azkeys.Client) {
		t.Helper()
		latest, err := kc.GetKey(ctx, "signer", "", nil)
		must(t, err)
		if latest.Key.KID.Version() != rotated.Key.KID.Version() {
			t.Fatalf("latest version %s, want %s", latest.Key.KID.Version(), rotated.Key.KID.Version())
		}
		v, err := kc.Verify(ctx, "signer", signer.Key.KID.Version(), azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Digest: digest[:], Signature: sig.Result}, nil)
		if err != nil || !*v.Value {
			t.Fatalf("old signature: %v", err)
		}
		if _, err := kc.Sign(ctx, "signer", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: digest[:]}, nil); err != nil {
			t.Fatalf("sign after restore: %v", err)
		}
	}
	checkKeys(ka)
	// The app's assignment is back: it signs again.
	if _, err := env.KeysClientFor(hsmA, app.Cred).Sign(ctx, "signer", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: digest[:]}, nil); err != nil {
		t.Fatalf("the app's restored assignment: %v", err)
	}

	// Disaster recovery: a new HSM, the security domain, the backup.
	admin.ok("keyvault", "create", "--hsm-name", "contoso-dr", "-g", "keyward", "--administrators", me)
	exchange := filepath.Join(dir, "exchange.cer")
	admin.ok("keyvault", "security-domain", "init-recovery", "--hsm-name", "contoso-dr", "--sd-exchange-key", exchange)
	admin.ok("keyvault", "security-domain", "upload", "--hsm-name", "contoso-dr", "--sd-file", sdFile, "--sd-exchange-key", exchange,
		"--sd-wrapping-keys", keys[1], keys[2])
	admin.ok("keyvault", "restore", "start", "--hsm-name", "contoso-dr", "--storage-resource-uri", containerURI,
		"--storage-container-SAS-token", sasToken, "--backup-folder", folder)
	checkKeys(env.KeysClientFor("https://contoso-dr.mhsm.localhost:"+port(b.AuthorityHost), env.Cred))

	// Another domain refuses the backup, and a wrong SAS is a clear error.
	admin.ok("keyvault", "create", "--hsm-name", "contoso-other", "-g", "keyward", "--administrators", me)
	admin.ok("keyvault", "security-domain", "download", "--hsm-name", "contoso-other", "--sd-wrapping-keys", certs[0], certs[1], certs[2],
		"--sd-quorum", "2", "--security-domain-file", filepath.Join(dir, "other.json"))
	_, errs, code = admin.run("", "keyvault", "restore", "start", "--hsm-name", "contoso-other", "--storage-resource-uri", containerURI,
		"--storage-container-SAS-token", sasToken, "--backup-folder", folder)
	if code != 1 || !strings.Contains(errs, "another security domain") {
		t.Fatalf("foreign-domain restore: %d %q", code, errs)
	}
	_, errs, code = admin.run("", "keyvault", "backup", "start", "--hsm-name", "contoso-a", "--storage-resource-uri", containerURI,
		"--storage-container-SAS-token", "sv=2020-01-01&sig=forged")
	if code != 1 || !strings.Contains(errs, "SAS") {
		t.Fatalf("wrong SAS: %d %q", code, errs)
	}
}

func TestRotationPolicyAndExpiryCLI(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	b := env.Boot
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "app-signing", "--kty", "RSA-HSM", "--size", "2048", "--ops", "sign", "verify")
	policy := filepath.Join(t.TempDir(), "rotation.json")
	writeFile(t, policy, `{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"Rotate"}},
		{"trigger":{"timeBeforeExpiry":"P30D"},"action":{"type":"Notify"}}],"attributes":{"expiryTime":"P2Y"}}`)
	admin.ok("keyvault", "key", "rotation-policy", "update", "--hsm-name", "dev", "--name", "app-signing", "--value", "@"+policy)
	if got := admin.ok("keyvault", "key", "rotation-policy", "show", "--hsm-name", "dev", "--name", "app-signing",
		"--query", "[expiresIn, lifetimeActions[0].action, lifetimeActions[0].timeAfterCreate, lifetimeActions[1].action]", "-o", "tsv"); got != "P2Y\nRotate\nP90D\nNotify" {
		t.Fatalf("policy = %q", got)
	}
	// What show prints, update takes back (as az does), and snake_case too;
	// a field it does not know is an error, not a policy silently emptied.
	shown := filepath.Join(t.TempDir(), "shown.json")
	writeFile(t, shown, admin.ok("keyvault", "key", "rotation-policy", "show", "--hsm-name", "dev", "--name", "app-signing"))
	admin.ok("keyvault", "key", "rotation-policy", "update", "--hsm-name", "dev", "--name", "app-signing", "--value", shown)
	admin.ok("keyvault", "key", "rotation-policy", "update", "--hsm-name", "dev", "--name", "app-signing", "--value",
		`{"lifetime_actions": [{"trigger": {"time_after_create": "P60D"}, "action": "Rotate"}], "expires_in": "P1Y"}`)
	if got := admin.ok("keyvault", "key", "rotation-policy", "show", "--hsm-name", "dev", "--name", "app-signing",
		"--query", "[expiresIn, lifetimeActions[0].timeAfterCreate, length(lifetimeActions)]", "-o", "tsv"); got != "P1Y\nP60D\n1" {
		t.Fatalf("policy from snake_case = %q", got)
	}
	for _, bad := range []string{`{"lifetimeAction": []}`, `{}`, `{"lifetimeActions": [{"trigger": {"timeAfterCreate": "P90D"}}]}`,
		// Two spellings of one field: which one won would be map order.
		`{"lifetimeActions": [{"trigger": {"timeAfterCreate": "P90D"}, "action": {"type": "Rotate"}}], "lifetime_actions": []}`,
		`{"expiresIn": "P1Y", "attributes": {"expiryTime": "P2Y"}}`,
		`{"lifetimeActions": [{"timeAfterCreate": "P30D", "trigger": {"timeAfterCreate": "P300D"}, "action": "Rotate"}]}`} {
		if errs := admin.fails(exitUsage, "keyvault", "key", "rotation-policy", "update", "--hsm-name", "dev", "--name", "app-signing", "--value", bad); !strings.Contains(errs, "--value") {
			t.Fatalf("update --value %s: %q", bad, errs)
		}
	}
	_, errs, code := admin.run("", "keyvault", "key", "rotation-policy", "update", "--hsm-name", "dev", "--name", "app-signing", "--value",
		`{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P1D"},"action":{"type":"Rotate"}}]}`)
	if code != 1 || !strings.Contains(errs, "7 days") {
		t.Fatalf("a too-short rotation: %d %q", code, errs)
	}
	soon := time.Now().Add(10 * 24 * time.Hour).UTC().Format(time.RFC3339)
	later := time.Now().Add(100 * 24 * time.Hour).UTC().Format(time.RFC3339)
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "soon", "--kty", "EC-HSM", "--expires", soon)
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "later", "--kty", "EC-HSM", "--expires", later)
	if got := admin.ok("keyvault", "key", "list-expiring", "--hsm-name", "dev", "--within", "30d", "--query", "[].name", "-o", "tsv"); got != "soon" {
		t.Fatalf("expiring within 30 days: %q", got)
	}
	if got := admin.ok("keyvault", "key", "list-expiring", "--hsm-name", "dev", "--within", "365d", "--query", "[].name", "-o", "tsv"); got != "soon\nlater" {
		t.Fatalf("expiring within a year: %q", got)
	}
}
