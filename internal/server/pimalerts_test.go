package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"

	"github.com/keyward/keyward/internal/pim"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

// hookEvents records the CloudEvents a webhook receives.
type hookEvents struct {
	mu     sync.Mutex
	events []map[string]any
}

func newHook(t *testing.T) (*hookEvents, string) {
	h := &hookEvents{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e map[string]any
		json.NewDecoder(r.Body).Decode(&e)
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return h, srv.URL
}

// find returns the data of the first event of typ that match accepts.
func (h *hookEvents) find(typ string, match func(d map[string]any) bool) map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		d, _ := e["data"].(map[string]any)
		if e["type"] == typ && d != nil && (match == nil || match(d)) {
			return d
		}
	}
	return nil
}

// wait waits up to ten seconds for an event of typ that match accepts.
func (h *hookEvents) wait(t *testing.T, typ string, match func(d map[string]any) bool) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if d := h.find(typ, match); d != nil {
			return d
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var seen []string
	for _, e := range h.events {
		seen = append(seen, e["type"].(string))
	}
	t.Fatalf("no %s event; seen %v", typ, seen)
	return nil
}

// TestPIMAzureRoleAlertsAndEvents: PIM for Azure roles posts the
// Keyward.PIM.* CloudEvents (eligibility made, approval requested and
// decided, activated, deactivated, expired) to the event webhook with the
// principal, role definition, scope, request id and justification, and
// raises the core's alerts for roles: an eligibility that activates
// without MFA, two activations within an hour with the threshold at 2,
// and a standing Managed HSM Contributor assignment (an ARM role
// assignment PUT) at a scope where the role is PIM-governed.
func TestPIMAzureRoleAlertsAndEvents(t *testing.T) {
	t.Parallel()
	hook, hookURL := newHook(t)
	p := newPIMARMWith(t, func(c *server.Config) { c.EventWebhooks = []string{hookURL} })
	core := p.Server.PIM()
	if _, err := core.ConfigureAlert(ctx, pim.AlertSequential, pim.AlertConfig{Interval: "PT1H", Threshold: 2}); err != nil {
		t.Fatal(err)
	}
	base := p.Boot.AuthorityHost + p.scope + "/providers/Microsoft.Authorization/"
	adminTok := p.AdminToken(mgmtAudience)
	ok := func(method, u, tok string, body any, want int) *servertest.Response {
		t.Helper()
		r := p.Do(method, u, tok, body)
		if r.Status != want {
			t.Fatalf("%s %s: %d %s", method, u, r.Status, r.Body)
		}
		return r
	}
	role := p.roleID(mhsmContributorID)
	scope := "/" + p.scope
	isRole := func(d map[string]any) bool {
		return strings.EqualFold(d["roleDefinitionId"].(string), role) && strings.EqualFold(d["scope"].(string), scope) && d["principalId"] == p.userID
	}

	// Activation needs a justification only (no MFA).
	var assignments struct {
		Value []struct{ Properties struct{ PolicyID string } }
	}
	must(t, json.Unmarshal(ok("GET", base+"roleManagementPolicyAssignments?api-version=2020-10-01&$filter="+
		url.QueryEscape("roleDefinitionId eq '"+role+"'"), adminTok, nil, 200).Body, &assignments))
	policyURL := p.Boot.AuthorityHost + strings.TrimPrefix(assignments.Value[0].Properties.PolicyID, "/") + "?api-version=2020-10-01"
	ok("PATCH", policyURL, adminTok, map[string]any{"properties": map[string]any{"rules": []map[string]any{
		{"id": "Enablement_EndUser_Assignment", "ruleType": "RoleManagementPolicyEnablementRule", "enabledRules": []string{"Justification"}}}}}, 200)

	// Eligible: EligibilityCreated, and NoMfaOnRoleActivationAlert.
	eligName := servertest.NewGUID()
	ok("PUT", base+"roleEligibilityScheduleRequests/"+eligName+"?api-version=2020-10-01", adminTok, map[string]any{"properties": map[string]any{
		"principalId": p.userID, "roleDefinitionId": role, "requestType": "AdminAssign", "justification": "on call",
		"scheduleInfo": map[string]any{"expiration": map[string]any{"type": "AfterDuration", "duration": "P30D"}}}}, 201)
	d := hook.wait(t, "Keyward.PIM.EligibilityCreated", isRole)
	if d["requestId"] != eligName || d["justification"] != "on call" {
		t.Fatalf("EligibilityCreated data: %v", d)
	}
	hook.wait(t, "Keyward.PIM.AlertRaised", func(d map[string]any) bool {
		return d["alertType"] == pim.AlertNoMFA && isRole(d)
	})

	// Activated, deactivated, activated again within the hour: the second
	// activation raises SequentialActivationRenewalsAlert.
	act, err := p.activate("PT1H", "incident 42", "")
	must(t, err)
	d = hook.wait(t, "Keyward.PIM.Activated", isRole)
	if d["requestId"] != *act.Name || d["justification"] != "incident 42" || d["endDateTime"] == nil {
		t.Fatalf("Activated data: %v", d)
	}
	if hook.find("Keyward.PIM.AlertRaised", func(d map[string]any) bool { return d["alertType"] == pim.AlertSequential }) != nil {
		t.Fatal("a sequential-activation alert after one activation")
	}
	_, err = p.activationClient(p.user).Create(ctx, p.scope, servertest.NewGUID(), armauthorization.RoleAssignmentScheduleRequest{
		Properties: &armauthorization.RoleAssignmentScheduleRequestProperties{PrincipalID: to.Ptr(p.userID), RoleDefinitionID: to.Ptr(role),
			RequestType: to.Ptr(armauthorization.RequestTypeSelfDeactivate)}}, nil)
	must(t, err)
	hook.wait(t, "Keyward.PIM.Deactivated", isRole)
	p.clock.set(p.clock.now().Add(10 * time.Minute))
	second, err := p.activate("PT10M", "incident 43", "")
	must(t, err)
	hook.wait(t, "Keyward.PIM.AlertRaised", func(d map[string]any) bool {
		return d["alertType"] == pim.AlertSequential && isRole(d)
	})
	alerts, err := core.Alerts(ctx)
	must(t, err)
	for _, a := range alerts {
		if a.Type != pim.AlertSequential {
			continue
		}
		if !a.IsActive || len(a.Incidents) != 1 || a.Incidents[0].ActivationCount != 2 || a.Incidents[0].Target.Kind != pim.KindRole ||
			!strings.EqualFold(a.Incidents[0].Target.RoleDefinitionID, role) {
			t.Fatalf("sequential activations alert: %+v", a)
		}
	}

	// The second activation ends by itself: Expired.
	p.clock.set(p.clock.now().Add(10*time.Minute + time.Second))
	d = hook.wait(t, "Keyward.PIM.Expired", func(d map[string]any) bool { return isRole(d) && d["requestId"] == *second.Name })
	if st := p.createHSM("pim-expired"); st != 403 {
		t.Fatalf("creating an HSM after the activation expired: %d", st)
	}

	// With approval: ApprovalRequested, then ApprovalDecided and Activated.
	admin := jsonField(p.Graph("GET", "/servicePrincipals/"+p.Boot.ClientID, nil).Body, "id")
	ok("PATCH", policyURL, adminTok, map[string]any{"properties": map[string]any{"rules": []map[string]any{
		{"id": "Approval_EndUser_Assignment", "ruleType": "RoleManagementPolicyApprovalRule", "setting": map[string]any{
			"isApprovalRequired": true, "isRequestorJustificationRequired": false, "approvalMode": "SingleStage",
			"approvalStages": []map[string]any{{"primaryApprovers": []map[string]any{{"id": admin, "userType": "User"}}}}}}}}}, 200)
	p.clock.set(p.clock.now().Add(time.Minute))
	third, err := p.activate("PT1H", "incident 44", "")
	must(t, err)
	hook.wait(t, "Keyward.PIM.ApprovalRequested", func(d map[string]any) bool { return isRole(d) && d["requestId"] == *third.Name })
	ok("PATCH", base+"roleAssignmentApprovals/"+*third.Name+"/stages/"+*third.Name+"?api-version=2021-01-01-preview", adminTok,
		map[string]any{"reviewResult": "Approve", "justification": "ok"}, 200)
	hook.wait(t, "Keyward.PIM.ApprovalDecided", func(d map[string]any) bool {
		return isRole(d) && d["requestId"] == *third.Name && d["decision"] == "Approve"
	})
	hook.wait(t, "Keyward.PIM.Activated", func(d map[string]any) bool { return isRole(d) && d["requestId"] == *third.Name })

	// A standing Managed HSM Contributor assignment where the role is
	// PIM-governed: RolesAssignedOutsidePimAlert, for that principal.
	other := jsonField(p.Graph("POST", "/users", map[string]any{"displayName": "Sam", "userPrincipalName": "sam@contoso.test",
		"passwordProfile": map[string]string{"password": "Correct horse 1"}}).Body, "id")
	if hook.find("Keyward.PIM.AlertRaised", func(d map[string]any) bool { return d["alertType"] == pim.AlertOutsidePIM }) != nil {
		t.Fatal("an outside-PIM alert before any standing assignment")
	}
	ok("PUT", base+"roleAssignments/"+servertest.NewGUID()+"?api-version=2022-04-01", adminTok,
		map[string]any{"properties": map[string]string{"roleDefinitionId": role, "principalId": other}}, 201)
	hook.wait(t, "Keyward.PIM.AlertRaised", func(d map[string]any) bool {
		return d["alertType"] == pim.AlertOutsidePIM && d["principalId"] == other && strings.EqualFold(d["roleDefinitionId"].(string), role)
	})
	alerts, err = core.Alerts(ctx)
	must(t, err)
	for _, a := range alerts {
		if a.Type == pim.AlertOutsidePIM && (!a.IsActive || len(a.Incidents) != 1 || a.Incidents[0].PrincipalID != other) {
			t.Fatalf("outside-PIM alert: %+v", a)
		}
	}

	// No event carries a secret: the data has only the documented fields.
	hook.mu.Lock()
	defer hook.mu.Unlock()
	allowed := map[string]bool{"principalId": true, "requestorId": true, "roleDefinitionId": true, "scope": true, "requestId": true,
		"action": true, "status": true, "justification": true, "decision": true, "alertType": true, "startDateTime": true, "endDateTime": true}
	for _, e := range hook.events {
		if !strings.HasPrefix(e["type"].(string), "Keyward.PIM.") {
			continue
		}
		data, _ := e["data"].(map[string]any)
		for k := range data {
			if !allowed[k] {
				t.Fatalf("%s carries %s", e["type"], k)
			}
		}
	}
}
