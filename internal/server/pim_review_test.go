package server_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/servertest"
)

// These tests replay the attacks of an outside review of PIM for groups.

// policyPatch returns a function that PATCHes a rule of group's member policy.
func (p *pimEnv) policyPatch(t *testing.T, group string) func(rule string, body map[string]any) {
	t.Helper()
	pa := p.Graph("GET", "/policies/roleManagementPolicyAssignments?$filter="+url.QueryEscape("scopeId eq '"+group+"' and scopeType eq 'Group' and roleDefinitionId eq 'member'"), nil)
	var pas struct{ Value []struct{ PolicyID string } }
	json.Unmarshal(pa.Body, &pas)
	if pa.Status != 200 || len(pas.Value) != 1 {
		t.Fatalf("policy assignments: %d %s", pa.Status, pa.Body)
	}
	return func(rule string, body map[string]any) {
		t.Helper()
		body["id"] = rule
		if r := p.Graph("PATCH", "/policies/roleManagementPolicies/"+pas.Value[0].PolicyID+"/rules/"+rule, body); r.Status != 204 {
			t.Fatalf("PATCH %s: %d %s", rule, r.Status, r.Body)
		}
	}
}

func approvalBy(ids ...string) map[string]any {
	var stages []map[string]any
	for _, id := range ids {
		stages = append(stages, map[string]any{"approvalStageTimeOutInDays": 1,
			"primaryApprovers": []map[string]any{{"@odata.type": "#microsoft.graph.singleUser", "userId": id}}})
	}
	mode := "SingleStage"
	if len(ids) > 1 {
		mode = "Serial"
	}
	return map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyApprovalRule",
		"setting": map[string]any{"isApprovalRequired": true, "approvalMode": mode, "approvalStages": stages}}
}

// selfActivate asks for membership of group with the given expiration.
func (p *pimEnv) selfActivate(tok, group, user string, exp map[string]any) *servertest.Response {
	return p.graphAs(tok, "POST", pimGroup+"assignmentScheduleRequests", map[string]any{"accessId": "member", "groupId": group,
		"principalId": user, "action": "selfActivate", "justification": "incident 9", "scheduleInfo": map[string]any{"expiration": exp}})
}

// approveAll has approver decide every stage of the request's approval.
func (p *pimEnv) approve(t *testing.T, tok string, r *servertest.Response, stage int) *servertest.Response {
	t.Helper()
	if r.Status != 201 || jsonField(r.Body, "status") != "PendingApproval" {
		t.Fatalf("activation: %d %s", r.Status, r.Body)
	}
	approval := jsonField(r.Body, "approvalId")
	a := p.Graph("GET", pimGroup+"assignmentApprovals/"+approval, nil)
	var ap struct{ Stages []struct{ ID string } }
	json.Unmarshal(a.Body, &ap)
	if len(ap.Stages) <= stage {
		t.Fatalf("approval: %d %s", a.Status, a.Body)
	}
	return p.graphAs(tok, "PATCH", pimGroup+"assignmentApprovals/"+approval+"/steps/"+ap.Stages[stage].ID,
		map[string]string{"reviewResult": "Approve", "justification": "ok"})
}

// activeEnd is the end of user's activated membership of group (zero: none).
func (p *pimEnv) activeEnd(t *testing.T, group, user string) time.Time {
	t.Helper()
	r := p.Graph("GET", pimGroup+"assignmentScheduleInstances?$filter="+url.QueryEscape("groupId eq '"+group+"' and principalId eq '"+user+"'"), nil)
	var l struct {
		Value []struct {
			AssignmentType string
			EndDateTime    *string
		}
	}
	if err := json.Unmarshal(r.Body, &l); err != nil || r.Status != 200 {
		t.Fatalf("instances: %d %s", r.Status, r.Body)
	}
	for _, v := range l.Value {
		if v.AssignmentType == "activated" {
			if v.EndDateTime == nil {
				return time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
			}
			end, err := time.Parse(time.RFC3339, *v.EndDateTime)
			if err != nil {
				t.Fatal(err)
			}
			return end
		}
	}
	return time.Time{}
}

func (p *pimEnv) deactivate(t *testing.T, tok, group, user string) {
	t.Helper()
	if r := p.activate(tok, group, user, "selfDeactivate"); r.Status != 201 {
		t.Fatalf("deactivation: %d %s", r.Status, r.Body)
	}
}

