package server_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
	"github.com/keyward/keyward/internal/testenv"
)

// consoleStory is the seed story's people on a server, for the console:
// alice, eligible for the "HSM Admins" group (which holds Managed HSM
// Administrator) under a policy of approval by bob, justification and
// MFA; bob, her approver; erin, an auditor (Crypto Auditor on the HSM,
// Reader on the storage account its logs go to). alice and bob have
// authenticators.
type consoleStory struct {
	*pimEnv
	group, alice, bob, erin string
	secrets                 map[string]string // TOTP secrets, by user name
	tokens                  map[string]func(resource string) string
	az                      *testenv.Azurite
}

const consolePassword = "Correct horse 1"

func startConsoleStory(t *testing.T) *consoleStory {
	t.Helper()
	s := &consoleStory{pimEnv: startPIM(t), secrets: map[string]string{}, tokens: map[string]func(string) string{}}
	g := s.Graph("POST", "/groups", map[string]string{"displayName": "HSM Admins", "mailNickname": "hsm-admins"})
	if g.Status != 201 {
		t.Fatalf("group: %d %s", g.Status, g.Body)
	}
	s.group = jsonField(g.Body, "id")
	s.Assign(s.group, rbac.AdministratorID, "/")
	s.alice, s.tokens["alice"] = s.user(t, "alice")
	s.bob, s.tokens["bob"] = s.user(t, "bob")
	s.erin, s.tokens["erin"] = s.user(t, "erin")
	s.enrollTOTP(t, "alice")
	s.enrollTOTP(t, "bob")

	// alice is eligible; the policy wants bob's approval, a justification and MFA.
	r := s.Graph("POST", pimGroup+"eligibilityScheduleRequests", map[string]any{"accessId": "member", "groupId": s.group, "principalId": s.alice,
		"action": "adminAssign", "justification": "on call", "scheduleInfo": map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "P30D"}}})
	if r.Status != 201 {
		t.Fatalf("eligibility: %d %s", r.Status, r.Body)
	}
	pa := s.Graph("GET", "/policies/roleManagementPolicyAssignments?$filter="+url.QueryEscape("scopeId eq '"+s.group+"' and scopeType eq 'Group' and roleDefinitionId eq 'member'"), nil)
	policy := regexp.MustCompile(`"policyId":"([^"]+)"`).FindStringSubmatch(string(pa.Body))
	if policy == nil {
		t.Fatalf("policy assignments: %d %s", pa.Status, pa.Body)
	}
	for rule, body := range map[string]map[string]any{
		"Enablement_EndUser_Assignment": {"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyEnablementRule",
			"enabledRules": []string{"MultiFactorAuthentication", "Justification"}},
		"Expiration_EndUser_Assignment": {"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyExpirationRule",
			"isExpirationRequired": true, "maximumDuration": "PT4H"},
		"Approval_EndUser_Assignment": {"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyApprovalRule",
			"setting": map[string]any{"isApprovalRequired": true, "approvalMode": "SingleStage", "approvalStages": []map[string]any{{
				"approvalStageTimeOutInDays": 1, "primaryApprovers": []map[string]any{{"@odata.type": "#microsoft.graph.singleUser", "userId": s.bob}}}}}},
	} {
		body["id"] = rule
		if r := s.Graph("PATCH", "/policies/roleManagementPolicies/"+policy[1]+"/rules/"+rule, body); r.Status != 204 {
			t.Fatalf("PATCH %s: %d %s", rule, r.Status, r.Body)
		}
	}

	// erin audits: Crypto Auditor on the HSM (through App Auditors), Reader
	// on the storage account that receives its logs.
	ag := s.Graph("POST", "/groups", map[string]string{"displayName": "App Auditors", "mailNickname": "app-auditors"})
	auditors := jsonField(ag.Body, "id")
	if r := s.Graph("POST", "/groups/"+auditors+"/members/$ref", map[string]string{"@odata.id": s.Boot.AuthorityHost + "v1.0/directoryObjects/" + s.erin}); r.Status != 204 {
		t.Fatalf("erin joins App Auditors: %d %s", r.Status, r.Body)
	}
	s.Assign(auditors, rbac.CryptoAuditorID, "/")
	s.az = testenv.StartAzurite(t)
	enableBlobLogging(t, s.Env, s.az)
	arm := s.AdminToken("https://management.azure.com")
	account := "/subscriptions/" + s.subscription(t) + "/resourceGroups/logs/providers/Microsoft.Storage/storageAccounts/" + testenv.AzuriteAccount
	if r := s.Do("PUT", s.Boot.AuthorityHost+strings.TrimPrefix(account, "/")+"/providers/Microsoft.Authorization/roleAssignments/"+servertest.NewGUID()+"?api-version=2022-04-01", arm,
		map[string]any{"properties": map[string]string{"principalId": auditors,
			"roleDefinitionId": "/subscriptions/" + s.subscription(t) + "/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"}}); r.Status != 201 {
		t.Fatalf("Reader on the storage account: %d %s", r.Status, r.Body)
	}

	// Keys: one expires within 30 days, one later, one never.
	ctx := context.Background()
	for name, exp := range map[string]time.Time{"payments-signing": time.Now().Add(10 * 24 * time.Hour), "storage-cmk": time.Now().Add(200 * 24 * time.Hour), "archive": {}} {
		p := azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}
		if !exp.IsZero() {
			p.KeyAttributes = &azkeys.KeyAttributes{Expires: to.Ptr(exp)}
		}
		if _, err := s.Keys.CreateKey(ctx, name, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *consoleStory) subscription(t *testing.T) string {
	r := s.Do("GET", s.Boot.AuthorityHost+"subscriptions?api-version=2022-12-01", s.AdminToken("https://management.azure.com"), nil)
	m := regexp.MustCompile(`"subscriptionId":"([^"]+)"`).FindStringSubmatch(string(r.Body))
	if m == nil {
		t.Fatalf("subscriptions: %d %s", r.Status, r.Body)
	}
	return m[1]
}

