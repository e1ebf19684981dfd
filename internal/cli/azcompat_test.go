package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/servertest"
)

// loggedIn returns the bootstrap administrator's CLI against a new server.
func loggedIn(t *testing.T) (kw, *servertest.Env) {
	t.Helper()
	env := servertest.Start(t)
	b := env.Boot
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret,
		"--tenant", b.TenantID, "--ca-file", b.CAFile)
	return admin, env
}

// Scopes mean what az means (keyvault/custom.py, list_role_assignments
// and delete_role_assignment): --scope S is the assignments at S only.
// Deleting a principal's /keys assignment leaves its / assignment; before
// the fix it revoked both, more than asked. Without --scope, list shows
// every scope; create requires --scope rather than grant at /, the widest.
func TestRoleAssignmentScopes(t *testing.T) {
	t.Parallel()
	admin, env := loggedIn(t)
	sp := env.ServicePrincipal("scoped-app")
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "dev", "--assignee", sp.ObjectID, "--scope", "/",
		"--role", "Managed HSM Crypto User")
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "dev", "--assignee", sp.ObjectID, "--scope", "/keys",
		"--role", "Managed HSM Crypto Officer")
	scopes := func(args ...string) string {
		return admin.ok(append([]string{"keyvault", "role", "assignment", "list", "--hsm-name", "dev", "--assignee", sp.ObjectID,
			"--query", "sort([].scope)", "-o", "tsv"}, args...)...)
	}
	if got := scopes(); got != "/\n/keys" {
		t.Fatalf("list without --scope: %q", got)
	}
	if got := scopes("--scope", "/keys"); got != "/keys" {
		t.Fatalf("list --scope /keys: %q", got)
	}
	if got := scopes("--scope", "/"); got != "/" {
		t.Fatalf("list --scope /: %q", got)
	}
	// az's delete_role_assignment (keyvault/custom.py) returns nothing.
	if out := admin.ok("keyvault", "role", "assignment", "delete", "--hsm-name", "dev", "--assignee", sp.ObjectID,
		"--scope", "/keys"); out != "" {
		t.Fatalf("delete --scope /keys printed %q", out)
	}
	if got := scopes(); got != "/" {
		t.Fatalf("after delete --scope /keys: %q (the / assignment must stay)", got)
	}
	errs := admin.fails(exitUsage, "keyvault", "role", "assignment", "create", "--hsm-name", "dev", "--assignee", sp.ObjectID,
		"--role", "Managed HSM Crypto Officer")
	if !strings.Contains(errs, `"scope"`) {
		t.Fatalf("create without --scope: %q", errs)
	}
}

// Exit codes as az's: 2 for a bad command line (an unknown flag, a missing
// required one, a command group run alone, which also prints its help), 3
// when what is named does not exist, 1 for other failures; errors on
// standard error as "ERROR: (Code) Message", then Code: and Message:.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	for name, args := range map[string][]string{
		"unknown flag":      {"keyvault", "key", "list", "--hsm-name", "dev", "--no-such-flag"},
		"missing required":  {"keyvault", "key", "show", "--hsm-name", "dev"},
		"group alone":       {"keyvault", "key"},
		"unknown command":   {"keyvault", "frobnicate"},
		"unknown top-level": {"frobnicate"},
		// az requires the resource group of a new HSM; there is no implicit one.
		"create without -g": {"keyvault", "create", "--hsm-name", "x", "--administrators", "00000000-0000-4000-8000-000000000000"},
	} {
		if errs := admin.fails(exitUsage, args...); !strings.HasPrefix(errs, "ERROR: ") && !strings.Contains(errs, "Usage:") {
			t.Fatalf("%s: %q", name, errs)
		}
	}
	if errs := admin.fails(exitUsage, "keyvault", "key"); !strings.Contains(errs, "Available Commands:") {
		t.Fatalf("a group run alone prints no help: %q", errs)
	}
	errs := admin.fails(exitNotFound, "keyvault", "key", "show", "--hsm-name", "dev", "--name", "absent")
	if !strings.HasPrefix(errs, "ERROR: (KeyNotFound) ") || !strings.Contains(errs, "\nCode: KeyNotFound\nMessage: ") {
		t.Fatalf("not found: %q", errs)
	}
	admin.fails(exitNotFound, "ad", "group", "show", "-g", "00000000-0000-4000-8000-000000000000")
	// A name no group has is az's CLIError (role/_validators.py, validate_group): exit 1.
	admin.fails(exitFailure, "ad", "group", "show", "-g", "No Such Group")
	admin.fails(exitFailure, "keyvault", "key", "create", "--hsm-name", "dev", "--name", "bad", "--kty", "DSA")
}