// TestPIMApprovedActivationDuration: an approved activation lasts at most
// the policy's maximum, whatever duration rides along with an
// afterDateTime expiration or stands without a type (finding 1), and ends
// with its eligibility (finding 3).
func TestPIMApprovedActivationDuration(t *testing.T) {
	p := startPIM(t)
	group := p.pimGroup(t, "ops-duration")
	alice, aliceTok := p.user(t, "alice")
	bob, bobTok := p.user(t, "bob")
	p.eligible(t, p.AdminToken(graphURL), group, alice)
	patch := p.policyPatch(t, group)
	patch("Expiration_EndUser_Assignment", map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyExpirationRule",
		"isExpirationRequired": true, "maximumDuration": "PT1H"})
	patch("Approval_EndUser_Assignment", approvalBy(bob))
	tok, btok := aliceTok(graphURL), bobTok(graphURL)

	// afterDateTime with a legal end and a ten-year duration.
	legal := p.clock.now().Add(30 * time.Minute).UTC().Format(time.RFC3339)
	r := p.selfActivate(tok, group, alice, map[string]any{"type": "afterDateTime", "endDateTime": legal, "duration": "P3650D"})
	if d := p.approve(t, btok, r, 0); d.Status != 204 {
		t.Fatalf("bob approves: %d %s", d.Status, d.Body)
	}
	if end := p.activeEnd(t, group, alice); end.IsZero() || end.After(p.clock.now().Add(time.Hour)) {
		t.Fatalf("afterDateTime with duration P3650D: the activation ends %s, past the policy's hour", end)
	}
	p.deactivate(t, tok, group, alice)

	// The same with no type at all, with or without the end: the duration
	// is then afterDuration's, and checked.
	for _, exp := range []map[string]any{{"endDateTime": legal, "duration": "P3650D"}, {"duration": "P3650D"}} {
		r = p.selfActivate(tok, group, alice, exp)
		if r.Status == 201 {
			p.approve(t, btok, r, 0)
			t.Fatalf("no type, %v accepted: the activation ends %s", exp, p.activeEnd(t, group, alice))
		}
		if r.Status != 400 || !strings.Contains(string(r.Body), "ExpirationRule") {
			t.Fatalf("no type, %v: %d %s, want ExpirationRule", exp, r.Status, r.Body)
		}
	}
}

// TestPIMActivationEndsWithEligibility: an eligibility of two hours under
// a policy of eight: the activation ends with the eligibility, without
// approval and with it (finding 3).
func TestPIMActivationEndsWithEligibility(t *testing.T) {
	p := startPIM(t)
	bob, bobTok := p.user(t, "bob")
	btok := bobTok(graphURL)
	g2 := p.pimGroup(t, "ops-short")
	carol, carolTok := p.user(t, "carol")
	if r := p.Graph("POST", pimGroup+"eligibilityScheduleRequests", map[string]any{"accessId": "member", "groupId": g2, "principalId": carol,
		"action": "adminAssign", "justification": "short", "scheduleInfo": map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "PT2H"}}}); r.Status != 201 {
		t.Fatalf("eligibility: %d %s", r.Status, r.Body)
	}
	elEnd := p.clock.now().Add(2 * time.Hour)
	ctok := carolTok(graphURL)
	r := p.selfActivate(ctok, g2, carol, map[string]any{"type": "afterDuration", "duration": "PT8H"})
	if r.Status != 201 || jsonField(r.Body, "status") != "Provisioned" {
		t.Fatalf("activation: %d %s", r.Status, r.Body)
	}
	if end := p.activeEnd(t, g2, carol); end.IsZero() || end.After(elEnd.Add(time.Second)) {
		t.Fatalf("the activation ends %s, after its eligibility (%s)", end, elEnd)
	}
	p.deactivate(t, ctok, g2, carol)
	p.policyPatch(t, g2)("Approval_EndUser_Assignment", approvalBy(bob))
	r = p.selfActivate(ctok, g2, carol, map[string]any{"type": "afterDuration", "duration": "PT8H"})
	if d := p.approve(t, btok, r, 0); d.Status != 204 {
		t.Fatalf("bob approves: %d %s", d.Status, d.Body)
	}
	if end := p.activeEnd(t, g2, carol); end.IsZero() || end.After(elEnd.Add(time.Second)) {
		t.Fatalf("the approved activation ends %s, after its eligibility (%s)", end, elEnd)
	}
}

// TestPIMApprovalAfterEligibilityRemoved: an approval given after the
// eligibility was removed grants nothing; the request fails (finding 2).
func TestPIMApprovalAfterEligibilityRemoved(t *testing.T) {
	p := startPIM(t)
	group := p.pimGroup(t, "ops-removed")
	alice, aliceTok := p.user(t, "alice")
	bob, bobTok := p.user(t, "bob")
	p.eligible(t, p.AdminToken(graphURL), group, alice)
	p.policyPatch(t, group)("Approval_EndUser_Assignment", approvalBy(bob))
	r := p.selfActivate(aliceTok(graphURL), group, alice, map[string]any{"type": "afterDuration", "duration": "PT1H"})
	id := jsonField(r.Body, "id")
	if rm := p.Graph("POST", pimGroup+"eligibilityScheduleRequests", map[string]any{"accessId": "member", "groupId": group, "principalId": alice,
		"action": "adminRemove", "justification": "left the team"}); rm.Status != 201 {
		t.Fatalf("removing the eligibility: %d %s", rm.Status, rm.Body)
	}
	p.approve(t, bobTok(graphURL), r, 0)
	if isMember(t, p, group, alice) || !p.activeEnd(t, group, alice).IsZero() {
		t.Fatal("an approval after the eligibility was removed made alice a member")
	}
	if g := p.Graph("GET", pimGroup+"assignmentScheduleRequests/"+id, nil); jsonField(g.Body, "status") != "Failed" {
		t.Errorf("the request after the approval: %d %s, want status Failed", g.Status, g.Body)
	}
}

