package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/keyward/keyward/internal/servertest"
)

// TestCLIPIM is issue 13's CLI path: a group's activation policy, an
// eligibility, an activation with a second factor that waits for an
// approver, the approver's list and approval, access while active, a
// deactivation that ends it, and the alert list.
func TestCLIPIM(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	b := env.Boot
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret,
		"--tenant", b.TenantID, "--ca-file", b.CAFile)
	const pw = "Correct-Horse-Battery-13"
	admin.ok("ad", "group", "create", "--display-name", "HSM Admins", "--mail-nickname", "hsm-admins")
	for _, u := range []string{"alice", "bob"} {
		admin.ok("ad", "user", "create", "--display-name", u, "--user-principal-name", u+"@contoso.test", "--password", pw)
	}
	group := admin.ok("ad", "group", "show", "-g", "HSM Admins", "--query", "id", "-o", "tsv")
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "dev", "--scope", "/", "--role", "Managed HSM Administrator",
		"--assignee-object-id", group)

	// The policy: at most 4 h, a justification, MFA, Bob approves.
	admin.ok("pim", "group", "policy", "update", "--group", "HSM Admins", "--max-duration", "PT4H", "--require-justification", "true",
		"--require-mfa", "true", "--require-approval", "true", "--approvers", "bob@contoso.test")
	policy := admin.ok("pim", "group", "policy", "show", "--group", "HSM Admins")
	for _, want := range []string{`"PT4H"`, `"MultiFactorAuthentication"`, `"Justification"`} {
		if !strings.Contains(policy, want) {
			t.Fatalf("the policy lacks %s: %s", want, policy)
		}
	}
	// A control-plane role's policy: the same flags, ARM's spelling.
	bobID := admin.ok("ad", "user", "show", "--id", "bob@contoso.test", "--query", "id", "-o", "tsv")
	admin.ok("pim", "role", "policy", "update", "--role", "Managed HSM Contributor", "--max-duration", "PT2H",
		"--require-approval", "true", "--approvers", "bob@contoso.test")
	rolePolicy := admin.ok("pim", "role", "policy", "show", "--role", "Managed HSM Contributor")
	for _, want := range []string{`"PT2H"`, bobID, `"SingleStage"`} {
		if !strings.Contains(rolePolicy, want) {
			t.Fatalf("the role policy lacks %s: %s", want, rolePolicy)
		}
	}
	admin.ok("pim", "group", "eligible", "create", "--group", "HSM Admins", "--member", "alice@contoso.test", "--duration", "P30D")
	alice := admin.ok("ad", "user", "show", "--id", "alice@contoso.test", "--query", "id", "-o", "tsv")
	if list := admin.ok("pim", "group", "eligible", "list", "--group", "HSM Admins", "--query", "[].principalId", "-o", "tsv"); !strings.Contains(list, alice) {
		t.Fatalf("eligible list: %q", list)
	}

	login := func(upn, code string) kw {
		k := kw{t, t.TempDir()}
		args := []string{"login", "--server", b.AuthorityHost, "-u", upn, "-p", pw, "--tenant", b.TenantID, "--ca-file", b.CAFile}
		if code != "" {
			args = append(args, "--otp", code)
		}
		k.ok(args...)
		return k
	}
	fail := func(k kw, want string, args ...string) {
		t.Helper()
		_, errs, rc := k.run("", args...)
		if rc == 0 || !strings.Contains(errs, want) {
			t.Fatalf("keyward %s: exit %d %q, want an error with %q", strings.Join(args, " "), rc, errs, want)
		}
	}
	// Alice signs in with a password only, then enrolls an authenticator.
	alicePwd := login("alice@contoso.test", "")
	var enrolled struct{ Secret string }
	jsonDecode(t, alicePwd.ok("account", "mfa", "enroll"), &enrolled)
	code := func(at time.Time) string {
		c, err := totp.GenerateCodeCustom(enrolled.Secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	alicePwd.ok("account", "mfa", "confirm", "--code", code(time.Now()))
	aliceMFA := login("alice@contoso.test", code(time.Now().Add(30*time.Second)))

	// Eligible is not a member: the HSM refuses her.
	listRoles := []string{"keyvault", "role", "assignment", "list", "--hsm-name", "dev"}
	fail(aliceMFA, "AccessDenied", listRoles...)
	// The policy's rules.
	fail(alicePwd, "MfaRule", "pim", "group", "activate", "--group", "HSM Admins", "--duration", "PT2H", "--justification", "rotate")
	fail(aliceMFA, "JustificationRule", "pim", "group", "activate", "--group", "HSM Admins", "--duration", "PT2H")
	fail(aliceMFA, "ExpirationRule", "pim", "group", "activate", "--group", "HSM Admins", "--duration", "PT9H", "--justification", "rotate")
	// A valid request waits for Bob.
	var req struct{ ID, Status string }
	jsonDecode(t, aliceMFA.ok("pim", "group", "activate", "--group", "HSM Admins", "--duration", "PT2H", "--justification", "rotate the signing key"), &req)
	if req.Status != "PendingApproval" || req.ID == "" {
		t.Fatalf("activation: %+v", req)
	}
	fail(aliceMFA, "AccessDenied", listRoles...)
	fail(aliceMFA, "", "pim", "request", "approve", "--id", req.ID, "--justification", "self")

	bob := login("bob@contoso.test", "")
	if pending := bob.ok("pim", "request", "list", "--pending-approval", "--query", "[].id", "-o", "tsv"); !strings.Contains(pending, req.ID) {
		t.Fatalf("Bob's pending list: %q", pending)
	}
	if table := bob.ok("pim", "request", "list", "--pending-approval", "-o", "table"); !strings.Contains(table, "PendingApproval") {
		t.Fatalf("table: %s", table)
	}
	bob.ok("pim", "request", "approve", "--id", req.ID, "--justification", "change ticket 42")

	// Access within seconds of the approval, gone at the deactivation.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, rc := aliceMFA.run("", listRoles...); rc == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no access 5 s after the approval")
		}
		time.Sleep(100 * time.Millisecond)
	}
	aliceMFA.ok("pim", "group", "deactivate", "--group", "HSM Admins")
	fail(aliceMFA, "AccessDenied", listRoles...)

	// A member added outside PIM raises an alert.
	admin.ok("ad", "group", "member", "add", "-g", "HSM Admins", "--member-id", alice)
	deadline = time.Now().Add(5 * time.Second)
	for {
		out := admin.ok("pim", "alert", "list", "-o", "json")
		if strings.Contains(out, "RolesAssignedOutsidePimAlert") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no outside-PIM alert: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
