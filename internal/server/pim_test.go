package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

// pimEnv is a server with a settable clock and a webhook that records
// PIM CloudEvents.
type pimEnv struct {
	*servertest.Env
	clock  *settableClock
	mu     sync.Mutex
	events []map[string]any
}

func startPIM(t *testing.T) *pimEnv {
	p := &pimEnv{clock: &settableClock{t: time.Now()}}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e map[string]any
		json.NewDecoder(r.Body).Decode(&e)
		p.mu.Lock()
		p.events = append(p.events, e)
		p.mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	p.Env = servertest.StartWith(t, t.TempDir(), func(c *server.Config) {
		c.Clock, c.EventWebhooks = p.clock.now, []string{hook.URL}
	})
	return p
}

func (p *pimEnv) eventTypes() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for _, e := range p.events {
		out[e["type"].(string)]++
	}
	return out
}

// user creates a user and returns its id and a token for resource.
func (p *pimEnv) user(t *testing.T, name string) (id string, token func(resource string) string) {
	t.Helper()
	r := p.Graph("POST", "/users", map[string]any{"displayName": name, "userPrincipalName": name + "@keyward.test",
		"passwordProfile": map[string]string{"password": "Correct horse 1"}})
	if r.Status != 201 {
		t.Fatalf("creating %s: %d %s", name, r.Status, r.Body)
	}
	id = jsonField(r.Body, "id")
	return id, func(resource string) string {
		form := url.Values{"grant_type": {"password"}, "username": {name + "@keyward.test"}, "password": {"Correct horse 1"},
			"scope": {resource + "/.default"}}
		resp, err := p.HTTP.PostForm(p.Boot.AuthorityHost+p.Boot.TenantID+"/oauth2/v2.0/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&tok)
		if tok.AccessToken == "" {
			t.Fatalf("no token for %s: %d", name, resp.StatusCode)
		}
		return tok.AccessToken
	}
}

const graphURL = "https://graph.microsoft.com"

func (p *pimEnv) graphAs(tok, method, path string, body any) *servertest.Response {
	return p.Do(method, p.Boot.AuthorityHost+"v1.0"+path, tok, body)
}

const pimGroup = "/identityGovernance/privilegedAccess/group/"

func isMember(t *testing.T, p *pimEnv, group, user string) bool {
	r := p.Graph("GET", "/groups/"+group+"/members", nil)
	return strings.Contains(string(r.Body), user)
}

// TestPIMForGroups walks the acceptance list: an eligible user is not a
// member; the policy is PATCHed; the MFA, justification and duration rules
// refuse; a valid request waits for approval; the requester and strangers
// cannot approve; the approver's approval makes the user a member (the HSM
// answers 200); a minute later access ends by itself.
func TestPIMForGroups(t *testing.T) {
	p := startPIM(t)
	g := p.Graph("POST", "/groups", map[string]string{"displayName": "hsm-operators", "mailNickname": "hsm-operators"})
	if g.Status != 201 {
		t.Fatalf("group: %d %s", g.Status, g.Body)
	}
	group := jsonField(g.Body, "id")
	p.Assign(group, rbac.CryptoUserID, "/")
	alice, aliceTok := p.user(t, "alice")
	bob, bobTok := p.user(t, "bob")
	_, eveTok := p.user(t, "eve")

	// Eligibility, by the administrator.
	r := p.Graph("POST", pimGroup+"eligibilityScheduleRequests", map[string]any{"accessId": "member", "groupId": group, "principalId": alice,
		"action": "adminAssign", "justification": "on call", "scheduleInfo": map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "P30D"}}})
	if r.Status != 201 || jsonField(r.Body, "status") != "Provisioned" {
		t.Fatalf("eligibility: %d %s", r.Status, r.Body)
	}
	// A user may not make eligibilities.
	if r := p.graphAs(aliceTok(graphURL), "POST", pimGroup+"eligibilityScheduleRequests", map[string]any{"accessId": "member", "groupId": group,
		"principalId": alice, "action": "adminAssign", "scheduleInfo": map[string]any{}}); r.Status != 403 {
		t.Errorf("a user makes an eligibility: %d %s", r.Status, r.Body)
	}
	if r := p.Do("GET", "/keys?api-version=7.4", aliceTok(server.ManagedHSMResource), nil); r.Status != 403 {
		t.Fatalf("an eligible user on the HSM: %d, want 403", r.Status)
	}
	if isMember(t, p, group, alice) {
		t.Fatal("an eligible user is a member")
	}

	// The member policy: MFA, justification, at most one hour, approval by bob.
	pa := p.Graph("GET", "/policies/roleManagementPolicyAssignments?$filter="+url.QueryEscape("scopeId eq '"+group+"' and scopeType eq 'Group' and roleDefinitionId eq 'member'"), nil)
	var pas struct{ Value []struct{ PolicyID string } }
	json.Unmarshal(pa.Body, &pas)
	if pa.Status != 200 || len(pas.Value) != 1 {
		t.Fatalf("policy assignments: %d %s", pa.Status, pa.Body)
	}
	policy := pas.Value[0].PolicyID
	patch := func(rule string, body map[string]any) {
		t.Helper()
		body["id"] = rule
		if r := p.Graph("PATCH", "/policies/roleManagementPolicies/"+policy+"/rules/"+rule, body); r.Status != 204 {
			t.Fatalf("PATCH %s: %d %s", rule, r.Status, r.Body)
		}
	}
	patch("Enablement_EndUser_Assignment", map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyEnablementRule",
		"enabledRules": []string{"MultiFactorAuthentication", "Justification"}})
	patch("Expiration_EndUser_Assignment", map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyExpirationRule",
		"isExpirationRequired": true, "maximumDuration": "PT1H"})
	patch("Approval_EndUser_Assignment", map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyApprovalRule",
		"setting": map[string]any{"isApprovalRequired": true, "approvalMode": "SingleStage", "approvalStages": []map[string]any{{
			"approvalStageTimeOutInDays": 1, "primaryApprovers": []map[string]any{{"@odata.type": "#microsoft.graph.singleUser", "userId": bob}}}}}})
	rules := p.Graph("GET", "/policies/roleManagementPolicies/"+policy+"/rules/Expiration_EndUser_Assignment", nil)
	if jsonField(rules.Body, "maximumDuration") != "PT1H" {
		t.Fatalf("the rule after PATCH: %s", rules.Body)
	}

	activate := func(tok, justification, duration string) *servertest.Response {
		return p.graphAs(tok, "POST", pimGroup+"assignmentScheduleRequests", map[string]any{"accessId": "member", "groupId": group,
			"principalId": alice, "action": "selfActivate", "justification": justification,
			"scheduleInfo": map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": duration}}})
	}
	wantRules := func(r *servertest.Response, rules string) {
		t.Helper()
		if r.Status != 400 || r.ErrorCode() != "RoleAssignmentRequestPolicyValidationFailed" || !strings.Contains(string(r.Body), rules) {
			t.Fatalf("want %s: %d %s", rules, r.Status, r.Body)
		}
	}
	tok := aliceTok(graphURL) // a password token: amr has no mfa
	wantRules(activate(tok, "incident 42", "PT30M"), `[\"MfaRule\"]`)
	patch("Enablement_EndUser_Assignment", map[string]any{"enabledRules": []string{"Justification"}})
	wantRules(activate(tok, "", "PT30M"), `[\"JustificationRule\"]`)
	wantRules(activate(tok, "incident 42", "PT2H"), `[\"ExpirationRule\"]`)
	if r := activate(tok, "incident 42", "PT1X"); r.Status != 400 || r.ErrorCode() == "" {
		t.Errorf("a malformed duration: %d %s", r.Status, r.Body)
	}

	r = activate(tok, "incident 42", "PT1M")
	if r.Status != 201 || jsonField(r.Body, "status") != "PendingApproval" {
		t.Fatalf("activation: %d %s", r.Status, r.Body)
	}
	approval := jsonField(r.Body, "approvalId")
	a := p.graphAs(bobTok(graphURL), "GET", pimGroup+"assignmentApprovals/"+approval, nil)
	var ap struct{ Stages []struct{ ID, Status string } }
	json.Unmarshal(a.Body, &ap)
	if a.Status != 200 || len(ap.Stages) != 1 || ap.Stages[0].Status != "InProgress" {
		t.Fatalf("approval: %d %s", a.Status, a.Body)
	}
	// bob finds it among his work.
	if r := p.graphAs(bobTok(graphURL), "GET", pimGroup+"assignmentScheduleRequests/filterByCurrentUser(on='approver')?$filter="+url.QueryEscape("status eq 'PendingApproval'"), nil); !strings.Contains(string(r.Body), approval) {
		t.Errorf("bob's approvals: %d %s", r.Status, r.Body)
	}
	step := pimGroup + "assignmentApprovals/" + approval + "/steps/" + ap.Stages[0].ID
	decide := map[string]string{"reviewResult": "Approve", "justification": "ok"}
	if r := p.graphAs(tok, "PATCH", step, decide); r.Status != 403 {
		t.Errorf("the requester approves: %d %s", r.Status, r.Body)
	}
	if r := p.graphAs(eveTok(graphURL), "PATCH", step, decide); r.Status != 403 {
		t.Errorf("a stranger approves: %d %s", r.Status, r.Body)
	}
	if r := p.graphAs(bobTok(graphURL), "PATCH", pimGroup+"assignmentApprovals/"+servertest.NewGUID()+"/steps/"+ap.Stages[0].ID, decide); r.Status != 404 || r.ErrorCode() == "" {
		t.Errorf("an unknown approval: %d %s", r.Status, r.Body)
	}
	// A step that is not this approval's (another approval's, or none).
	if r := p.graphAs(bobTok(graphURL), "PATCH", pimGroup+"assignmentApprovals/"+approval+"/steps/"+servertest.NewGUID(), decide); r.Status != 404 || r.ErrorCode() == "" {
		t.Errorf("a step of another approval: %d %s", r.Status, r.Body)
	}
	if isMember(t, p, group, alice) {
		t.Fatal("a member before approval")
	}
	// Approval a little later: the minute counts from the approval.
	p.clock.set(p.clock.now().Add(10 * time.Second))
	if r := p.graphAs(bobTok(graphURL), "PATCH", step, decide); r.Status != 204 {
		t.Fatalf("bob approves: %d %s", r.Status, r.Body)
	}
	if r := p.graphAs(bobTok(graphURL), "PATCH", step, decide); r.Status != 409 {
		t.Errorf("a second decision: %d %s", r.Status, r.Body)
	}
	hsm := aliceTok(server.ManagedHSMResource)
	if r := p.Do("GET", "/keys?api-version=7.4", hsm, nil); r.Status != 200 {
		t.Fatalf("an activated member on the HSM: %d %s", r.Status, r.Body)
	}
	if !isMember(t, p, group, alice) {
		t.Fatal("not a member after approval")
	}
	inst := p.graphAs(tok, "GET", pimGroup+"assignmentScheduleInstances/filterByCurrentUser(on='principal')", nil)
	if !strings.Contains(string(inst.Body), `"assignmentType":"activated"`) {
		t.Errorf("instances: %d %s", inst.Status, inst.Body)
	}

	// 50 s after the approval: still in; 61 s: gone by itself.
	p.clock.set(p.clock.now().Add(50 * time.Second))
	if r := p.Do("GET", "/keys?api-version=7.4", hsm, nil); r.Status != 200 {
		t.Fatalf("before the end: %d", r.Status)
	}
	p.clock.set(p.clock.now().Add(11 * time.Second))
	if r := p.Do("GET", "/keys?api-version=7.4", hsm, nil); r.Status != 403 {
		t.Fatalf("after the end: %d, want 403", r.Status)
	}
	if isMember(t, p, group, alice) {
		t.Fatal("still listed as a member after the end")
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.eventTypes()["Keyward.PIM.Expired"] == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	types := p.eventTypes()
	for _, typ := range []string{"Keyward.PIM.EligibilityCreated", "Keyward.PIM.ApprovalRequested", "Keyward.PIM.ApprovalDecided",
		"Keyward.PIM.Activated", "Keyward.PIM.Expired", "Keyward.PIM.AlertRaised"} {
		if types[typ] == 0 {
			t.Errorf("no %s event; got %v", typ, types)
		}
	}
	// The audit journal has the PIM requests.
	var journal strings.Builder
	filepath.WalkDir(filepath.Join(p.Dir, "audit"), func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".jsonl") {
			b, _ := os.ReadFile(path)
			journal.Write(b)
		}
		return nil
	})
	for _, op := range []string{"microsoft.directory/privilegedAccess/group/eligibilitySchedules/create",
		"microsoft.directory/privilegedAccess/group/assignmentSchedules/create",
		"microsoft.directory/privilegedAccess/group/assignmentApprovals/update",
		"microsoft.directory/roleManagementPolicies/basic/update"} {
		if !strings.Contains(journal.String(), op) {
			t.Errorf("the audit journal has no %s", op)
		}
	}
}