// The story's set-up lines run twice give the same objects, as with az:
// ad group create returns the existing group (role/custom.py,
// create_group), ad sp create-for-rbac resets the existing application's
// secret (same appId, the old secret revoked), the resource-manager
// creates are PUTs, and granting a granted role returns the assignment.
func TestSetUpRunsTwice(t *testing.T) {
	t.Parallel()
	admin, env := loggedIn(t)
	twice := func(args ...string) string {
		t.Helper()
		first := admin.ok(args...)
		if second := admin.ok(args...); second != first {
			t.Fatalf("keyward %s twice: %q then %q", strings.Join(args, " "), first, second)
		}
		return first
	}
	team := twice("ad", "group", "create", "--display-name", "Security Team", "--mail-nickname", "security-team", "--query", "id", "-o", "tsv")
	if n := admin.ok("ad", "group", "list", "--display-name", "Security Team", "--query", "length(@)"); n != "1" {
		t.Fatalf("%s groups named Security Team", n)
	}
	twice("role", "assignment", "create", "--assignee-object-id", team, "--assignee-principal-type", "Group",
		"--role", "Managed HSM Contributor", "--query", "id", "-o", "tsv")
	// Flat, as az prints the SDK's RoleAssignment (properties at the top).
	var ra map[string]any
	jsonDecode(t, admin.ok("role", "assignment", "create", "--assignee-object-id", team, "--assignee-principal-type", "Group",
		"--role", "Managed HSM Contributor"), &ra)
	if _, nested := ra["properties"]; nested || ra["principalId"] != team || ra["scope"] == nil || ra["roleDefinitionId"] == nil {
		t.Fatalf("role assignment create: %v", ra)
	}
	twice("group", "create", "--name", "app-rg", "--location", "local", "--query", "id", "-o", "tsv")
	twice("identity", "create", "--name", "app-vm", "--resource-group", "app-rg", "--query", "principalId", "-o", "tsv")
	twice("keyvault", "role", "assignment", "create", "--hsm-name", "dev", "--assignee", team, "--scope", "/",
		"--role", "Managed HSM Crypto Auditor", "--query", "name", "-o", "tsv")

	var first, second struct{ AppID, Password, Tenant string }
	jsonDecode(t, admin.ok("ad", "sp", "create-for-rbac", "-n", "ci-deployer"), &first)
	out, errs, code := admin.run("", "ad", "sp", "create-for-rbac", "-n", "ci-deployer")
	if code != 0 || !strings.Contains(errs, "Found an existing application instance") {
		t.Fatalf("create-for-rbac again: %d %s", code, errs)
	}
	jsonDecode(t, out, &second)
	if second.AppID != first.AppID || second.Password == first.Password {
		t.Fatalf("create-for-rbac again: appId %s then %s", first.AppID, second.AppID)
	}
	if n := admin.ok("ad", "sp", "list", "--display-name", "ci-deployer", "--query", "length(@)"); n != "1" {
		t.Fatalf("%s applications named ci-deployer", n)
	}
	app := kw{t, t.TempDir()}
	login := func(secret string) int {
		_, _, code := app.run("", "login", "--server", env.Boot.AuthorityHost, "--service-principal", "-u", first.AppID, "-p", secret,
			"--tenant", first.Tenant, "--ca-file", env.Boot.CAFile)
		return code
	}
	if login(first.Password) == 0 {
		t.Fatal("the reset secret still signs in")
	}
	if code := login(second.Password); code != 0 {
		t.Fatalf("the new secret: exit %d", code)
	}
}

// az's global flags are taken everywhere: -o yaml, --only-show-errors,
// --debug, --verbose, and --subscription naming the one subscription
// (another is refused as az refuses an unknown one).
func TestGlobalFlags(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	sub := admin.ok("account", "show", "--query", "id", "-o", "tsv")
	got := admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "yaml-key", "--kty", "EC-HSM",
		"--only-show-errors", "--debug", "--verbose", "--subscription", sub, "-o", "yaml", "--query", "{name: key.kid, ops: key.keyOps}")
	if !strings.Contains(got, "ops:\n- sign\n- verify") || !strings.HasPrefix(got, "name: https://") {
		t.Fatalf("yaml output:\n%s", got)
	}
	errs := admin.fails(exitFailure, "keyvault", "key", "list", "--hsm-name", "dev", "--subscription", "00000000-0000-0000-0000-000000000000")
	if !strings.Contains(errs, "Subscription '00000000-0000-0000-0000-000000000000' not found") {
		t.Fatalf("another subscription: %q", errs)
	}
}

// account list shows the one subscription, in az's table; account set
// takes it, by id or name, and refuses another.
func TestAccountListAndSet(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	sub := admin.ok("account", "show", "--query", "id", "-o", "tsv")
	if got := admin.ok("account", "list", "--query", "[].[id, isDefault, cloudName]", "-o", "tsv"); got != sub+"\tTrue\tKeyward" {
		t.Fatalf("account list: %q", got)
	}
	if table := admin.ok("account", "list", "-o", "table"); !strings.HasPrefix(table, "Name     CloudName  SubscriptionId") {
		t.Fatalf("account list -o table:\n%s", table)
	}
	admin.ok("account", "set", "--subscription", sub)
	admin.ok("account", "set", "-n", "Keyward")
	if errs := admin.fails(exitFailure, "account", "set", "--subscription", "other"); !strings.Contains(errs, "doesn't exist") {
		t.Fatalf("account set to another: %q", errs)
	}
}

// role assignment list shows, as az does, the assignments at the scope
// given (the subscription by default, or -g's group), those above it too
// with --include-inherited, and every one with --all.
func TestARMRoleAssignmentListScopes(t *testing.T) {
	t.Parallel()
	admin, env := loggedIn(t)
	sub := admin.ok("account", "show", "--query", "id", "-o", "tsv")
	sp := env.ServicePrincipal("arm-lister")
	admin.ok("group", "create", "--name", "app-rg", "--location", "local")
	admin.ok("role", "assignment", "create", "--assignee-object-id", sp.ObjectID, "--role", "Reader")
	admin.ok("role", "assignment", "create", "--assignee-object-id", sp.ObjectID, "--role", "Managed HSM Contributor",
		"--scope", "/subscriptions/"+sub+"/resourceGroups/app-rg")
	scopes := func(args ...string) string {
		t.Helper()
		return admin.ok(append([]string{"role", "assignment", "list", "--assignee", sp.ObjectID, "--query", "sort([].scope)", "-o", "tsv"}, args...)...)
	}
	subScope, rgScope := "/subscriptions/"+sub, "/subscriptions/"+sub+"/resourceGroups/app-rg"
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"default: the subscription": {nil, subScope},
		"-g: the group only":        {[]string{"-g", "app-rg"}, rgScope},
		"-g --include-inherited":    {[]string{"-g", "app-rg", "--include-inherited"}, subScope + "\n" + rgScope},
		"--all":                     {[]string{"--all"}, subScope + "\n" + rgScope},
		"--role filters":            {[]string{"--all", "--role", "Reader"}, subScope},
		"--scope of the group":      {[]string{"--scope", rgScope}, rgScope},
	} {
		if got := scopes(c.args...); got != c.want {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
	if table := admin.ok("role", "assignment", "list", "--assignee", sp.ObjectID, "-o", "table"); !strings.HasPrefix(table, "Principal") ||
		!strings.Contains(table, "Role") || !strings.Contains(table, sp.AppID) {
		t.Fatalf("table:\n%s", table)
	}
}

// The flags az scripts put on resource groups and deletes: -g as well as
// -n, --yes and --no-wait; group list in az's table (Name, Location,
// Status).
func TestGroupFlagsAndDeletes(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	admin.ok("group", "create", "-g", "scripted-rg", "-l", "local")
	if got := admin.ok("group", "show", "-g", "scripted-rg", "--query", "name", "-o", "tsv"); got != "scripted-rg" {
		t.Fatalf("group show -g: %q", got)
	}
	if table := admin.ok("group", "list", "-o", "table"); !strings.HasPrefix(table, "Name ") || !strings.Contains(table, "Status") ||
		!strings.Contains(table, "Succeeded") {
		t.Fatalf("group list -o table:\n%s", table)
	}
	admin.ok("group", "delete", "-n", "scripted-rg", "--yes", "--no-wait")
	admin.fails(exitNotFound, "group", "show", "-n", "scripted-rg")
	admin.fails(exitUsage, "group", "show")
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "to-delete", "--kty", "EC-HSM", "-o", "none")
	admin.ok("keyvault", "key", "delete", "--hsm-name", "dev", "--name", "to-delete", "-y", "-o", "none")
}

