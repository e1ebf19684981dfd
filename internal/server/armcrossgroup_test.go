package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/servertest"
)

const (
	mgmtAudience      = "https://management.azure.com"
	contributorRoleID = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	ownerRoleID       = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
	readerRoleID      = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
)

// armEnv is a server with the bootstrap administrator's ARM token and the
// subscription's URL.
type armEnv struct {
	*servertest.Env
	t     *testing.T
	admin string // ARM token
	sub   string
	base  string // https://…/subscriptions/{sub}
	me    string // the administrator's object id
}

func newARMEnv(t *testing.T) *armEnv {
	env := servertest.Start(t)
	sub := subscriptionOf(t, env)
	return &armEnv{Env: env, t: t, admin: env.AdminToken(mgmtAudience), sub: sub,
		base: env.Boot.AuthorityHost + "subscriptions/" + sub,
		me:   jsonField(env.Graph("GET", "/servicePrincipals/"+env.Boot.ClientID, nil).Body, "id")}
}

// url is an ARM URL under the subscription with an api-version.
func (e *armEnv) url(path, version string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return e.base + path + sep + "api-version=" + version
}

// ok sends a request that must answer one of want.
func (e *armEnv) ok(token, method, url string, body any, want ...int) *servertest.Response {
	e.t.Helper()
	r := e.Do(method, url, token, body)
	for _, w := range want {
		if r.Status == w {
			return r
		}
	}
	e.t.Fatalf("%s %s: %d %s, want %v", method, url, r.Status, r.Body, want)
	return nil
}

// grant gives principal role at scope (a path under the subscription).
func (e *armEnv) grant(principal, role, scope string) string {
	e.t.Helper()
	name := servertest.NewGUID()
	e.ok(e.admin, "PUT", e.url(scope+"/providers/Microsoft.Authorization/roleAssignments/"+name, "2022-04-01"),
		map[string]any{"properties": map[string]string{"roleDefinitionId": "/subscriptions/" + e.sub + "/providers/Microsoft.Authorization/roleDefinitions/" + role,
			"principalId": principal}}, 201)
	return name
}

func hsmBody(admin string) map[string]any {
	return map[string]any{"location": "local", "properties": map[string]any{"initialAdminObjectIds": []string{admin}, "softDeleteRetentionInDays": 7}}
}

func accountBody(endpoint string) map[string]any {
	return map[string]any{"properties": map[string]any{"primaryEndpoints": map[string]string{"blob": endpoint},
		"keywardCredential": map[string]string{"accountKey": "a2V5"}}}
}

func settingBody(sub, rg, account string) map[string]any {
	return map[string]any{"properties": map[string]any{
		"storageAccountId": "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Storage/storageAccounts/" + account,
		"logs":             []map[string]any{{"category": "AuditEvent", "enabled": false}}}}
}

