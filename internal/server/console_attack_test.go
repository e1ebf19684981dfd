package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/testenv"
)

// From an outside review of the console. The audit search de-duplicated
// the HSMs whose settings target the account by a substring test over the
// names already seen: an HSM whose name is contained in an earlier one's
// ("dev" after "billing-dev") was dropped, silently, from the auditor's
// search, the API's and the console's.
func TestAuditSearchKeepsHSMsWhoseNamesOverlap(t *testing.T) {
	t.Parallel()
	s := startConsoleStory(t)
	sub := s.subscription(t)
	// An innocent second HSM whose logs go to the same account: its name
	// sorts before "dev" and contains it.
	createHSM(t, s.Env, "billing-dev")
	arm := s.AdminToken("https://management.azure.com")
	setting := map[string]any{"properties": map[string]any{
		"storageAccountId": "/subscriptions/" + sub + "/resourceGroups/logs/providers/Microsoft.Storage/storageAccounts/" + testenv.AzuriteAccount,
		"logs":             []map[string]any{{"category": "AuditEvent", "enabled": true}}}}
	if r := s.Do("PUT", s.Boot.AuthorityHost+"subscriptions/"+sub+"/resourceGroups/rg/providers/Microsoft.KeyVault/managedHSMs/billing-dev/providers/Microsoft.Insights/diagnosticSettings/d?api-version=2021-05-01-preview", arm, setting); r.Status != 200 {
		t.Fatalf("setting: %d %s", r.Status, r.Body)
	}
	// Something happens on dev: erin lists its keys.
	erinHSM := s.tokens["erin"]("https://managedhsm.azure.net")
	if r := s.Do("GET", "/keys?api-version=7.4", erinHSM, nil); r.Status != 200 {
		t.Fatalf("erin lists dev's keys: %d %s", r.Status, r.Body)
	}
	waitForRecord(t, s.Env, "dev", func(m map[string]any) bool { return m["operationName"] == "KeyList" })

	search := s.Boot.AuthorityHost + "subscriptions/" + sub + "/resourceGroups/logs/providers/Microsoft.Storage/storageAccounts/" +
		testenv.AzuriteAccount + "/providers/Keyward.Insights/auditEvents?api-version=2026-12-01"
	r := s.Do("GET", search, s.tokens["erin"]("https://management.azure.com"), nil)
	var page struct {
		HSMs  []string
		Value []struct{ OperationName, ResourceID string }
	}
	if err := json.Unmarshal(r.Body, &page); err != nil || r.Status != 200 {
		t.Fatalf("search: %d %s", r.Status, r.Body)
	}
	t.Logf("HSMs searched: %v, %d records", page.HSMs, len(page.Value))
	if !containsFold(page.HSMs, "dev") {
		t.Errorf("the search leaves out dev, whose setting targets the account: %v", page.HSMs)
	}
	if !strings.Contains(string(r.Body), `"KeyList"`) {
		t.Errorf("dev's KeyList record is not in the auditor's search")
	}
	// The console's Audit page: the same blind spot.
	erin := s.signIn(t, "erin")
	_, body := s.get(t, erin, "audit?"+url.Values{"account": {testenv.AzuriteAccount}}.Encode())
	if !strings.Contains(body, "dev: ") || strings.Count(body, "KeyList") == 0 {
		t.Errorf("the console's audit page shows no dev chain or KeyList record: %s", body)
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// From an outside review: the audit journal's streams are named by the
// HSM's name only, and the search returned a stream's whole history to
// whoever reads an account that an HSM of that name now logs to. Once an
// HSM was purged, anyone who may create an HSM in any resource group took
// the name, pointed its diagnostic setting at her own account and read the
// purged HSM's records. The search now answers only the records of that
// HSM resource, written since its setting was put.
func TestAuditSearchIgnoresAPurgedNamesake(t *testing.T) {
	t.Parallel()
	e := newARMEnv(t)
	const (
		hsmP  = "/providers/Microsoft.KeyVault/managedHSMs/"
		acctP = "/providers/Microsoft.Storage/storageAccounts/"
		diagP = "/providers/Microsoft.Insights/diagnosticSettings/"
	)
	for _, rg := range []string{"/resourceGroups/finance", "/resourceGroups/mallory"} {
		e.ok(e.admin, "PUT", e.url(rg, "2021-04-01"), map[string]string{"location": "local"}, 201)
	}
	// finance's HSM, and a request on it that names a key.
	r := e.ok(e.admin, "PUT", e.url("/resourceGroups/finance"+hsmP+"payroll", "2024-11-01"), hsmBody(e.me), 200)
	var created struct{ Properties struct{ HsmURI string } }
	must(t, jsonUnmarshal(r.Body, &created))
	e.Do("GET", created.Properties.HsmURI+"keys/q3-layoffs-signing?api-version=7.4", e.AdminToken(hsmResource), nil)
	waitForRecord(t, e.Env, "payroll", func(m map[string]any) bool {
		p, _ := m["properties"].(map[string]any)
		id, _ := p["id"].(string)
		return strings.Contains(id, "q3-layoffs-signing")
	})
	// finance deletes and purges it.
	e.ok(e.admin, "DELETE", e.url("/resourceGroups/finance"+hsmP+"payroll", "2024-11-01"), nil, 200)
	e.ok(e.admin, "POST", e.url("/providers/Microsoft.KeyVault/locations/local/deletedManagedHSMs/payroll/purge", "2024-11-01"), nil, 202)

	// mallory: Contributor of her own group only.
	mallory := e.ServicePrincipal("mallory")
	e.grant(mallory.ObjectID, contributorRoleID, "/resourceGroups/mallory")
	tok := e.Token(mallory.Cred, mgmtAudience)
	e.ok(tok, "PUT", e.url("/resourceGroups/mallory"+acctP+"mallorylogs", "2023-05-01"), accountBody("https://mallory.blob.example/mallorylogs"), 200)
	e.ok(tok, "PUT", e.url("/resourceGroups/mallory"+hsmP+"payroll", "2024-11-01"), hsmBody(mallory.ObjectID), 200)
	setting := map[string]any{"properties": map[string]any{
		"storageAccountId": "/subscriptions/" + e.sub + "/resourceGroups/mallory" + acctP + "mallorylogs",
		"logs":             []map[string]any{{"category": "AuditEvent", "enabled": true}}}}
	e.ok(tok, "PUT", e.url("/resourceGroups/mallory"+hsmP+"payroll"+diagP+"mine", "2021-05-01-preview"), setting, 200)

	res := e.ok(tok, "GET", e.url("/resourceGroups/mallory"+acctP+"mallorylogs/providers/Keyward.Insights/auditEvents", "2026-12-01")+"&$top=500", nil, 200)
	if strings.Contains(string(res.Body), "q3-layoffs-signing") {
		t.Errorf("mallory reads the purged finance HSM's audit records through her namesake HSM's setting: %.600s", res.Body)
	}
}

// From an outside review: the audit search's work grew with the number of
// HSMs whose settings target the account (each stream read up to 64 MiB)
// and it kept every matching record in memory for a page of 50. The byte
// budget is now the request's, and the search keeps only the newest
// Skip+Top matches. Replayed with 4 streams of ~16 MiB each.
func TestAuditSearchMemoryIsBounded(t *testing.T) {
	j, err := audit.OpenJournal(t.TempDir(), 8<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
	must(t, err)
	defer j.Close()
	now := time.Now().UTC()
	var streams []audit.StreamQuery
	for s := range 4 {
		name := fmt.Sprintf("hsm%d", s)
		streams = append(streams, audit.StreamQuery{Stream: name})
		for i := range 25000 {
			e := &audit.Event{Time: now.Add(-time.Duration(i) * time.Second).Format(time.RFC3339Nano), OperationName: "KeyGet",
				ResourceID: "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/MANAGEDHSMS/" + strings.ToUpper(name), HTTPStatusCode: 200,
				RequestURI: "https://" + name + ".managedhsm.azure.net/keys/" + strings.Repeat("k", 200) + "?api-version=7.4",
				Identity:   &audit.Identity{Claim: audit.Claims{UPN: "someone@keyward.test", ObjectID: "00000000-0000-0000-0000-000000000000"}}}
			must(t, j.Append(name, e))
		}
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := j.Search(streams, audit.Query{From: now.Add(-24 * time.Hour), To: now.Add(time.Minute), Top: 50})
	must(t, err)
	runtime.GC()
	runtime.ReadMemStats(&after)
	live := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("matched %d, page %d, allocated %d MiB, still live with the page: %d MiB", res.Matched, len(res.Events),
		(after.TotalAlloc-before.TotalAlloc)>>20, live>>20)
	if cap(res.Events) > 500 {
		t.Errorf("a page of %d records holds an array of %d: every match stays in memory", len(res.Events), cap(res.Events))
	}
	// The bytes read are the request's budget, shared: 4 streams of 17 MiB
	// each get 16 MiB, so every one is read in part. (Decoding and
	// re-hashing allocate about six times the bytes read, more with -race.)
	for _, c := range res.Chains {
		if !c.Partial {
			t.Errorf("stream %s was read whole: the bound is per stream, not per request", c.Stream)
		}
	}
	if total := after.TotalAlloc - before.TotalAlloc; total > 16*audit.MaxSearchBytes {
		t.Errorf("one search allocated %d MiB for %d streams", total>>20, len(streams))
	}
	if live > 16<<20 {
		t.Errorf("a search left %d MiB live", live>>20)
	}
}

// From an outside review, which held: a session cookie is no refresh token
// at /token, and revoking the user's sign-in sessions ends the console
// session.
func TestConsoleSessionIsNoRefreshToken(t *testing.T) {
	t.Parallel()
	s := startConsoleStory(t)
	alice := s.signIn(t, "alice")
	u, _ := url.Parse(s.consoleURL())
	var session string
	for _, c := range alice.Jar.Cookies(u) {
		if c.Name == "__Host-kw_session" {
			session = c.Value
		}
	}
	if session == "" {
		t.Fatal("no session cookie")
	}
	resp, err := s.HTTP.PostForm(s.Boot.AuthorityHost+s.Boot.TenantID+"/oauth2/v2.0/token", url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {session}, "client_id": {"9a3c1f6e-7d2b-4e8a-b5c4-0f1e2d3c4b5a"}, "scope": {"https://management.azure.com/.default"}})
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Error("the session cookie redeemed as a refresh token")
	}
	if r := s.Graph("POST", "/users/"+s.alice+"/revokeSignInSessions", nil); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	if r, _ := getPage(t, alice, s.consoleURL()+"access"); r.StatusCode != 302 {
		t.Errorf("the session after revokeSignInSessions: %d", r.StatusCode)
	}
}