// TestPIMOneApproverPerStage: who approved the first stage may not
// approve the second (finding 5).
func TestPIMOneApproverPerStage(t *testing.T) {
	p := startPIM(t)
	group := p.pimGroup(t, "ops-stages")
	alice, aliceTok := p.user(t, "alice")
	bob, bobTok := p.user(t, "bob")
	carol, carolTok := p.user(t, "carol")
	p.eligible(t, p.AdminToken(graphURL), group, alice)
	rule := approvalBy(bob, bob)
	stages := rule["setting"].(map[string]any)["approvalStages"].([]map[string]any)
	stages[1]["primaryApprovers"] = []map[string]any{{"@odata.type": "#microsoft.graph.singleUser", "userId": bob},
		{"@odata.type": "#microsoft.graph.singleUser", "userId": carol}}
	p.policyPatch(t, group)("Approval_EndUser_Assignment", rule)
	r := p.selfActivate(aliceTok(graphURL), group, alice, map[string]any{"type": "afterDuration", "duration": "PT1H"})
	if d := p.approve(t, bobTok(graphURL), r, 0); d.Status != 204 {
		t.Fatalf("bob approves stage 1: %d %s", d.Status, d.Body)
	}
	if d := p.approve(t, bobTok(graphURL), r, 1); d.Status != 403 {
		t.Fatalf("bob approves stage 2 too: %d %s, want 403", d.Status, d.Body)
	}
	if isMember(t, p, group, alice) {
		t.Fatal("a member on one approver's word")
	}
	if d := p.approve(t, carolTok(graphURL), r, 1); d.Status != 204 {
		t.Fatalf("carol approves stage 2: %d %s", d.Status, d.Body)
	}
	if !isMember(t, p, group, alice) {
		t.Fatal("not a member after two approvers")
	}
}

// TestPIMInvisibleJustification: a justification of invisible characters
// is none (finding 8); so is a duration that overflows (P585Y).
func TestPIMInvisibleJustification(t *testing.T) {
	p := startPIM(t)
	group := p.pimGroup(t, "ops-just")
	alice, aliceTok := p.user(t, "alice")
	p.eligible(t, p.AdminToken(graphURL), group, alice)
	p.policyPatch(t, group)("Enablement_EndUser_Assignment", map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyEnablementRule",
		"enabledRules": []string{"Justification"}})
	for _, j := range []string{"\u200b", " \u200b\u2060 ", "..."} {
		r := p.graphAs(aliceTok(graphURL), "POST", pimGroup+"assignmentScheduleRequests", map[string]any{"accessId": "member", "groupId": group,
			"principalId": alice, "action": "selfActivate", "justification": j,
			"scheduleInfo": map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "PT1H"}}})
		if r.Status != 400 || !strings.Contains(string(r.Body), "JustificationRule") {
			t.Fatalf("justification %q: %d %s, want JustificationRule", j, r.Status, r.Body)
		}
	}
	g2 := p.pimGroup(t, "ops-overflow")
	if r := p.Graph("POST", pimGroup+"eligibilityScheduleRequests", map[string]any{"accessId": "member", "groupId": g2, "principalId": alice,
		"action": "adminAssign", "justification": "x", "scheduleInfo": map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "P585Y"}}}); r.Status != 400 {
		t.Fatalf("an eligibility of P585Y: %d %s, want 400", r.Status, r.Body)
	}
}

// TestUserAuthenticationMethodsPrivate: a user's authentication methods
// are for the user and administrators only (finding 7).
func TestUserAuthenticationMethodsPrivate(t *testing.T) {
	p := startPIM(t)
	alice, aliceTok := p.user(t, "alice")
	_, eveTok := p.user(t, "eve")
	path := "/users/" + alice + "/authentication/softwareOathMethods"
	if r := p.graphAs(eveTok(graphURL), "GET", path, nil); r.Status != 403 {
		t.Errorf("eve reads alice's methods: %d %s, want 403", r.Status, r.Body)
	}
	if r := p.graphAs(aliceTok(graphURL), "GET", path, nil); r.Status != 200 {
		t.Errorf("alice reads her methods: %d %s", r.Status, r.Body)
	}
	if r := p.Graph("GET", path, nil); r.Status != 200 {
		t.Errorf("the administrator reads alice's methods: %d %s", r.Status, r.Body)
	}
}
