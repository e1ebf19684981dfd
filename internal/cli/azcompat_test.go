package cli

import (
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
	deleted := admin.ok("keyvault", "role", "assignment", "delete", "--hsm-name", "dev", "--assignee", sp.ObjectID,
		"--scope", "/keys", "--query", "[].[scope, roleName]", "-o", "tsv")
	if deleted != "/keys\tManaged HSM Crypto Officer" {
		t.Fatalf("delete --scope /keys printed %q (az prints the deleted assignments)", deleted)
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
	admin.fails(exitNotFound, "ad", "group", "show", "-g", "No Such Group")
	admin.fails(exitFailure, "keyvault", "key", "create", "--hsm-name", "dev", "--name", "bad", "--kty", "DSA")
}