// ad sp list -o table has az's columns (role/commands.py,
// get_graph_object_transformer('sp')): DisplayName, Id, AppId, CreatedDateTime.
func TestSPListTable(t *testing.T) {
	t.Parallel()
	admin, env := loggedIn(t)
	sp := env.ServicePrincipal("tabled-app")
	table := admin.ok("ad", "sp", "list", "--display-name", "tabled-app", "-o", "table")
	lines := strings.Split(table, "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "DisplayName  Id ") || !strings.Contains(lines[0], "AppId") ||
		!strings.Contains(lines[0], "CreatedDateTime") || !strings.Contains(lines[2], sp.AppID) || !strings.Contains(lines[2], sp.ObjectID) {
		t.Fatalf("ad sp list -o table:\n%s", table)
	}
}

// identity create|show|list print az's shape (the msi SDK's Identity
// model: principalId, clientId and tenantId at the top, no nested
// properties), and every result whose id names a resource group carries
// resourceGroup (azure-cli core, _add_resource_group).
func TestIdentityShape(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	admin.ok("group", "create", "-n", "shape-rg")
	for _, out := range []string{
		admin.ok("identity", "create", "-n", "shaped", "-g", "shape-rg"),
		admin.ok("identity", "show", "-n", "shaped", "-g", "shape-rg"),
		admin.ok("identity", "list", "-g", "shape-rg", "--query", "[0]"),
	} {
		var got map[string]any
		jsonDecode(t, out, &got)
		if _, nested := got["properties"]; nested {
			t.Fatalf("identity output has properties:\n%s", out)
		}
		for _, k := range []string{"clientId", "principalId", "tenantId", "id", "name", "location", "type"} {
			if s, _ := got[k].(string); s == "" {
				t.Fatalf("identity output lacks %s:\n%s", k, out)
			}
		}
		if got["resourceGroup"] != "shape-rg" {
			t.Fatalf("identity output's resourceGroup: %v", got["resourceGroup"])
		}
	}
}

// storage account and monitor diagnostic-settings print az's flat shapes
// (the storage and monitor SDK models: primaryEndpoints and
// provisioningState, storageAccountId and logs at the top, no properties),
// with resourceGroup.
func TestStorageAndDiagnosticShapes(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	admin.ok("group", "create", "-n", "logs-rg")
	outs := []string{admin.ok("storage", "account", "create", "-n", "shapelogs", "-g", "logs-rg",
		"--blob-endpoint", "http://127.0.0.1:1/shapelogs", "--account-key", "a2V5")}
	outs = append(outs, admin.ok("storage", "account", "show", "-n", "shapelogs"), admin.ok("storage", "account", "list", "--query", "[0]"))
	var id string
	for _, out := range outs {
		var got map[string]any
		jsonDecode(t, out, &got)
		eps, _ := got["primaryEndpoints"].(map[string]any)
		if _, nested := got["properties"]; nested || eps["blob"] == nil || got["provisioningState"] == nil || got["resourceGroup"] != "logs-rg" {
			t.Fatalf("storage account output:\n%s", out)
		}
		id, _ = got["id"].(string)
	}
	if strings.Contains(strings.Join(outs, ""), "a2V5") {
		t.Fatal("the account key is printed")
	}
	hsm := admin.ok("keyvault", "show", "--hsm-name", "dev", "--query", "id", "-o", "tsv")
	outs = []string{admin.ok("monitor", "diagnostic-settings", "create", "-n", "shape-diag", "--resource", hsm, "--storage-account", id,
		"--logs", `[{"category": "AuditEvent", "enabled": true}]`)}
	outs = append(outs, admin.ok("monitor", "diagnostic-settings", "show", "-n", "shape-diag", "--resource", hsm),
		admin.ok("monitor", "diagnostic-settings", "list", "--resource", hsm, "--query", "[0]"))
	for _, out := range outs {
		var got map[string]any
		jsonDecode(t, out, &got)
		logs, _ := got["logs"].([]any)
		if _, nested := got["properties"]; nested || got["storageAccountId"] != id || len(logs) != 1 {
			t.Fatalf("diagnostic setting output:\n%s", out)
		}
	}
}

// ad signed-in-user show prints the signed-in user; an application's
// sign-in has none, as Graph says.
func TestSignedInUserShow(t *testing.T) {
	t.Parallel()
	admin, env := loggedIn(t)
	admin.ok("ad", "user", "create", "--display-name", "Una", "--user-principal-name", "una@contoso.test", "--password", "Correct-Horse-9")
	una := kw{t, t.TempDir()}
	una.ok("login", "--server", env.Boot.AuthorityHost, "-u", "una@contoso.test", "-p", "Correct-Horse-9", "--tenant", env.Boot.TenantID,
		"--ca-file", env.Boot.CAFile)
	if got := una.ok("ad", "signed-in-user", "show", "--query", "userPrincipalName", "-o", "tsv"); got != "una@contoso.test" {
		t.Fatalf("signed-in-user show: %q", got)
	}
	if errs := admin.fails(exitFailure, "ad", "signed-in-user", "show"); !strings.Contains(errs, "delegated authentication flow") {
		t.Fatalf("an application's signed-in-user show: %q", errs)
	}
}

// Every key command that takes a name takes --id too: a key id (with or
// without its version), or a deleted key's recoveryId.
func TestKeyCommandsTakeID(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	kid := admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "by-id", "--kty", "EC-HSM", "--query", "key.kid", "-o", "tsv")
	base := kid[:strings.LastIndex(kid, "/")]
	for _, id := range []string{kid, base} {
		if got := admin.ok("keyvault", "key", "show", "--id", id, "--query", "key.kid", "-o", "tsv"); got != kid {
			t.Fatalf("key show --id %s: %q", id, got)
		}
	}
	recovery := admin.ok("keyvault", "key", "delete", "--id", base, "--query", "recoveryId", "-o", "tsv")
	if !strings.Contains(recovery, "/deletedkeys/by-id") {
		t.Fatalf("recoveryId %q", recovery)
	}
	admin.ok("keyvault", "key", "recover", "--id", recovery, "-o", "none")
	admin.ok("keyvault", "key", "show", "--id", base, "-o", "none")
	if errs := admin.fails(exitUsage, "keyvault", "key", "show", "--id", "https://dev.example/secrets/x"); !strings.Contains(errs, "not a key id") {
		t.Fatalf("a secret's id: %q", errs)
	}
}

