package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/servertest"
	"github.com/keyward/keyward/internal/testenv"
)

// TestAuditStory turns logging on with the CLI as the seed does, drives
// allowed and denied operations through azkeys, and reads exactly those
// records back from blob storage with keyward audit query, as an auditor.
func TestAuditStory(t *testing.T) {
	t.Parallel()
	az := testenv.StartAzurite(t)
	env := servertest.Start(t)
	b := env.Boot
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	admin.ok("group", "create", "--name", "logs-rg", "--location", "local")
	admin.ok("storage", "account", "create", "--name", testenv.AzuriteAccount, "--resource-group", "logs-rg",
		"--blob-endpoint", az.Endpoint(), "--account-key", testenv.AzuriteKey)
	hsmResource := admin.ok("keyvault", "show", "--hsm-name", "dev", "--query", "id", "-o", "tsv")
	storageResource := admin.ok("storage", "account", "show", "--name", testenv.AzuriteAccount, "--query", "id", "-o", "tsv")
	admin.ok("monitor", "diagnostic-settings", "create", "--name", "MHSM-Diagnostics", "--resource", hsmResource,
		"--logs", `[{"category": "AuditEvent","enabled": true}]`, "--storage-account", storageResource)
	if got := admin.ok("monitor", "diagnostic-settings", "list", "--resource", hsmResource, "--query", "[].name", "-o", "tsv"); got != "MHSM-Diagnostics" {
		t.Fatalf("settings = %q", got)
	}

	// An app that may sign, and one that may not.
	ctx := context.Background()
	_, err := env.Keys.CreateKey(ctx, "app-signing", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	must(t, err)
	signer := env.ServicePrincipal("signer")
	env.Assign(signer.ObjectID, "21dbd100-6940-42c2-9190-5d6cb909625b", "/keys/app-signing")
	intruder := env.ServicePrincipal("intruder")
	params := azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}
	for range 3 {
		_, err := env.KeysClient(signer.Cred).Sign(ctx, "app-signing", "", params, nil)
		must(t, err)
	}
	if _, err := env.KeysClient(intruder.Cred).Sign(ctx, "app-signing", "", params, nil); err == nil {
		t.Fatal("the intruder signed")
	}

	// The auditor reads the storage and may read the HSM's assignments.
	auditorSP := env.ServicePrincipal("auditor")
	env.Assign(auditorSP.ObjectID, "2c18b078-7c48-4d3a-af88-5a3a1b3f82b3", "/")
	auditor := kw{t, t.TempDir()}
	query := func(args ...string) []audit.Event {
		t.Helper()
		args = append([]string{"audit", "query", "--source", "blob", "--storage-account", testenv.AzuriteAccount,
			"--account-key", testenv.AzuriteKey, "--blob-endpoint", az.Endpoint()}, args...)
		out, errs, code := auditor.run("", args...) // no records (not an error) until the first delivery
		if code != 0 {
			t.Fatalf("keyward %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		var evs []audit.Event
		must(t, json.Unmarshal([]byte(out), &evs))
		return evs
	}
	var signs []audit.Event
	deadline := time.Now().Add(20 * time.Second)
	for {
		signs = query("--operation", "KeySign", "--since", "1h")
		allowed, refused := 0, 0
		for _, e := range signs {
			switch e.HTTPStatusCode {
			case 200:
				allowed++
			case 403:
				refused++
			}
		}
		if allowed == 3 && refused == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d KeySign records in blob storage", len(signs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var ok, denied int
	for i, e := range signs {
		if i > 0 && e.Sequence <= signs[i-1].Sequence {
			t.Fatal("records are out of order")
		}
		if e.Properties.Key != "app-signing" || e.ResourceID != strings.ToUpper(hsmResource) || e.Properties.Scope != "/keys/app-signing" {
			t.Fatalf("record fields: %+v", e)
		}
		switch e.HTTPStatusCode {
		case 200:
			ok++
			if e.Identity.Claim.ObjectID != signer.ObjectID || e.Properties.Authorization.Decision != "Allowed" || e.Properties.Authorization.RoleAssignmentID == "" {
				t.Fatalf("allowed record: %+v", e)
			}
		case 403:
			denied++
			if e.Identity.Claim.ObjectID != intruder.ObjectID || e.Properties.Authorization.Decision != "Denied" || e.ResultType != "Failure" {
				t.Fatalf("denied record: %+v", e)
			}
		}
	}
	if ok != 3 || denied != 1 {
		t.Fatalf("%d allowed and %d denied signs, want 3 and 1", ok, denied)
	}
	if got := query("--operation", "KeySign", "--caller", intruder.AppID); len(got) != 1 || got[0].HTTPStatusCode != 403 {
		t.Fatalf("query by caller: %d records", len(got))
	}
	if got := auditor.ok("audit", "query", "--source", "blob", "--storage-account", testenv.AzuriteAccount, "--account-key", testenv.AzuriteKey,
		"--blob-endpoint", az.Endpoint(), "--operation", "KeySign", "--result", "Failure", "--status", "403", "-o", "table"); !strings.Contains(got, "KeySign") || !strings.Contains(got, "403") {
		t.Fatalf("table:\n%s", got)
	}

	// The auditor also reviews assignments and key expiry on the HSM.
	auditor.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", auditorSP.AppID, "-p", secretOf(t, env, auditorSP), "--tenant", b.TenantID, "--ca-file", b.CAFile)
	auditor.ok("keyvault", "role", "assignment", "list", "--hsm-name", "dev", "-o", "table")
	soon := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "expiring", "--kty", "EC-HSM", "--expires", soon)
	if got := auditor.ok("keyvault", "key", "list", "--hsm-name", "dev", "--query",
		"[?attributes.expires != null && attributes.expires < '"+time.Now().Add(30*24*time.Hour).UTC().Format("2006-01-02")+"'].name", "-o", "tsv"); got != "expiring" {
		t.Fatalf("expiring keys = %q", got)
	}

	// The file journal verifies, and an edit is named.
	journal := filepath.Join(env.Dir, "audit", "dev.jsonl")
	if got := auditor.ok("audit", "verify", "--file", journal, "--query", "intact", "-o", "tsv"); got != "true" {
		t.Fatalf("verify = %q", got)
	}
	data, _ := os.ReadFile(journal)
	tampered := filepath.Join(t.TempDir(), "tampered.jsonl")
	writeFile(t, tampered, strings.Replace(string(data), `"httpStatusCode":403`, `"httpStatusCode":200`, 1))
	_, errs, code := auditor.run("", "audit", "verify", "--file", tampered)
	if code != 1 || !strings.Contains(errs, "NOT intact") || !strings.Contains(errs, "edited") {
		t.Fatalf("tampered verify: %d %q", code, errs)
	}
}

// secretOf gives a test principal a fresh secret through Graph.
func secretOf(t *testing.T, env *servertest.Env, p servertest.Principal) string {
	r := env.Graph("POST", "/servicePrincipals/"+p.ObjectID+"/addPassword", map[string]any{})
	var pw struct{ SecretText string }
	must(t, json.Unmarshal(r.Body, &pw))
	return pw.SecretText
}