// enrollTOTP gives user name an authenticator.
func (s *consoleStory) enrollTOTP(t *testing.T, name string) {
	t.Helper()
	tok := s.tokens[name](graphURL)
	e := s.graphAs(tok, "POST", "/me/authentication/softwareOathMethods", map[string]any{})
	s.secrets[name] = jsonField(e.Body, "secretKey")
	if r := s.graphAs(tok, "POST", "/me/authentication/softwareOathMethods/"+jsonField(e.Body, "id")+"/confirm", map[string]string{"code": s.code(t, name)}); r.Status != 204 {
		t.Fatalf("confirming %s's authenticator: %d %s", name, r.Status, r.Body)
	}
}

// code returns user name's current TOTP code, and moves the clock to the
// next period: a code is accepted once.
func (s *consoleStory) code(t *testing.T, name string) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(s.secrets[name], s.clock.now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	s.clock.set(s.clock.now().Add(30 * time.Second))
	return c
}

func (s *consoleStory) consoleURL() string { return s.Boot.AuthorityHost + "console/" }

// signIn signs name in to the console with a cookie-keeping client that
// follows no redirects, and returns it.
func (s *consoleStory) signIn(t *testing.T, name string) *http.Client {
	t.Helper()
	b := browser(s.Env)
	resp, err := b.Get(s.consoleURL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authorize := resp.Header.Get("Location")
	if resp.StatusCode != 302 || !strings.Contains(authorize, "/oauth2/v2.0/authorize?") {
		t.Fatalf("the console without a session: %d to %q", resp.StatusCode, authorize)
	}
	checkCookies(t, resp)
	flow := signInPage(t, b, authorize)
	action := strings.SplitN(authorize, "?", 2)[0]
	r, body := post(t, b, action, url.Values{"flow": {flow}, "username": {name + "@keyward.test"}, "password": {consolePassword}})
	if s.secrets[name] != "" {
		m := flowField.FindStringSubmatch(body)
		if r.StatusCode != 200 || m == nil {
			t.Fatalf("after %s's password: %d %s", name, r.StatusCode, body)
		}
		r, body = post(t, b, action, url.Values{"flow": {m[1]}, "otp": {s.code(t, name)}})
	}
	back := r.Header.Get("Location")
	if r.StatusCode != 302 || !strings.HasPrefix(back, s.consoleURL()+"signin?") {
		t.Fatalf("the sign-in's end: %d to %q %s", r.StatusCode, back, body)
	}
	resp, err = b.Get(back)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 302 || resp.Header.Get("Location") != s.consoleURL()+"access" {
		t.Fatalf("the console's redirect URI: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	checkCookies(t, resp)
	return b
}

// checkCookies fails on a cookie without Secure, HttpOnly and SameSite=Strict.
func checkCookies(t *testing.T, resp *http.Response) {
	t.Helper()
	for _, raw := range resp.Header.Values("Set-Cookie") {
		low := strings.ToLower(raw)
		if !strings.Contains(low, "; secure") || !strings.Contains(low, "; httponly") || !strings.Contains(low, "; samesite=strict") ||
			!strings.HasPrefix(raw, "__Host-") && !strings.HasPrefix(raw, "kw_signin=") {
			t.Errorf("a cookie without Secure, HttpOnly, SameSite=Strict (or __Host-): %s", raw)
		}
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get GETs a console page and returns its status and body.
func (s *consoleStory) get(t *testing.T, b *http.Client, page string) (int, string) {
	t.Helper()
	resp, body := getPage(t, b, s.consoleURL()+page)
	return resp.StatusCode, body
}

func getPage(t *testing.T, b *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, sb.String()
}

// TestConsoleSecurity: the console's cookies are Secure, HttpOnly,
// SameSite=Strict (and __Host-); its pages send a strict CSP and DENY
// framing; a form without the session's CSRF token, or with another
// session's, or from another origin, is refused; sign-out ends the
// session for good; an approver cannot approve her own request; pages
// show only what the user's own calls may read; each page's calls are
// audited with the user as caller.
func TestConsoleSecurity(t *testing.T) {
	t.Parallel()
	s := startConsoleStory(t)
	alice := s.signIn(t, "alice")
	resp, body := getPage(t, alice, s.consoleURL()+"access")
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") ||
		!strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "form-action 'self'") ||
		resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("My access: %d, headers %v", resp.StatusCode, resp.Header)
	}
	if strings.Contains(body, "<script") || strings.Contains(body, " style=") || strings.Contains(body, "javascript:") {
		t.Error("a page carries script or inline style")
	}
	if !strings.Contains(body, "HSM Admins") || !strings.Contains(body, `name="activate"`) {
		t.Fatalf("alice's eligible access is not shown: %s", body)
	}
	token := csrfField.FindStringSubmatch(body)
	if token == nil {
		t.Fatal("no CSRF token on the page")
	}
	activate := url.Values{"kind": {"group"}, "target": {s.group}, "hours": {"1"}, "justification": {"incident 7"}}
	// Without the token, with a wrong one, from another origin: refused, and nothing changes.
	r, _ := post(t, alice, s.consoleURL()+"access/activate", activate)
	if r.StatusCode != 403 {
		t.Errorf("a form without the CSRF token: %d", r.StatusCode)
	}
	bad := url.Values{"csrf": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}
	for k, v := range activate {
		bad[k] = v
	}
	if r, _ := post(t, alice, s.consoleURL()+"access/activate", bad); r.StatusCode != 403 {
		t.Errorf("a form with a wrong CSRF token: %d", r.StatusCode)
	}
	bob := s.signIn(t, "bob")
	_, bobPage := getPage(t, bob, s.consoleURL()+"access")
	bobToken := csrfField.FindStringSubmatch(bobPage)[1]
	other := url.Values{"csrf": {bobToken}}
	for k, v := range activate {
		other[k] = v
	}
	if r, _ := post(t, alice, s.consoleURL()+"access/activate", other); r.StatusCode != 403 {
		t.Errorf("a form with another session's CSRF token: %d", r.StatusCode)
	}
	good := url.Values{"csrf": {token[1]}}
	for k, v := range activate {
		good[k] = v
	}
	req, _ := http.NewRequest("POST", s.consoleURL()+"access/activate", strings.NewReader(good.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if r, err := alice.Do(req); err != nil || r.StatusCode != 403 {
		t.Errorf("a form from another origin: %v %v", r.StatusCode, err)
	}
	if _, body := s.get(t, alice, "access"); strings.Contains(body, "PendingApproval") {
		t.Fatal("a refused form made a request")
	}

	// With the token: the request waits for bob.
	r, _ = post(t, alice, s.consoleURL()+"access/activate", good)
	if r.StatusCode != 303 {
		t.Fatalf("activation: %d", r.StatusCode)
	}
	if _, body := s.get(t, alice, "access"); !strings.Contains(body, "PendingApproval") || !strings.Contains(body, "incident 7") {
		t.Fatalf("the pending request is not shown: %s", body)
	}

	// An approver cannot approve her own request: bob, eligible too, asks.
	if r := s.Graph("POST", pimGroup+"eligibilityScheduleRequests", map[string]any{"accessId": "member", "groupId": s.group, "principalId": s.bob,
		"action": "adminAssign", "justification": "backup", "scheduleInfo": map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "P30D"}}}); r.Status != 201 {
		t.Fatalf("bob's eligibility: %d %s", r.Status, r.Body)
	}
	bobGood := url.Values{"csrf": {bobToken}, "kind": {"group"}, "target": {s.group}, "hours": {"1"}, "justification": {"my own"}}
	if r, _ := post(t, bob, s.consoleURL()+"access/activate", bobGood); r.StatusCode != 303 {
		t.Fatalf("bob's activation: %d", r.StatusCode)
	}
	own := s.graphAs(s.tokens["bob"](graphURL), "GET", pimGroup+"assignmentScheduleRequests/filterByCurrentUser(on='principal')", nil)
	ownApproval := regexp.MustCompile(`"approvalId":"([^"]+)"`).FindStringSubmatch(string(own.Body))
	if ownApproval == nil {
		t.Fatalf("bob's request: %s", own.Body)
	}
	_, approvals := s.get(t, bob, "approvals")
	if strings.Contains(approvals, "my own") || !strings.Contains(approvals, "incident 7") {
		t.Errorf("bob's approvals list his own request, or not alice's: %s", approvals)
	}
	r, body = post(t, bob, s.consoleURL()+"approvals/decide", url.Values{"csrf": {bobToken}, "kind": {"group"}, "approval": {ownApproval[1]},
		"decision": {"approve"}, "justification": {"me"}})
	if r.StatusCode != 403 {
		t.Fatalf("bob approves his own request through the console: %d %s", r.StatusCode, body)
	}
	if isMember(t, s.pimEnv, s.group, s.bob) {
		t.Fatal("bob approved himself")
	}

	// erin (no PIM, no approvals) sees no Activate or Approve buttons, and
	// is refused what an auditor may not read.
	erin := s.signIn(t, "erin")
	for _, page := range []string{"access", "approvals"} {
		if _, body := s.get(t, erin, page); strings.Contains(body, `name="activate"`) || strings.Contains(body, `value="approve"`) {
			t.Errorf("erin's %s page offers buttons: %s", page, body)
		}
	}
	if _, body := s.get(t, erin, "settings"); !strings.Contains(body, "You may not read") || strings.Contains(body, `name="save"`) {
		t.Errorf("erin reads PIM settings: %s", body)
	}

	// erin finds the HSM she audits (no control-plane role: through her
	// data-plane role), its keys with their expiry, and its assignments.
	if _, body := s.get(t, erin, "hsms"); !strings.Contains(body, `hsms/dev"`) {
		t.Errorf("erin's HSMs: %s", body)
	}
	if code, body := s.get(t, erin, "hsms/dev"); code != 200 || !strings.Contains(body, "payments-signing") ||
		!strings.Contains(body, "within 30 days") || !strings.Contains(body, "Managed HSM Crypto Auditor") || !strings.Contains(body, "App Auditors") {
		t.Errorf("erin's view of the HSM: %d %s", code, body)
	}
	if code, _ := s.get(t, erin, "hsms/nosuch"); code != 404 {
		t.Errorf("an HSM that does not exist: %d", code)
	}
	// alice is no PIM administrator: no policy form, and a forged one is
	// the API's to refuse.
	if _, body := s.get(t, alice, "settings"); strings.Contains(body, `name="save"`) {
		t.Errorf("alice is offered to change a policy: %s", body)
	}
	pols := s.Graph("GET", "/policies/roleManagementPolicies?$filter="+url.QueryEscape("scopeId eq '"+s.group+"' and scopeType eq 'Group' and roleDefinitionId eq 'member'"), nil)
	policyID := regexp.MustCompile(`"id":"([^"]+)"`).FindStringSubmatch(string(pols.Body))
	if policyID == nil {
		t.Fatalf("the group's policy: %s", pols.Body)
	}
	if r, body := post(t, alice, s.consoleURL()+"settings/policy", url.Values{"csrf": {token[1]}, "policy": {policyID[1]}, "hours": {"24"}}); r.StatusCode != 403 {
		t.Errorf("alice changes the policy through the console: %d %s", r.StatusCode, body)
	}
	// The audit search is the storage account's readers': alice is
	// refused, erin is not, and bad parameters are an error envelope.
	search := s.Boot.AuthorityHost + "subscriptions/" + s.subscription(t) + "/resourceGroups/logs/providers/Microsoft.Storage/storageAccounts/" +
		testenv.AzuriteAccount + "/providers/Keyward.Insights/auditEvents?api-version=2026-12-01"
	if r := s.Do("GET", search, s.tokens["alice"]("https://management.azure.com"), nil); r.Status != 403 {
		t.Errorf("alice searches the audit logs: %d %s", r.Status, r.Body)
	}
	erinARM := s.tokens["erin"]("https://management.azure.com")
	if r := s.Do("GET", search+"&result=refused", erinARM, nil); r.Status != 200 || !strings.Contains(string(r.Body), `"holds":true`) {
		t.Errorf("erin searches the audit logs: %d %s", r.Status, r.Body)
	}
	for _, bad := range []string{"&result=bogus", "&from=yesterday", "&from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
		"&from=2026-01-01T00:00:00Z&to=2026-12-01T00:00:00Z", "&$top=100000", "&$skip=-1"} {
		if r := s.Do("GET", search+bad, erinARM, nil); r.Status != 400 || r.ErrorCode() == "" {
			t.Errorf("a search with %s: %d %s", bad, r.Status, r.Body)
		}
	}
	// A link cannot put words in the console's mouth.
	if _, body := s.get(t, erin, "access?done="+url.QueryEscape("Your password expires today: reset it at https://evil.example")); strings.Contains(body, "evil.example") {
		t.Error("the flash line shows a link's own text")
	}
	if code, body := s.get(t, erin, "no/such/page"); code != 404 || !strings.Contains(body, "no page at this address") {
		t.Errorf("an unknown console page: %d %s", code, body)
	}
	// erin, eligible too but with no authenticator, is told in words that
	// activation needs a sign-in with a code, and offered one.
	if r := s.Graph("POST", pimGroup+"eligibilityScheduleRequests", map[string]any{"accessId": "member", "groupId": s.group, "principalId": s.erin,
		"action": "adminAssign", "justification": "audit", "scheduleInfo": map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "P1D"}}}); r.Status != 201 {
		t.Fatalf("erin's eligibility: %d %s", r.Status, r.Body)
	}
	_, erinAccess := s.get(t, erin, "access")
	if !strings.Contains(erinAccess, "a sign-in with your code (MFA)") || !strings.Contains(erinAccess, `name="justification" maxlength="500" required`) ||
		strings.Contains(erinAccess, `<option value="8"`) {
		t.Errorf("the activation form does not follow the policy: %s", erinAccess)
	}
	erinCSRF := csrfField.FindStringSubmatch(erinAccess)[1]
	r, body = post(t, erin, s.consoleURL()+"access/activate", url.Values{"csrf": {erinCSRF}, "kind": {"group"}, "target": {s.group}, "hours": {"1"},
		"justification": {"quarterly audit"}})
	if r.StatusCode != 400 || !strings.Contains(body, "authenticator") || !strings.Contains(body, `name="again-signin"`) {
		t.Errorf("an activation without MFA: %d %s", r.StatusCode, body)
	}

	// The audit view pages: the second page is the next 50 records.
	erinHSM := s.tokens["erin"](server.ManagedHSMResource)
	for range 60 {
		s.Do("GET", "/keys?api-version=7.4", erinHSM, nil)
	}
	waitForRecord(t, s.Env, "dev", func(m map[string]any) bool { return m["operationName"] == "KeyList" })
	_, first := s.get(t, erin, "audit?operation=KeyList&caller=erin")
	older := regexp.MustCompile(`href="([^"]+)" id="older"`).FindStringSubmatch(first)
	if older == nil || !strings.Contains(first, "0–50 shown") {
		t.Fatalf("the audit view's first page: %s", first)
	}
	resp, second := getPage(t, erin, html.UnescapeString(older[1]))
	if resp.StatusCode != 200 || !strings.Contains(second, "50–") || !strings.Contains(second, "Newer") {
		t.Fatalf("the audit view's second page: %d %s", resp.StatusCode, second)
	}

	// The page's calls are audited with the user as caller.
	waitForRecord(t, s.Env, "dev", func(m map[string]any) bool {
		id, _ := m["identity"].(map[string]any)
		claim, _ := id["claim"].(map[string]any)
		return claim["upn"] == "erin@keyward.test" && m["operationName"] == "KeyList"
	})

	// Sign-out ends the session: the cookie no longer opens pages.
	_, erinPage := s.get(t, erin, "access")
	erinToken := csrfField.FindStringSubmatch(erinPage)[1]
	var stale []*http.Cookie
	u, _ := url.Parse(s.consoleURL())
	stale = erin.Jar.Cookies(u)
	if r, _ := post(t, erin, s.consoleURL()+"signout", url.Values{"csrf": {erinToken}}); r.StatusCode != 200 {
		t.Fatalf("sign-out: %d", r.StatusCode)
	}
	replay := browser(s.Env)
	replay.Jar.SetCookies(u, stale)
	if r, _ := getPage(t, replay, s.consoleURL()+"access"); r.StatusCode != 302 {
		t.Errorf("the session cookie after sign-out: %d", r.StatusCode)
	}
	if r, _ := post(t, replay, s.consoleURL()+"signout", url.Values{"csrf": {erinToken}}); r.StatusCode != 401 {
		t.Errorf("a form after sign-out: %d", r.StatusCode)
	}
}