// Attack replayed: a resource-group Owner made a managed identity named
// like the application an administrator's script resets; create-for-rbac
// found it by a case-insensitive name, gave the administrator its secret
// (and the script's roles), and revoked the identity's own. Now, as az,
// only applications of exactly that name are reset, and the directory
// refuses credential changes on a managed identity.
func TestCreateForRBACNeverTakesAManagedIdentity(t *testing.T) {
	t.Parallel()
	admin, env := loggedIn(t)
	sub := admin.ok("account", "show", "--query", "id", "-o", "tsv")
	admin.ok("group", "create", "-n", "team-rg")
	mal := env.ServicePrincipal("mallory")
	admin.ok("role", "assignment", "create", "--assignee", mal.AppID, "--role", "Owner", "--scope", "/subscriptions/"+sub+"/resourceGroups/team-rg")
	m := kw{t, t.TempDir()}
	m.ok("login", "--server", env.Boot.AuthorityHost, "--service-principal", "-u", mal.AppID, "-p", mal.Secret,
		"--tenant", env.Boot.TenantID, "--ca-file", env.Boot.CAFile)
	m.ok("identity", "create", "-n", "CI-DEPLOYER", "-g", "team-rg") // Graph's eq ignores case
	clients := m.ok("identity", "list", "-g", "team-rg", "--query", "[].clientId", "-o", "tsv")

	out, errs, code := admin.run("", "ad", "sp", "create-for-rbac", "-n", "ci-deployer")
	if code != 0 || strings.Contains(errs, "Found an existing application") {
		t.Fatalf("create-for-rbac beside managed identities of that name: %d %s", code, errs)
	}
	var got struct{ AppID string }
	jsonDecode(t, out, &got)
	if strings.Contains(clients, got.AppID) {
		t.Fatalf("create-for-rbac handed out a managed identity's credential (appId %s)", got.AppID)
	}
	mi := strings.Split(clients, "\n")[0]
	tok := env.AdminToken("https://graph.microsoft.com")
	for _, op := range []string{"addPassword", "removePassword"} {
		r := env.Do("POST", env.Boot.AuthorityHost+"v1.0/servicePrincipals/"+mi+"/"+op, tok, map[string]string{"keyId": "x"})
		if r.Status != 400 || !strings.Contains(string(r.Body), "managed identity") {
			t.Fatalf("Graph %s on a managed identity: %d %s", op, r.Status, r.Body)
		}
	}
}

// identity federated-credential list, show and delete, in az's flat shape.
func TestFederatedCredentialCommands(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	admin.ok("group", "create", "-n", "fic-rg")
	admin.ok("identity", "create", "-n", "fic-id", "-g", "fic-rg")
	created := admin.ok("identity", "federated-credential", "create", "-n", "gh", "--identity-name", "fic-id", "-g", "fic-rg",
		"--issuer", "https://token.actions.githubusercontent.com", "--subject", "repo:contoso/app:ref:refs/heads/main")
	var got map[string]any
	jsonDecode(t, created, &got)
	if _, nested := got["properties"]; nested || got["issuer"] != "https://token.actions.githubusercontent.com" || got["resourceGroup"] != "fic-rg" {
		t.Fatalf("create:\n%s", created)
	}
	if n := admin.ok("identity", "federated-credential", "list", "--identity-name", "fic-id", "-g", "fic-rg", "--query", "[].subject", "-o", "tsv"); n != "repo:contoso/app:ref:refs/heads/main" {
		t.Fatalf("list: %q", n)
	}
	if s := admin.ok("identity", "federated-credential", "show", "-n", "gh", "--identity-name", "fic-id", "-g", "fic-rg", "--query", "name", "-o", "tsv"); s != "gh" {
		t.Fatalf("show: %q", s)
	}
	admin.ok("identity", "federated-credential", "delete", "-n", "gh", "--identity-name", "fic-id", "-g", "fic-rg", "--yes")
	admin.fails(exitNotFound, "identity", "federated-credential", "show", "-n", "gh", "--identity-name", "fic-id", "-g", "fic-rg")
	if n := admin.ok("identity", "federated-credential", "list", "--identity-name", "fic-id", "-g", "fic-rg"); n != "[]" {
		t.Fatalf("list after delete: %q", n)
	}
}

