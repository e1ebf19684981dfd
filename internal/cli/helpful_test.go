package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/servertest"
)

// Errors as a newcomer meets them, word for word: a data-plane message
// that quotes a value is whole (it was cut at the first quote when scraped
// from the SDK's text), a missing HSM is named, an untrusted CA and an
// appId without --service-principal say what to do, a wrong secret is one
// line (the SDK's fifteen behind --debug), and a bare host:port is taken.
func TestErrorsThatHelp(t *testing.T) {
	t.Parallel()
	admin, env := loggedIn(t)
	b := env.Boot
	golden := func(what string, args []string, wantCode int, want string) {
		t.Helper()
		if _, errs, code := admin.run("", args...); code != wantCode || errs != want {
			t.Errorf("%s: exit %d\n%s\nwant exit %d\n%s", what, code, errs, wantCode, want)
		}
	}
	msg := `unknown key type "RSA\"x": use RSA-HSM, EC-HSM or oct-HSM (or Keyward's ML-DSA and ML-KEM)`
	golden("a message with quotes", []string{"keyvault", "key", "create", "--hsm-name", "dev", "--name", "k", "--kty", `RSA"x`}, exitFailure,
		"ERROR: (BadParameter) "+msg+"\nCode: BadParameter\nMessage: "+msg+"\n")
	msg = `the managed HSM "devv" does not exist`
	golden("an HSM name typo", []string{"keyvault", "key", "show", "--hsm-name", "devv", "--name", "k"}, exitNotFound,
		"ERROR: (ResourceNotFound) "+msg+"\nCode: ResourceNotFound\nMessage: "+msg+"\n")

	login := func(args ...string) []string {
		return append([]string{"login", "--server", b.AuthorityHost, "--tenant", b.TenantID}, args...)
	}
	newcomer := kw{t, t.TempDir()}
	_, errs, code := newcomer.run("", login("--service-principal", "-u", b.ClientID, "-p", b.ClientSecret)...)
	if code != exitFailure || !strings.HasSuffix(errs, "x509: certificate signed by unknown authority\n"+untrustedCAHint) {
		t.Errorf("no --ca-file: exit %d\n%s", code, errs)
	}
	golden("a wrong secret", login("--service-principal", "-u", b.ClientID, "-p", "wrong", "--ca-file", b.CAFile), exitFailure,
		"ERROR: signing in: invalid_client: the client id or secret is not valid\n")
	if _, errs, _ := admin.run("", append(login("--service-principal", "-u", b.ClientID, "-p", "wrong", "--ca-file", b.CAFile), "--debug")...); !strings.Contains(errs, "RESPONSE 401") {
		t.Errorf("--debug hides the detail:\n%s", errs)
	}
	golden("an appId without --service-principal", login("-u", b.ClientID, "-p", "wrong", "--ca-file", b.CAFile), exitFailure,
		"ERROR: signing in: invalid_grant: AADSTS50126: Error validating credentials due to invalid username or password.\n"+
			b.ClientID+" looks like an application id: sign in as a service principal with --service-principal\n")

	bare := strings.TrimSuffix(strings.TrimPrefix(b.AuthorityHost, "https://"), "/")
	newcomer.ok("login", "--server", bare, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	if got := newcomer.ok("keyvault", "show", "--hsm-name", "dev", "--query", "name", "-o", "tsv"); got != "dev" {
		t.Errorf("after a bare host:port login: %q", got)
	}
}

// An auditor's view: the table names the caller, the 401 challenge that
// begins every SDK call is hidden (and counted) unless asked for, a refusal
// is not, and an operation no record has is said to be so.
func TestAuditForPeople(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	ctx := context.Background()
	_, err := env.Keys.CreateKey(ctx, "signing", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	must(t, err)
	intruder := env.ServicePrincipal("intruder")
	params := azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}
	if _, err := env.KeysClient(intruder.Cred).Sign(ctx, "signing", "", params, nil); err == nil {
		t.Fatal("the intruder signed")
	}
	env.Stop()
	journal := filepath.Join(env.Dir, "audit", audit.StreamOf(env.Boot.HSMName)+".jsonl")
	k := kw{t, t.TempDir()}

	out, errs, code := k.run("", "audit", "query", "--file", journal, "--operation", "KeySign", "-o", "table")
	lines := strings.Split(out, "\n")
	if code != 0 || !strings.Contains(lines[0], "Caller") || !strings.Contains(lines[0], "CallerObjectId") {
		t.Fatalf("table: %d\n%s\n%s", code, out, errs)
	}
	// The intruder's SDK call: a challenge (hidden) then its refusal.
	if n := strings.Count(out, "Forbidden") + strings.Count(out, "403"); n == 0 || !strings.Contains(out, intruder.AppID) || strings.Contains(out, " 401 ") {
		t.Errorf("the refusal and its caller:\n%s", out)
	}
	if !strings.Contains(errs, "challenge record") || !strings.Contains(errs, " hidden (") {
		t.Errorf("no count of hidden challenges: %q", errs)
	}
	all := k.ok("audit", "query", "--file", journal, "--operation", "KeySign", "--include-challenges", "--query", "[?properties.challenge].httpStatusCode", "-o", "tsv")
	if all == "" || strings.Trim(all, "401\n") != "" {
		t.Errorf("--include-challenges: %q", all)
	}
	if _, errs, code := k.run("", "audit", "query", "--file", journal, "--operation", "KeySgn"); code != 0 ||
		!strings.Contains(errs, `no record is of the operation "KeySgn"`) || !strings.Contains(errs, "KeySign") {
		t.Errorf("a typo in --operation: %d %q", code, errs)
	}
}
