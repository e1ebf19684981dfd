package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/servertest"
)

// kw runs one keyward command in-process against the real server and
// returns its stdout, stderr and exit code.
type kw struct {
	t   *testing.T
	cfg string
}

func (k kw) run(stdin string, args ...string) (string, string, int) {
	k.t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, configDir: k.cfg}, args)
	return out.String(), errb.String(), code
}

// ok runs a command that must succeed and returns its trimmed stdout.
func (k kw) ok(args ...string) string {
	k.t.Helper()
	out, errs, code := k.run("", args...)
	if code != 0 {
		k.t.Fatalf("keyward %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return strings.TrimSpace(out)
}

// fails runs a command that must fail with exit code want and returns its
// standard error.
func (k kw) fails(want int, args ...string) string {
	k.t.Helper()
	out, errs, code := k.run("", args...)
	if code != want {
		k.t.Fatalf("keyward %s: exit %d, want %d: %s%s", strings.Join(args, " "), code, want, out, errs)
	}
	return errs
}

func TestCLIStory(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	b := env.Boot
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret,
		"--tenant", b.TenantID, "--ca-file", b.CAFile)
	if fi, err := os.Stat(filepath.Join(admin.cfg, profileFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("profile: %v %v", fi, err)
	}

	// The directory, as the seed's subscription admin sets it up.
	admin.ok("ad", "group", "create", "--display-name", "Security Team", "--mail-nickname", "security-team")
	admin.ok("ad", "group", "create", "--display-name", "App Auditors", "--mail-nickname", "app-auditors")
	gid := admin.ok("ad", "group", "show", "-g", "Security Team", "--query", "id", "-o", "tsv")
	if !guidPattern.MatchString(gid) {
		t.Fatalf("group id %q", gid)
	}
	alice := admin.ok("ad", "user", "create", "--display-name", "Alice", "--user-principal-name", "alice@contoso.test",
		"--password", "Correct-Horse-1", "--query", "id", "-o", "tsv")
	admin.ok("ad", "group", "member", "add", "-g", "Security Team", "--member-id", alice)
	if got := admin.ok("ad", "group", "member", "check", "-g", gid, "--member-id", alice, "--query", "value", "-o", "tsv"); got != "true" {
		t.Fatalf("member check = %q", got)
	}
	if got := admin.ok("ad", "group", "member", "list", "-g", "Security Team", "--query", "[].userPrincipalName", "-o", "tsv"); got != "alice@contoso.test" {
		t.Fatalf("member list = %q", got)
	}
	if got := admin.ok("ad", "group", "list", "-o", "table"); !strings.Contains(got, "App Auditors") || !strings.Contains(got, "DisplayName") {
		t.Fatalf("group table:\n%s", got)
	}
	admin.ok("ad", "group", "member", "remove", "-g", "Security Team", "--member-id", alice)
	if got := admin.ok("ad", "group", "member", "check", "-g", gid, "--member-id", alice, "--query", "value", "-o", "tsv"); got != "false" {
		t.Fatalf("member check after remove = %q", got)
	}

	// Keys in the dev HSM.
	kid := admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "app-signing", "--kty", "RSA-HSM",
		"--size", "2048", "--ops", "sign", "verify", "--query", "key.kid", "-o", "tsv")
	if !strings.Contains(kid, "/keys/app-signing/") {
		t.Fatalf("kid %q", kid)
	}
	if got := admin.ok("keyvault", "key", "show", "--id", kid, "--query", "key.keyOps", "-o", "tsv"); got != "sign\nverify" {
		t.Fatalf("ops = %q", got)
	}
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "wrap", "--kty", "oct-HSM", "--size", "256")
	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "ec", "--kty", "EC-HSM", "--curve", "P-384")
	if got := admin.ok("keyvault", "key", "list", "--hsm-name", "dev", "--query", "[].name", "-o", "tsv"); got != "app-signing\nec\nwrap" {
		t.Fatalf("key list = %q", got)
	}
	if got := admin.ok("keyvault", "key", "rotate", "--hsm-name", "dev", "--name", "app-signing", "--query", "attributes.recoverableDays", "-o", "tsv"); got != "90" {
		t.Fatalf("recoverableDays as tsv = %q", got)
	}
	if got := admin.ok("keyvault", "key", "list-versions", "--hsm-name", "dev", "--name", "app-signing", "--query", "length(@)"); got != "2" {
		t.Fatalf("versions = %q", got)
	}
	file := filepath.Join(t.TempDir(), "app-signing.bak")
	admin.ok("keyvault", "key", "backup", "--hsm-name", "dev", "--name", "app-signing", "--file", file)
	admin.ok("keyvault", "key", "delete", "--hsm-name", "dev", "--name", "app-signing")
	if got := admin.ok("keyvault", "key", "list-deleted", "--hsm-name", "dev", "--query", "[].name", "-o", "tsv"); got != "app-signing" {
		t.Fatalf("list-deleted = %q", got)
	}
	admin.ok("keyvault", "key", "purge", "--hsm-name", "dev", "--name", "app-signing")
	restored := admin.ok("keyvault", "key", "restore", "--hsm-name", "dev", "--file", file, "--query", "key.kid", "-o", "tsv")
	if restored == kid || !strings.Contains(restored, "/keys/app-signing/") {
		t.Fatalf("restored %q (the latest version should be the rotated one, not %q)", restored, kid)
	}
	admin.ok("keyvault", "key", "delete", "--hsm-name", "dev", "--name", "wrap")
	admin.ok("keyvault", "key", "recover", "--hsm-name", "dev", "--name", "wrap")

	// Errors come back with the server's code and a non-zero exit.
	_, errs, code := admin.run("", "keyvault", "key", "create", "--hsm-name", "dev", "--name", "bad", "--kty", "DSA")
	if code != 1 || !strings.Contains(errs, "(BadParameter)") {
		t.Fatalf("bad kty: exit %d, %q", code, errs)
	}
	_, errs, code = admin.run("", "keyvault", "key", "show", "--hsm-name", "dev", "--name", "nope")
	// Not found is exit 3, and the error reads as az's: (Code) Message,
	// then the Code and Message lines.
	if code != 3 || !strings.HasPrefix(errs, "ERROR: (KeyNotFound) ") || !strings.Contains(errs, "\nCode: KeyNotFound\nMessage: ") {
		t.Fatalf("unknown key: exit %d, %q", code, errs)
	}

	// A new application may sign in, and is refused by the HSM.
	appID := admin.ok("ad", "sp", "create-for-rbac", "--name", "app-vm", "--query", "appId", "-o", "tsv")
	if shown := admin.ok("ad", "sp", "show", "--id", appID, "--query", "appId", "-o", "tsv"); shown != appID {
		t.Fatalf("sp show by app id = %q", shown)
	}
	if got := admin.ok("ad", "sp", "list", "--display-name", "app-vm", "--query", "length(@)"); got != "1" {
		t.Fatalf("sp list = %q", got)
	}
	admin.ok("ad", "sp", "delete", "--id", appID)
	if _, errs, code := admin.run("", "ad", "sp", "show", "--id", appID); code != 3 || !strings.Contains(errs, "Request_ResourceNotFound") {
		t.Fatalf("deleted sp: %d %q", code, errs)
	}
	admin.ok("ad", "group", "delete", "-g", "App Auditors")
	if got := admin.ok("ad", "group", "list", "--query", "[].displayName", "-o", "tsv"); got != "Security Team" {
		t.Fatalf("groups after delete = %q", got)
	}
	if got := admin.ok("ad", "user", "list", "--query", "[].userPrincipalName", "-o", "tsv"); got != "alice@contoso.test" {
		t.Fatalf("user list = %q", got)
	}
	out := admin.ok("ad", "sp", "create-for-rbac", "--name", "signer")
	var sp struct{ AppID, Password, Tenant string }
	jsonDecode(t, out, &sp)
	app := kw{t, t.TempDir()}
	// The secret is read from standard input when -p is left out.
	if _, errs, code := app.run(sp.Password+"\n", "login", "--server", b.AuthorityHost, "--service-principal", "-u", sp.AppID,
		"--tenant", sp.Tenant, "--ca-file", b.CAFile); code != 0 {
		t.Fatalf("app login: %s", errs)
	}
	_, errs, code = app.run("", "keyvault", "key", "list", "--hsm-name", "dev")
	if code != 1 || !strings.Contains(errs, "(AccessDenied)") {
		t.Fatalf("app key list: exit %d, %q", code, errs)
	}
	_, errs, code = app.run("", "ad", "group", "create", "--display-name", "x", "--mail-nickname", "x")
	if code != 1 || !strings.Contains(errs, "Authorization_RequestDenied") {
		t.Fatalf("app group create: exit %d, %q", code, errs)
	}

	// A user signs in with a password.
	user := kw{t, t.TempDir()}
	if _, errs, code := user.run("", "login", "--server", b.AuthorityHost, "-u", "alice@contoso.test", "-p", "Correct-Horse-1",
		"--tenant", b.TenantID, "--ca-file", b.CAFile); code != 0 {
		t.Fatalf("user login: %s", errs)
	}
	if got := user.ok("ad", "user", "show", "--id", "alice@contoso.test", "--query", "displayName", "-o", "tsv"); got != "Alice" {
		t.Fatalf("user show = %q", got)
	}
	if _, _, code := user.run("", "login", "--server", b.AuthorityHost, "-u", "alice@contoso.test", "-p", "wrong-password",
		"--tenant", b.TenantID, "--ca-file", b.CAFile); code == 0 {
		t.Fatal("a wrong password signed in")
	}
}

func TestCLIUsageErrors(t *testing.T) {
	k := kw{t, t.TempDir()}
	if _, errs, code := k.run("", "keyvault", "key", "list", "--hsm-name", "dev"); code != 2 || !strings.Contains(errs, "not logged in") {
		t.Fatalf("not logged in: %d %q", code, errs)
	}
	if _, _, code := k.run("", "ad", "group", "show"); code == 0 {
		t.Fatal("group show without -g succeeded")
	}
}