// keyvault key set-attributes changes only what it is given.
func TestKeySetAttributes(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "attrs", "--kty", "EC-HSM", "--tags", "team=security")
	got := admin.ok("keyvault", "key", "set-attributes", "--hsm-name", "dev", "--name", "attrs", "--enabled", "false", "--expires", "2030-01-01",
		"--query", "[attributes.enabled, attributes.expires, tags.team]", "-o", "tsv")
	if got != "false\n2030-01-01T00:00:00+00:00\nsecurity" {
		t.Fatalf("set-attributes: %q", got)
	}
	digest := "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	admin.fails(exitFailure, "keyvault", "key", "sign", "--hsm-name", "dev", "--name", "attrs", "--algorithm", "ES256", "--digest", digest)
	admin.ok("keyvault", "key", "set-attributes", "--hsm-name", "dev", "--name", "attrs", "--enabled", "true", "--tags", "team=apps", "-o", "none")
	if got := admin.ok("keyvault", "key", "show", "--hsm-name", "dev", "--name", "attrs", "--query", "[attributes.enabled, tags.team]", "-o", "tsv"); got != "true\napps" {
		t.Fatalf("after re-enabling: %q", got)
	}
	admin.ok("keyvault", "key", "sign", "--hsm-name", "dev", "--name", "attrs", "--algorithm", "ES256", "--digest", digest, "-o", "none")
	admin.fails(exitUsage, "keyvault", "key", "set-attributes", "--hsm-name", "dev", "--name", "attrs", "--enabled", "maybe")
}

// keyvault key random prints az's {"value": base64}; a count out of range
// is the service's error.
func TestKeyRandom(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	v := admin.ok("keyvault", "key", "random", "--hsm-name", "dev", "--count", "32", "--query", "value", "-o", "tsv")
	if b, err := base64.StdEncoding.DecodeString(v); err != nil || len(b) != 32 {
		t.Fatalf("random: %q %v", v, err)
	}
	admin.fails(exitFailure, "keyvault", "key", "random", "--hsm-name", "dev", "--count", "500")
}

// key sign and verify print az's SignResult and VerifyResult: keyId, not kid.
func TestSignVerifyShapes(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	kid := admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "signer", "--kty", "EC-HSM", "--query", "key.kid", "-o", "tsv")
	digest := "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	var sig struct{ Algorithm, KeyID, Signature string }
	jsonDecode(t, admin.ok("keyvault", "key", "sign", "--hsm-name", "dev", "--name", "signer", "--algorithm", "ES256", "--digest", digest), &sig)
	if sig.KeyID != kid || sig.Algorithm != "ES256" || sig.Signature == "" {
		t.Fatalf("sign: %+v", sig)
	}
	var ver struct {
		Algorithm, KeyID string
		IsValid          bool
	}
	jsonDecode(t, admin.ok("keyvault", "key", "verify", "--id", kid, "--algorithm", "ES256", "--digest", digest, "--signature", sig.Signature), &ver)
	if !ver.IsValid || ver.KeyID != kid {
		t.Fatalf("verify: %+v", ver)
	}
}

// keyvault list-deleted and recover: a deleted HSM comes back in its group.
func TestHSMListDeletedAndRecover(t *testing.T) {
	t.Parallel()
	admin, env := loggedIn(t)
	me := admin.ok("ad", "sp", "show", "--id", env.Boot.ClientID, "--query", "id", "-o", "tsv")
	admin.ok("group", "create", "-n", "hsm-rg")
	admin.ok("keyvault", "create", "--hsm-name", "comeback", "-g", "hsm-rg", "--administrators", me, "--retention-days", "7", "-o", "none")
	admin.ok("keyvault", "delete", "--hsm-name", "comeback", "--yes")
	if got := admin.ok("keyvault", "list-deleted", "--resource-type", "hsm", "--query", "[].name", "-o", "tsv"); got != "comeback" {
		t.Fatalf("list-deleted: %q", got)
	}
	got := admin.ok("keyvault", "recover", "--hsm-name", "comeback", "--query", "[name, resourceGroup, properties.provisioningState]", "-o", "tsv")
	if got != "comeback\nhsm-rg\nSucceeded" {
		t.Fatalf("recover: %q", got)
	}
	if n := admin.ok("keyvault", "list-deleted", "--query", "length(@)"); n != "0" {
		t.Fatalf("%s deleted after the recovery", n)
	}
	admin.ok("keyvault", "show", "--hsm-name", "comeback", "-o", "none")
}

// keyvault key encrypt and decrypt, in az's shapes: a round trip of text
// (--data-type plaintext) and of base64.
func TestKeyEncryptDecrypt(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "wrapper", "--kty", "RSA-HSM", "--size", "2048",
		"--ops", "encrypt", "decrypt", "-o", "none")
	var enc struct{ Kid, Result, Algorithm string }
	jsonDecode(t, admin.ok("keyvault", "key", "encrypt", "--hsm-name", "dev", "--name", "wrapper", "--algorithm", "RSA-OAEP-256",
		"--value", "invoice 4711", "--data-type", "plaintext"), &enc)
	if enc.Kid == "" || enc.Result == "" || enc.Algorithm != "RSA-OAEP-256" {
		t.Fatalf("encrypt: %+v", enc)
	}
	got := admin.ok("keyvault", "key", "decrypt", "--id", enc.Kid, "--algorithm", "RSA-OAEP-256", "--value", enc.Result,
		"--data-type", "plaintext", "--query", "result", "-o", "tsv")
	if got != "invoice 4711" {
		t.Fatalf("decrypt: %q", got)
	}
	if got := admin.ok("keyvault", "key", "decrypt", "--id", enc.Kid, "--algorithm", "RSA-OAEP-256", "--value", enc.Result,
		"--query", "result", "-o", "tsv"); got != base64.StdEncoding.EncodeToString([]byte("invoice 4711")) {
		t.Fatalf("decrypt as base64: %q", got)
	}
	admin.fails(exitUsage, "keyvault", "key", "encrypt", "--hsm-name", "dev", "--name", "wrapper", "--algorithm", "RSA-OAEP-256",
		"--value", "not base64!")
}