// TestPIMBadInput: unknown groups, malformed durations, schedules in the
// past, unknown approvals answer an error envelope and change nothing;
// a member added outside PIM to a governed group raises an alert.
func TestPIMBadInput(t *testing.T) {
	p := startPIM(t)
	g := p.Graph("POST", "/groups", map[string]string{"displayName": "ops", "mailNickname": "ops"})
	group := jsonField(g.Body, "id")
	alice, _ := p.user(t, "alice")
	req := func(mut func(m map[string]any)) map[string]any {
		m := map[string]any{"accessId": "member", "groupId": group, "principalId": alice, "action": "adminAssign", "justification": "x",
			"scheduleInfo": map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "P1D"}}}
		mut(m)
		return m
	}
	for name, c := range map[string]struct {
		body   map[string]any
		status int
	}{
		"unknown group":     {req(func(m map[string]any) { m["groupId"] = servertest.NewGUID() }), 404},
		"unknown principal": {req(func(m map[string]any) { m["principalId"] = servertest.NewGUID() }), 404},
		"bad access":        {req(func(m map[string]any) { m["accessId"] = "admin" }), 400},
		"bad action":        {req(func(m map[string]any) { m["action"] = "adminSteal" }), 400},
		"bad duration": {req(func(m map[string]any) {
			m["scheduleInfo"] = map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "1 day"}}
		}), 400},
		"in the past": {req(func(m map[string]any) {
			m["scheduleInfo"] = map[string]any{"startDateTime": time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339), "expiration": map[string]any{"type": "afterDuration", "duration": "P1D"}}
		}), 400},
		"too long": {req(func(m map[string]any) {
			m["scheduleInfo"] = map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "P400D"}}
		}), 400},
	} {
		r := p.Graph("POST", pimGroup+"eligibilityScheduleRequests", c.body)
		if r.Status != c.status || r.ErrorCode() == "" {
			t.Errorf("%s: %d %s, want %d with an error envelope", name, r.Status, r.Body, c.status)
		}
	}
	if r := p.Graph("GET", pimGroup+"eligibilitySchedules?$filter="+url.QueryEscape("groupId eq '"+group+"'"), nil); strings.Contains(string(r.Body), alice) {
		t.Errorf("a refused request left a schedule: %s", r.Body)
	}
	if r := p.Graph("GET", pimGroup+"assignmentApprovals/"+servertest.NewGUID(), nil); r.Status != 404 || r.ErrorCode() == "" {
		t.Errorf("an unknown approval: %d %s", r.Status, r.Body)
	}
	if r := p.Graph("GET", "/policies/roleManagementPolicies?$filter="+url.QueryEscape("scopeId eq '"+servertest.NewGUID()+"' and scopeType eq 'Group'"), nil); r.Status != 404 {
		t.Errorf("policies of an unknown group: %d %s", r.Status, r.Body)
	}
	if r := p.Graph("GET", "/policies/roleManagementPolicies", nil); r.Status != 400 {
		t.Errorf("policies without the filter: %d %s", r.Status, r.Body)
	}

	// Governed (alice is eligible); bob is added straight to the group.
	if r := p.Graph("POST", pimGroup+"eligibilityScheduleRequests", req(func(map[string]any) {})); r.Status != 201 {
		t.Fatalf("eligibility: %d %s", r.Status, r.Body)
	}
	bob, _ := p.user(t, "bob")
	if r := p.Graph("POST", "/groups/"+group+"/members/$ref", map[string]string{"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/" + bob}); r.Status != 204 {
		t.Fatalf("adding bob: %d %s", r.Status, r.Body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, e := range p.events {
			if d, _ := e["data"].(map[string]any); e["type"] == "Keyward.PIM.AlertRaised" && d["alertType"] == "RolesAssignedOutsidePimAlert" && d["principalId"] == bob {
				p.mu.Unlock()
				return
			}
		}
		p.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no RolesAssignedOutsidePimAlert for bob; events %v", p.eventTypes())
}