// TestARMCrossGroup: a caller with rights over one resource group reaches
// nothing of another group's through its own group's path. Every resource
// is found by its full id (subscription, group, type, name): each verb
// answers 404 (or 409 for a PUT of a global name held elsewhere) and the
// victim's resources stay exactly as they were.
func TestARMCrossGroup(t *testing.T) {
	e := newARMEnv(t)
	const (
		victim = "/resourceGroups/victim-rg"
		mine   = "/resourceGroups/attacker-rg"
		hsmP   = "/providers/Microsoft.KeyVault/managedHSMs/"
		acctP  = "/providers/Microsoft.Storage/storageAccounts/"
		idP    = "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
		diagP  = "/providers/Microsoft.Insights/diagnosticSettings/"
		authzP = "/providers/Microsoft.Authorization/roleAssignments/"
	)
	for _, rg := range []string{victim, mine} {
		e.ok(e.admin, "PUT", e.url(rg, "2021-04-01"), map[string]string{"location": "local"}, 201)
	}
	// The victim's resources, made by the administrator.
	e.ok(e.admin, "PUT", e.url(victim+hsmP+"victim-hsm", "2024-11-01"), hsmBody(e.me), 200)
	e.ok(e.admin, "PUT", e.url(victim+hsmP+"victim-gone", "2024-11-01"), hsmBody(e.me), 200)
	e.ok(e.admin, "DELETE", e.url(victim+hsmP+"victim-gone", "2024-11-01"), nil, 200)
	e.ok(e.admin, "PUT", e.url(victim+acctP+"victimlogs", "2023-05-01"), accountBody("https://victim.blob.example/victimlogs"), 200)
	e.ok(e.admin, "PATCH", e.url(victim+acctP+"victimlogs", "2023-05-01"), map[string]any{"identity": map[string]string{"type": "SystemAssigned"}}, 200)
	e.ok(e.admin, "PUT", e.url(victim+acctP+"victimbak", "2023-05-01"), accountBody("https://victim.blob.example/victimbak"), 200)
	e.ok(e.admin, "PUT", e.url(victim+idP+"victim-id", "2023-01-31"), map[string]string{"location": "local"}, 201)
	fic := map[string]any{"properties": map[string]any{"issuer": "https://issuer.example", "subject": "victim", "audiences": []string{"api://AzureADTokenExchange"}}}
	e.ok(e.admin, "PUT", e.url(victim+idP+"victim-id/federatedIdentityCredentials/victim-fic", "2023-01-31"), fic, 200)
	e.ok(e.admin, "PUT", e.url(victim+hsmP+"victim-hsm"+diagP+"victim-diag", "2021-05-01-preview"), settingBody(e.sub, "victim-rg", "victimlogs"), 200)
	someone := e.ServicePrincipal("someone")
	victimAssignment := e.grant(someone.ObjectID, readerRoleID, victim+hsmP+"victim-hsm")

	// The attacker is Contributor of its own group (and so may create
	// there); ownerA is Owner of it, which covers the agent secret and
	// role assignments.
	attacker := e.ServicePrincipal("attacker")
	e.grant(attacker.ObjectID, contributorRoleID, mine)
	ownerA := e.ServicePrincipal("attacker-owner")
	e.grant(ownerA.ObjectID, ownerRoleID, mine)
	tok := e.Token(attacker.Cred, mgmtAudience)
	ownerTok := e.Token(ownerA.Cred, mgmtAudience)
	e.ok(tok, "PUT", e.url(mine+hsmP+"attacker-hsm", "2024-11-01"), hsmBody(attacker.ObjectID), 200)
	e.ok(tok, "PUT", e.url(mine+idP+"attacker-id", "2023-01-31"), map[string]string{"location": "local"}, 201)

	snapshot := func() string {
		t.Helper()
		var b strings.Builder
		for _, u := range []string{
			e.url(victim+hsmP+"victim-hsm", "2024-11-01"),
			e.url("/providers/Microsoft.KeyVault/locations/local/deletedManagedHSMs/victim-gone", "2024-11-01"),
			e.url(victim+acctP+"victimlogs", "2023-05-01"),
			e.url(victim+idP+"victim-id", "2023-01-31"),
			e.url(victim+idP+"victim-id/federatedIdentityCredentials", "2023-01-31"),
			e.url(victim+hsmP+"victim-hsm/providers/Microsoft.Insights/diagnosticSettings", "2021-05-01-preview"),
			e.url(victim+"/providers/Microsoft.Authorization/roleAssignments", "2022-04-01"),
			e.url("/providers/Microsoft.KeyVault/managedHSMs", "2024-11-01"),
			e.url("/providers/Microsoft.Storage/storageAccounts", "2023-05-01"),
		} {
			r := e.Do("GET", u, e.admin, nil)
			fmt.Fprintf(&b, "%s %d %s\n", u, r.Status, r.Body)
		}
		// The identities' secrets: minting one adds a password credential.
		for _, path := range []string{victim + idP + "victim-id", victim + acctP + "victimlogs"} {
			r := e.Do("GET", e.url(path, "2023-01-31"), e.admin, nil)
			principal := jsonField(r.Body, "principalId")
			if principal == "" {
				var v struct{ Identity struct{ PrincipalID string } }
				jsonUnmarshal(r.Body, &v)
				principal = v.Identity.PrincipalID
			}
			if principal == "" {
				var v struct{ Properties struct{ PrincipalID string } }
				jsonUnmarshal(r.Body, &v)
				principal = v.Properties.PrincipalID
			}
			fmt.Fprintf(&b, "%s %s\n", path, e.Graph("GET", "/servicePrincipals/"+principal, nil).Body)
		}
		return b.String()
	}
	before := snapshot()
	if strings.Count(before, " 200 ") != 9 {
		t.Fatalf("the victim's resources are not all there:\n%s", before)
	}

	recoverBody := map[string]any{"location": "local", "properties": map[string]any{"createMode": "recover",
		"initialAdminObjectIds": []string{attacker.ObjectID}}}
	cases := []struct {
		name         string
		token        string
		method, path string
		version      string
		body         any
		status       int
		code         string
	}{
		{"HSM get", tok, "GET", mine + hsmP + "victim-hsm", "2024-11-01", nil, 404, "ResourceNotFound"},
		{"HSM get, other case", tok, "GET", mine + hsmP + "VICTIM-HSM", "2024-11-01", nil, 404, "ResourceNotFound"},
		{"HSM put (global name)", tok, "PUT", mine + hsmP + "victim-hsm", "2024-11-01", hsmBody(attacker.ObjectID), 409, "ConflictError"},
		{"HSM patch", tok, "PATCH", mine + hsmP + "victim-hsm", "2024-11-01", map[string]any{"tags": map[string]string{"owned": "yes"}}, 404, "ResourceNotFound"},
		{"HSM delete", tok, "DELETE", mine + hsmP + "victim-hsm", "2024-11-01", nil, 404, "ResourceNotFound"},
		{"deleted HSM recover", tok, "PUT", mine + hsmP + "victim-gone", "2024-11-01", recoverBody, 404, "ResourceNotFound"},
		{"deleted HSM put", tok, "PUT", mine + hsmP + "victim-gone", "2024-11-01", hsmBody(attacker.ObjectID), 409, "ConflictError"},
		// Deleted HSMs live at the subscription, which the attacker has no right over.
		{"deleted HSM get", tok, "GET", "/providers/Microsoft.KeyVault/locations/local/deletedManagedHSMs/victim-gone", "2024-11-01", nil, 403, "AuthorizationFailed"},
		{"deleted HSM purge", tok, "POST", "/providers/Microsoft.KeyVault/locations/local/deletedManagedHSMs/victim-gone/purge", "2024-11-01", nil, 403, "AuthorizationFailed"},

		{"storage get", tok, "GET", mine + acctP + "victimlogs", "2023-05-01", nil, 404, "ResourceNotFound"},
		{"storage put (global name)", tok, "PUT", mine + acctP + "victimlogs", "2023-05-01", accountBody("https://attacker.example/victimlogs"), 409, "StorageAccountAlreadyTaken"},
		{"storage patch", tok, "PATCH", mine + acctP + "victimlogs", "2023-05-01", map[string]any{"identity": map[string]string{"type": "SystemAssigned"}}, 404, "ResourceNotFound"},
		{"storage delete", tok, "DELETE", mine + acctP + "victimlogs", "2023-05-01", nil, 404, "ResourceNotFound"},
		{"storage delete (an account no setting uses)", tok, "DELETE", mine + acctP + "victimbak", "2023-05-01", nil, 404, "ResourceNotFound"},
		{"storage agent secret (Contributor)", tok, "POST", mine + acctP + "victimlogs/keywardAgentSecret", "2023-05-01", nil, 403, "AuthorizationFailed"},
		{"storage agent secret (Owner of the group)", ownerTok, "POST", mine + acctP + "victimlogs/keywardAgentSecret", "2023-05-01", nil, 404, "ResourceNotFound"},

		{"identity get", tok, "GET", mine + idP + "victim-id", "2023-01-31", nil, 404, "ResourceNotFound"},
		{"identity delete", tok, "DELETE", mine + idP + "victim-id", "2023-01-31", nil, 404, "ResourceNotFound"},
		{"identity agent secret (Contributor)", tok, "POST", mine + idP + "victim-id/keywardAgentSecret", "2023-01-31", nil, 403, "AuthorizationFailed"},
		{"identity agent secret (Owner of the group)", ownerTok, "POST", mine + idP + "victim-id/keywardAgentSecret", "2023-01-31", nil, 404, "ResourceNotFound"},
		{"federated list", tok, "GET", mine + idP + "victim-id/federatedIdentityCredentials", "2023-01-31", nil, 404, "ResourceNotFound"},
		{"federated put (Contributor)", tok, "PUT", mine + idP + "victim-id/federatedIdentityCredentials/victim-fic", "2023-01-31", fic, 403, "AuthorizationFailed"},
		{"federated put (Owner of the group)", ownerTok, "PUT", mine + idP + "victim-id/federatedIdentityCredentials/victim-fic", "2023-01-31", fic, 404, "ResourceNotFound"},
		// A federated credential signs in as the identity, as a minted
		// secret does: not a Contributor's, even on its own identity.
		{"federated put on its own identity (Contributor)", tok, "PUT", mine + idP + "attacker-id/federatedIdentityCredentials/evil", "2023-01-31", fic, 403, "AuthorizationFailed"},
		{"federated delete", tok, "DELETE", mine + idP + "victim-id/federatedIdentityCredentials/victim-fic", "2023-01-31", nil, 404, "ResourceNotFound"},

		{"setting list", tok, "GET", mine + hsmP + "victim-hsm/providers/Microsoft.Insights/diagnosticSettings", "2021-05-01-preview", nil, 404, "ResourceNotFound"},
		{"setting get", tok, "GET", mine + hsmP + "victim-hsm" + diagP + "victim-diag", "2021-05-01-preview", nil, 404, "ResourceNotFound"},
		{"setting put", tok, "PUT", mine + hsmP + "victim-hsm" + diagP + "victim-diag", "2021-05-01-preview", settingBody(e.sub, "attacker-rg", "victimlogs"), 404, "ResourceNotFound"},
		{"setting delete", tok, "DELETE", mine + hsmP + "victim-hsm" + diagP + "victim-diag", "2021-05-01-preview", nil, 404, "ResourceNotFound"},
		// The attacker's own HSM may not send logs into the victim's account.
		{"own setting to the victim's account", tok, "PUT", mine + hsmP + "attacker-hsm" + diagP + "steal", "2021-05-01-preview", settingBody(e.sub, "victim-rg", "victimlogs"), 403, "LinkedAuthorizationFailed"},
		{"own setting to the victim's account, own group in its id", tok, "PUT", mine + hsmP + "attacker-hsm" + diagP + "steal", "2021-05-01-preview", settingBody(e.sub, "attacker-rg", "victimlogs"), 400, "BadParameter"},

		{"role assignment get", tok, "GET", mine + hsmP + "victim-hsm" + authzP + victimAssignment, "2022-04-01", nil, 404, "RoleAssignmentNotFound"},
		{"role assignment delete", ownerTok, "DELETE", mine + hsmP + "victim-hsm" + authzP + victimAssignment, "2022-04-01", nil, 404, "RoleAssignmentNotFound"},
		{"role assignment put", ownerTok, "PUT", mine + hsmP + "victim-hsm" + authzP + servertest.NewGUID(), "2022-04-01",
			map[string]any{"properties": map[string]string{"roleDefinitionId": ownerRoleID, "principalId": ownerA.ObjectID}}, 400, "InvalidScope"},
		{"role assignment put on the account", ownerTok, "PUT", mine + acctP + "victimlogs" + authzP + servertest.NewGUID(), "2022-04-01",
			map[string]any{"properties": map[string]string{"roleDefinitionId": ownerRoleID, "principalId": ownerA.ObjectID}}, 400, "InvalidScope"},
		{"role assignment put on the identity", ownerTok, "PUT", mine + idP + "victim-id" + authzP + servertest.NewGUID(), "2022-04-01",
			map[string]any{"properties": map[string]string{"roleDefinitionId": ownerRoleID, "principalId": ownerA.ObjectID}}, 400, "InvalidScope"},

		// The victim's group itself is out of reach.
		{"group get", tok, "GET", victim, "2021-04-01", nil, 403, "AuthorizationFailed"},
		{"group delete", tok, "DELETE", victim, "2021-04-01", nil, 403, "AuthorizationFailed"},
	}
	for _, c := range cases {
		r := e.Do(c.method, e.url(c.path, c.version), c.token, c.body)
		if r.Status != c.status || r.ErrorCode() != c.code {
			t.Errorf("%s: %d %s, want %d %s: %s", c.name, r.Status, r.ErrorCode(), c.status, c.code, r.Body)
		}
		// Each case is judged on its own: a change is reported, and the next
		// case compares with the state it left.
		if after := snapshot(); after != before {
			t.Errorf("%s changed the victim's resources:\n%s", c.name, lineDiff(before, after))
			before = after
		}
	}
	// Identities are named per group: the attacker's own victim-id is a
	// different identity, with its own principal.
	var ours, theirs struct{ Properties struct{ PrincipalID string } }
	must(t, jsonUnmarshal(e.ok(tok, "PUT", e.url(mine+idP+"victim-id", "2023-01-31"), map[string]string{"location": "local"}, 201).Body, &ours))
	must(t, jsonUnmarshal(e.Do("GET", e.url(victim+idP+"victim-id", "2023-01-31"), e.admin, nil).Body, &theirs))
	if ours.Properties.PrincipalID == "" || ours.Properties.PrincipalID == theirs.Properties.PrincipalID {
		t.Fatalf("the attacker's identity has the victim's principal: %+v %+v", ours, theirs)
	}
	if after := snapshot(); after != before {
		t.Fatalf("creating the attacker's own identity changed the victim's:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// lineDiff shows the lines of after that differ from before's.
func lineDiff(before, after string) string {
	var b strings.Builder
	bl, al := strings.Split(before, "\n"), strings.Split(after, "\n")
	for i := range al {
		if i >= len(bl) || bl[i] != al[i] {
			old := ""
			if i < len(bl) {
				old = bl[i]
			}
			fmt.Fprintf(&b, "- %.300s\n+ %.300s\n", old, al[i])
		}
	}
	return b.String()
}

// TestARMNamesCaseInsensitive: names Azure treats without regard to case
// cannot be taken twice by changing case, and an HSM's host reaches it
// whatever the case.
func TestARMNamesCaseInsensitive(t *testing.T) {
	e := newARMEnv(t)
	const hsmP, acctP, idP = "/providers/Microsoft.KeyVault/managedHSMs/", "/providers/Microsoft.Storage/storageAccounts/",
		"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
	e.ok(e.admin, "PUT", e.url("/resourceGroups/Team-RG", "2021-04-01"), map[string]string{"location": "local"}, 201)
	e.ok(e.admin, "PUT", e.url("/resourceGroups/other-rg", "2021-04-01"), map[string]string{"location": "local"}, 201)
	r := e.ok(e.admin, "PUT", e.url("/resourceGroups/Team-RG"+hsmP+"Prod1", "2024-11-01"), hsmBody(e.me), 200)
	var created struct{ Properties struct{ HSMURI string } }
	must(t, jsonUnmarshal(r.Body, &created))

	cases := []struct {
		name, method, path, version string
		body                        any
		status                      int
	}{
		{"group, other case", "PUT", "/resourceGroups/team-rg", "2021-04-01", map[string]string{"location": "local"}, 409},
		{"HSM, other case", "PUT", "/resourceGroups/Team-RG" + hsmP + "prod1", "2024-11-01", hsmBody(e.me), 409},
		{"HSM, other case and group", "PUT", "/resourceGroups/other-rg" + hsmP + "PROD1", "2024-11-01", hsmBody(e.me), 409},
		{"HSM, the dev HSM's name in capitals", "PUT", "/resourceGroups/other-rg" + hsmP + "DEV", "2024-11-01", hsmBody(e.me), 409},
		{"HSM, the dev HSM's name in capitals, its group", "PUT", "/resourceGroups/keyward" + hsmP + "DEV", "2024-11-01", hsmBody(e.me), 409},
		{"storage account, capitals", "PUT", "/resourceGroups/Team-RG" + acctP + "Teamlogs", "2023-05-01", accountBody("https://x.example/teamlogs"), 400},
	}
	for _, c := range cases {
		if r := e.Do(c.method, e.url(c.path, c.version), e.admin, c.body); r.Status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.Status, r.Body, c.status)
		}
	}
	// Storage account names are global: the same name in another group.
	e.ok(e.admin, "PUT", e.url("/resourceGroups/Team-RG"+acctP+"teamlogs", "2023-05-01"), accountBody("https://x.example/teamlogs"), 200)
	if r := e.Do("PUT", e.url("/resourceGroups/other-rg"+acctP+"teamlogs", "2023-05-01"), e.admin, accountBody("https://y.example/teamlogs")); r.Status != 409 || r.ErrorCode() != "StorageAccountAlreadyTaken" {
		t.Errorf("storage account in another group: %d %s", r.Status, r.Body)
	}
	// Identities are named per group, without regard to case.
	e.ok(e.admin, "PUT", e.url("/resourceGroups/Team-RG"+idP+"App-Id", "2023-01-31"), map[string]string{"location": "local"}, 201)
	if r := e.Do("PUT", e.url("/resourceGroups/team-rg"+idP+"app-id", "2023-01-31"), e.admin, map[string]string{"location": "local"}); r.Status != 409 {
		t.Errorf("identity, other case: %d %s", r.Status, r.Body)
	}
	e.ok(e.admin, "PUT", e.url("/resourceGroups/other-rg"+idP+"app-id", "2023-01-31"), map[string]string{"location": "local"}, 201)
	// Reading through another spelling finds the one resource, as ARM does.
	if r := e.ok(e.admin, "GET", e.url("/resourceGroups/TEAM-rg"+hsmP+"PROD1", "2024-11-01"), nil, 200); jsonField(r.Body, "name") != "Prod1" {
		t.Errorf("GET PROD1: %s", r.Body)
	}
	// Custom role names of an HSM are unique without regard to case.
	hsmTok := e.AdminToken(hsmResource)
	e.ok(hsmTok, "PUT", "/providers/Microsoft.Authorization/roleDefinitions/"+servertest.NewGUID()+"?api-version=7.6", customRole("Key Manager"), 201)
	if r := e.Do("PUT", "/providers/Microsoft.Authorization/roleDefinitions/"+servertest.NewGUID()+"?api-version=7.6", hsmTok, customRole("key MANAGER")); r.Status < 400 || r.Status >= 500 {
		t.Errorf("custom role, other case: %d %s", r.Status, r.Body)
	}

	// Host routing: prod1, Prod1 and PROD1 all reach Prod1, not dev.
	assignments := func(uri string) string {
		t.Helper()
		r := e.Do("GET", strings.TrimSuffix(uri, "/")+"/providers/Microsoft.Authorization/roleAssignments?api-version=7.6", hsmTok, nil)
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", uri, r.Status, r.Body)
		}
		return string(r.Body)
	}
	want := assignments(created.Properties.HSMURI)
	if want == assignments(e.Boot.HSMURI) {
		t.Fatal("Prod1's and dev's assignments are the same: the test cannot tell the HSMs apart")
	}
	for _, host := range []string{"prod1", "PROD1", "Prod1"} {
		uri := strings.Replace(created.Properties.HSMURI, "Prod1", host, 1)
		if !strings.Contains(uri, host) {
			t.Fatalf("HSM URI %s does not hold the name", created.Properties.HSMURI)
		}
		if got := assignments(uri); got != want {
			t.Errorf("%s reaches another HSM: %s", uri, got)
		}
	}
}