// Directory names as az matches them (role/custom.py): list
// --display-name and show -g take a prefix (show needs exactly one match),
// --upn, --spn and --filter narrow lists.
func TestDirectoryFilters(t *testing.T) {
	t.Parallel()
	admin, env := loggedIn(t)
	admin.ok("ad", "group", "create", "--display-name", "App Auditors", "--mail-nickname", "app-auditors")
	admin.ok("ad", "group", "create", "--display-name", "App DevOps", "--mail-nickname", "app-devops")
	if n := admin.ok("ad", "group", "list", "--display-name", "app", "--query", "length(@)"); n != "2" {
		t.Fatalf("list --display-name app: %s groups", n)
	}
	if got := admin.ok("ad", "group", "show", "-g", "App Dev", "--query", "displayName", "-o", "tsv"); got != "App DevOps" {
		t.Fatalf("show -g 'App Dev': %q", got)
	}
	if errs := admin.fails(exitFailure, "ad", "group", "show", "-g", "App"); !strings.Contains(errs, "More than 1 group") {
		t.Fatalf("show -g App: %q", errs)
	}
	if errs := admin.fails(exitFailure, "ad", "group", "show", "-g", "Nobody"); !strings.Contains(errs, "No group matches the name of 'Nobody'") {
		t.Fatalf("show -g Nobody: %q", errs)
	}
	// The exact name first (role/_validators.py, validate_group), then a prefix.
	admin.ok("ad", "group", "create", "--display-name", "App DevOps Leads", "--mail-nickname", "app-devops-leads")
	if got := admin.ok("ad", "group", "show", "-g", "App DevOps", "--query", "mailNickname", "-o", "tsv"); got != "app-devops" {
		t.Fatalf("show -g 'App DevOps' beside 'App DevOps Leads': %q", got)
	}
	if got := admin.ok("ad", "group", "list", "--filter", "mailNickname eq 'app-devops'", "--query", "[].displayName", "-o", "tsv"); got != "App DevOps" {
		t.Fatalf("list --filter: %q", got)
	}
	admin.ok("ad", "user", "create", "--display-name", "Vera", "--user-principal-name", "vera@contoso.test", "--password", "Correct-Horse-7")
	if got := admin.ok("ad", "user", "list", "--upn", "vera@contoso.test", "--query", "[].displayName", "-o", "tsv"); got != "Vera" {
		t.Fatalf("user list --upn: %q", got)
	}
	sp := env.ServicePrincipal("spn-app")
	if got := admin.ok("ad", "sp", "list", "--spn", sp.AppID, "--query", "[].id", "-o", "tsv"); got != sp.ObjectID {
		t.Fatalf("sp list --spn: %q", got)
	}
}

// keyvault key download writes the public key, PEM or DER, as az does,
// and refuses to overwrite a file.
func TestKeyDownload(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	dir := t.TempDir()
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "rsa-dl", "--kty", "RSA-HSM", "--size", "2048", "-o", "none")
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "ec-dl", "--kty", "EC-HSM", "--curve", "P-384", "-o", "none")
	for _, c := range []struct{ name, enc string }{{"rsa-dl", "PEM"}, {"ec-dl", "PEM"}, {"ec-dl", "DER"}} {
		file := filepath.Join(dir, c.name+"."+c.enc)
		admin.ok("keyvault", "key", "download", "--hsm-name", "dev", "--name", c.name, "--file", file, "--encoding", c.enc)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if c.enc == "PEM" {
			block, _ := pem.Decode(data)
			if block == nil || block.Type != "PUBLIC KEY" {
				t.Fatalf("%s: not a PEM public key:\n%s", file, data)
			}
			data = block.Bytes
		}
		if _, err := x509.ParsePKIXPublicKey(data); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	admin.fails(exitUsage, "keyvault", "key", "download", "--hsm-name", "dev", "--name", "rsa-dl", "--file", filepath.Join(dir, "rsa-dl.PEM"))
}

// keyvault key import takes a PEM private key (as az's --pem-file or
// --pem-string); the HSM then signs with it, and the signature verifies
// under the key kept outside. An encrypted PEM is refused.
func TestKeyImport(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ec.pem")
	writeFile(t, file, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	admin.ok("keyvault", "key", "import", "--hsm-name", "dev", "--name", "imported-ec", "--pem-file", file, "--ops", "sign", "verify", "-o", "none")
	digest := sha256.Sum256([]byte("imported"))
	sig := admin.ok("keyvault", "key", "sign", "--hsm-name", "dev", "--name", "imported-ec", "--algorithm", "ES256",
		"--digest", base64.StdEncoding.EncodeToString(digest[:]), "--query", "signature", "-o", "tsv")
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(raw) != 64 {
		t.Fatalf("signature %q: %v", sig, err)
	}
	if !ecdsa.Verify(&ec.PublicKey, digest[:], new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])) {
		t.Fatal("the imported key's signature does not verify under the original")
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}))
	n := admin.ok("keyvault", "key", "import", "--hsm-name", "dev", "--name", "imported-rsa", "--pem-string", rsaPEM, "--query", "key.n", "-o", "tsv")
	if got, _ := base64.StdEncoding.DecodeString(n); new(big.Int).SetBytes(got).Cmp(rsaKey.N) != 0 {
		t.Fatalf("imported modulus %q", n)
	}
	encrypted := "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
	if errs := admin.fails(exitUsage, "keyvault", "key", "import", "--hsm-name", "dev", "--name", "x", "--pem-string", encrypted); !strings.Contains(errs, "encrypted") {
		t.Fatalf("encrypted PEM: %q", errs)
	}
}

// The key family's shapes, field for field, as az prints them
// (keyvault/_transformers.py: transform_key_output for create and show,
// transform_key_list_output for list).
func TestKeyShapesAsAz(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	keys := func(out string) []string {
		var m map[string]any
		jsonDecode(t, out, &m)
		ks := sortedKeys(m)
		if a, ok := m["attributes"].(map[string]any); ok {
			for _, k := range sortedKeys(a) {
				ks = append(ks, "attributes."+k)
			}
		}
		return ks
	}
	want := "attributes key managed releasePolicy tags attributes.created attributes.enabled attributes.expires attributes.exportable " +
		"attributes.hsmPlatform attributes.notBefore attributes.recoverableDays attributes.recoveryLevel attributes.updated"
	for _, out := range []string{
		admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "shaped", "--kty", "EC-HSM"),
		admin.ok("keyvault", "key", "show", "--hsm-name", "dev", "--name", "shaped"),
	} {
		if got := strings.Join(keys(out), " "); got != want {
			t.Fatalf("key output fields:\n got %s\nwant %s", got, want)
		}
	}
	item := admin.ok("keyvault", "key", "list", "--hsm-name", "dev", "--query", "[0]")
	if got := strings.Join(keys(item), " "); !strings.HasPrefix(got, "attributes kid managed name releasePolicy tags ") {
		t.Fatalf("key list item fields: %s", got)
	}
}

// Resource groups and HSM role definitions, field for field, as az prints
// them (the resources SDK's ResourceGroup; keyvault/custom.py,
// _reconstruct_role_definition).
func TestGroupAndRoleDefinitionShapesAsAz(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	fields := func(out string) string {
		var m map[string]any
		jsonDecode(t, out, &m)
		return strings.Join(sortedKeys(m), " ")
	}
	for _, out := range []string{admin.ok("group", "create", "-n", "shape-rg"), admin.ok("group", "show", "-n", "shape-rg"),
		admin.ok("group", "list", "--query", "[0]")} {
		if got := fields(out); got != "id location managedBy name properties resourceGroup tags type" {
			t.Fatalf("resource group fields: %s", got)
		}
	}
	def := admin.ok("keyvault", "role", "definition", "list", "--hsm-name", "dev", "--query", "[0]")
	if got := fields(def); got != "assignableScopes description id name permissions roleName roleType type" {
		t.Fatalf("role definition fields: %s", got)
	}
	perm := admin.ok("keyvault", "role", "definition", "list", "--hsm-name", "dev", "--query", "[0].permissions[0]")
	if got := fields(perm); got != "actions dataActions notActions notDataActions" {
		t.Fatalf("permission fields: %s", got)
	}
}

// ad sp create-for-rbac --role --scopes grants the role at each scope, as
// az does (role/custom.py, create_service_principal_for_rbac); one of the
// two alone is a usage error.
func TestCreateForRBACGrants(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	admin.ok("group", "create", "-n", "rbac-a")
	admin.ok("group", "create", "-n", "rbac-b")
	a := admin.ok("group", "show", "-n", "rbac-a", "--query", "id", "-o", "tsv")
	b := admin.ok("group", "show", "-n", "rbac-b", "--query", "id", "-o", "tsv")
	app := admin.ok("ad", "sp", "create-for-rbac", "--name", "deployer", "--role", "Managed HSM Contributor", "--scopes", a, b,
		"--query", "appId", "-o", "tsv")
	for _, g := range []string{"rbac-a", "rbac-b"} {
		got := admin.ok("role", "assignment", "list", "-g", g, "--query", "[].[principalName, roleDefinitionName, principalType]", "-o", "tsv")
		if got != app+"\tManaged HSM contributor\tServicePrincipal" {
			t.Fatalf("assignments at %s: %q", g, got)
		}
	}
	admin.fails(exitUsage, "ad", "sp", "create-for-rbac", "--name", "half", "--role", "Managed HSM Contributor")
	admin.fails(exitUsage, "ad", "sp", "create-for-rbac", "--name", "half", "--scopes", a)
}

// The argument forms az takes (keyvault/_params.py, role/_params.py):
// space-separated lists side by side (--ops a b --tags x=y z=w), and
// three-state flags alone or with true/false (get_three_state_flag).
func TestAzArgumentForms(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	got := admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "cmk", "--kty", "RSA-HSM", "--ops", "wrapKey", "unwrapKey",
		"--tags", "owner=security", "env=prod", "--query", "[join(' ', key.keyOps), tags.owner, tags.env]", "-o", "tsv")
	if got != "wrapKey unwrapKey\nsecurity\nprod" { // a list: one row per item, as knack prints it
		t.Fatalf("create --ops a b --tags x y: %q", got)
	}
	got = admin.ok("keyvault", "key", "set-attributes", "--hsm-name", "dev", "--name", "cmk", "--tags", "a=b", "c=d", "--ops", "wrapKey",
		"--enabled", "false", "--query", "[join(' ', key.keyOps), tags.c, attributes.enabled]", "-o", "tsv")
	if got != "wrapKey\nd\nfalse" {
		t.Fatalf("set-attributes --tags a b --ops x --enabled false: %q", got)
	}
	if got := admin.ok("keyvault", "key", "set-attributes", "--hsm-name", "dev", "--name", "cmk", "--enabled", "--query", "attributes.enabled"); got != "true" {
		t.Fatalf("--enabled alone: %q", got)
	}
	if got := admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "off", "--kty", "EC-HSM", "--disabled", "true",
		"--query", "attributes.enabled"); got != "false" {
		t.Fatalf("--disabled true: %q", got)
	}
	// A curve alone means an EC key (keyvault/_validators.py, validate_key_type).
	if got := admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "curved", "--curve", "P-384", "--query", "key.kty", "-o", "tsv"); got != "EC-HSM" {
		t.Fatalf("--curve without --kty: %q", got)
	}
	if got := admin.ok("keyvault", "role", "definition", "list", "--hsm-name", "dev", "--custom-role-only", "true", "--query", "length(@)"); got != "0" {
		t.Fatalf("--custom-role-only true: %q", got)
	}
}

// More of what runbooks use: a deleted HSM found without --location
// (keyvault/_validators.py, validate_deleted_vault_or_hsm_name), key
// show-deleted, a password credential reset (role/custom.py,
// reset_service_principal_credential), group exists, settings as the SDK's
// KeyVaultSetting (settingType), and knack's automatic tables where az has
// no table format.
func TestRunbookCommands(t *testing.T) {
	t.Parallel()
	admin, env := loggedIn(t)
	me := admin.ok("ad", "sp", "show", "--id", env.Boot.ClientID, "--query", "id", "-o", "tsv")
	admin.ok("group", "create", "-n", "east-rg", "-l", "eastus")
	admin.ok("keyvault", "create", "--hsm-name", "east", "-g", "east-rg", "-l", "eastus", "--administrators", me, "--retention-days", "7")
	admin.ok("keyvault", "delete", "--hsm-name", "east")
	if got := admin.ok("keyvault", "show-deleted", "--hsm-name", "east", "--query", "properties.location", "-o", "tsv"); got != "eastus" {
		t.Fatalf("show-deleted without --location: %q", got)
	}
	admin.ok("keyvault", "recover", "--hsm-name", "east")
	admin.ok("keyvault", "delete", "--hsm-name", "east")
	admin.ok("keyvault", "purge", "--hsm-name", "east")
	admin.fails(exitNotFound, "keyvault", "purge", "--hsm-name", "east")

	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "gone", "--kty", "EC-HSM")
	admin.ok("keyvault", "key", "delete", "--hsm-name", "dev", "--name", "gone")
	var deleted map[string]any
	jsonDecode(t, admin.ok("keyvault", "key", "show-deleted", "--hsm-name", "dev", "--name", "gone"), &deleted)
	if deleted["recoveryId"] == nil || deleted["deletedDate"] == nil || deleted["key"] == nil {
		t.Fatalf("key show-deleted: %v", deleted)
	}

	app := admin.ok("ad", "sp", "create-for-rbac", "--name", "rotated", "--query", "appId", "-o", "tsv")
	var reset map[string]any
	jsonDecode(t, admin.ok("ad", "sp", "credential", "reset", "--id", app), &reset)
	if reset["appId"] != app || reset["password"] == "" || reset["tenant"] != env.Boot.TenantID {
		t.Fatalf("credential reset: %v", reset)
	}
	if n := admin.ok("ad", "sp", "show", "--id", app, "--query", "length(passwordCredentials)"); n != "1" {
		t.Fatalf("after reset the old secret stays: %s secrets", n)
	}

	if got := admin.ok("group", "exists", "-n", "east-rg"); got != "true" {
		t.Fatalf("group exists: %q", got)
	}
	if got := admin.ok("group", "exists", "-n", "west-rg"); got != "false" {
		t.Fatalf("group exists (absent): %q", got)
	}
	if got := admin.ok("keyvault", "setting", "list", "--hsm-name", "dev", "--query", "[0].settingType", "-o", "tsv"); got != "boolean" {
		t.Fatalf("setting list: %q", got)
	}
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "listed", "--kty", "EC-HSM")
	if header := strings.Fields(strings.SplitN(admin.ok("keyvault", "key", "list", "--hsm-name", "dev", "-o", "table"), "\n", 2)[0]); strings.Join(header, " ") != "Kid Name" {
		t.Fatalf("key list table columns: %v", header)
	}
	if header := strings.Fields(strings.SplitN(admin.ok("keyvault", "list", "-o", "table"), "\n", 2)[0]); strings.Join(header, " ") != "Location Name ResourceGroup" {
		t.Fatalf("keyvault list table columns: %v", header)
	}
}

// What an outside review found in the az forms: a tag value with a comma
// is one value (az does not split lists on commas); an empty -g or --scope
// (an unset variable in a script) is refused rather than act at the
// subscription; a mistyped command is named as such; and create-for-rbac
// changes no credential when its grant fails.
func TestAzFormsHoldUnderMistakes(t *testing.T) {
	t.Parallel()
	admin, env := loggedIn(t)
	got := admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "tagged", "--kty", "EC-HSM",
		"--tags", "owners=alice,bob", "note=x", "--query", "tags.owners", "-o", "tsv")
	if got != "alice,bob" {
		t.Fatalf("a tag value with a comma: %q", got)
	}
	sp := env.ServicePrincipal("empty-vars")
	for _, args := range [][]string{
		{"role", "assignment", "create", "--assignee-object-id", sp.ObjectID, "--role", "Reader", "-g", ""},
		{"role", "assignment", "delete", "--assignee", sp.ObjectID, "--scope", ""},
		{"keyvault", "role", "assignment", "delete", "--hsm-name", "dev", "--assignee", ""},
	} {
		if errs := admin.fails(exitUsage, args...); !strings.Contains(errs, "is empty") {
			t.Fatalf("%v: %q", args, errs)
		}
	}
	if n := admin.ok("role", "assignment", "list", "--assignee", sp.ObjectID, "--all", "--query", "length(@)"); n != "0" {
		t.Fatalf("an empty -g granted something: %s assignments", n)
	}
	if errs := admin.fails(exitUsage, "keyvault", "keyy", "list", "--hsm-name", "dev"); !strings.Contains(errs, "'keyy' is not in the 'keyward keyvault' command group") ||
		!strings.Contains(errs, "key") {
		t.Fatalf("a mistyped command: %q", errs)
	}

	// An existing application keeps its secret when the grant fails.
	created := admin.ok("ad", "sp", "create-for-rbac", "--name", "keeps-secret")
	var app struct{ AppID, Password string }
	jsonDecode(t, created, &app)
	admin.fails(exitUsage, "ad", "sp", "create-for-rbac", "--name", "keeps-secret", "--role", "Ownr", "--scopes", "/subscriptions/x")
	sub := admin.ok("account", "show", "--query", "id", "-o", "tsv")
	if _, errs, code := admin.run("", "ad", "sp", "create-for-rbac", "--name", "keeps-secret", "--role", "Reader",
		"--scopes", "/subscriptions/"+sub+"/resourceGroups/no-such-rg"); code == 0 || !strings.Contains(errs, "credentials are unchanged") {
		t.Fatalf("a refused grant: %d %q", code, errs)
	}
	if n := admin.ok("ad", "sp", "show", "--id", app.AppID, "--query", "length(passwordCredentials)"); n != "1" {
		t.Fatalf("the secret after refused grants: %s secrets", n)
	}
	if _, errs, code := admin.run("", "ad", "sp", "create-for-rbac", "--name", "never-made", "--role", "Reader",
		"--scopes", "/subscriptions/"+sub+"/resourceGroups/no-such-rg"); code == 0 || !strings.Contains(errs, "deleted again") {
		t.Fatalf("a refused grant for a new application: %d %q", code, errs)
	}
	if n := admin.ok("ad", "sp", "list", "--display-name", "never-made", "--query", "length(@)"); n != "0" {
		t.Fatalf("the new application stays: %s", n)
	}
}
