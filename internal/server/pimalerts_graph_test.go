package server_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

const alertsBase = "/identityGovernance/roleManagementAlerts/"

var alertScope = "$filter=" + url.QueryEscape("scopeId eq '/' and scopeType eq 'DirectoryRole'")

// beta calls Graph beta with tok ("" is the bootstrap administrator).
func (p *pimEnv) beta(tok, method, path string, body any) *servertest.Response {
	if tok == "" {
		tok = p.AdminToken(graphURL)
	}
	return p.Do(method, p.Boot.AuthorityHost+"beta"+path, tok, body)
}

type gIncident struct {
	ID, AssigneeID, AssigneeUserPrincipalName, RoleDefinitionID, RoleDisplayName, GroupID, AccessID, Scope string
	ActivationCount                                                                                        int
	SequenceStartDateTime, SequenceEndDateTime                                                             string
}

type gAlert struct {
	ID, AlertDefinitionID, ScopeID, ScopeType string
	IncidentCount                             int
	IsActive                                  bool
	AlertIncidents                            []gIncident
}

// alert returns the alert of type typ from the list, with incidents.
func (p *pimEnv) alert(t *testing.T, typ string) gAlert {
	t.Helper()
	r := p.beta("", "GET", alertsBase+"alerts?"+alertScope+"&$expand=alertIncidents", nil)
	var l struct{ Value []gAlert }
	if err := json.Unmarshal(r.Body, &l); err != nil || r.Status != 200 {
		t.Fatalf("alerts: %d %s", r.Status, r.Body)
	}
	for _, a := range l.Value {
		if a.ID == "DirectoryRole_"+p.Boot.TenantID+"_"+typ {
			return a
		}
	}
	t.Fatalf("no alert %s in %s", typ, r.Body)
	return gAlert{}
}

// waitAlert waits up to 5 s for an active alert of type typ with an
// incident that ok accepts.
func (p *pimEnv) waitAlert(t *testing.T, typ string, ok func(gIncident) bool) (gAlert, gIncident) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		a := p.alert(t, typ)
		for _, in := range a.AlertIncidents {
			if a.IsActive && ok(in) {
				return a, in
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching %s incident: %+v", typ, a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *pimEnv) waitEvent(t *testing.T, typ string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.eventTypes()[typ] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no %s event; got %v", typ, p.eventTypes())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *pimEnv) pimGroup(t *testing.T, name string) string {
	t.Helper()
	g := p.Graph("POST", "/groups", map[string]string{"displayName": name, "mailNickname": name})
	if g.Status != 201 {
		t.Fatalf("group: %d %s", g.Status, g.Body)
	}
	return jsonField(g.Body, "id")
}

func (p *pimEnv) eligible(t *testing.T, tok, group, user string) {
	t.Helper()
	r := p.graphAs(tok, "POST", pimGroup+"eligibilityScheduleRequests", map[string]any{"accessId": "member", "groupId": group, "principalId": user,
		"action": "adminAssign", "justification": "on call", "scheduleInfo": map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "P30D"}}})
	if r.Status != 201 {
		t.Fatalf("eligibility: %d %s", r.Status, r.Body)
	}
}

func (p *pimEnv) activate(tok, group, user, action string) *servertest.Response {
	body := map[string]any{"accessId": "member", "groupId": group, "principalId": user, "action": action, "justification": "incident 7"}
	if action == "selfActivate" {
		body["scheduleInfo"] = map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "PT1H"}}
	}
	return p.graphAs(tok, "POST", pimGroup+"assignmentScheduleRequests", body)
}

// TestPIMAlertsGraph: Entra's beta alert endpoints. A member added
// straight to a PIM-governed group is RolesAssignedOutsidePimAlert with an
// incident naming the member and the group, and is dismissed; with the
// threshold set to 2 through alertConfigurations, two activations in an
// hour are SequentialActivationRenewalsAlert; an activation under a policy
// without MFA is NoMfaOnRoleActivationAlert. Only administrators read or
// change alerts; lists need Entra's filter.
func TestPIMAlertsGraph(t *testing.T) {
	p := startPIM(t)
	group := p.pimGroup(t, "hsm-ops")
	alice, aliceTok := p.user(t, "alice")
	bob, bobTok := p.user(t, "bob")
	p.eligible(t, p.AdminToken(graphURL), group, alice)
	id := func(typ string) string { return "DirectoryRole_" + p.Boot.TenantID + "_" + typ }

	// The filter is required; a user may neither read nor change alerts.
	if r := p.beta("", "GET", alertsBase+"alerts", nil); r.Status != 400 || r.ErrorCode() == "" {
		t.Errorf("alerts without the filter: %d %s", r.Status, r.Body)
	}
	if r := p.beta("", "GET", alertsBase+"alerts?$filter="+url.QueryEscape("scopeId eq '/' and scopeType eq 'Group'"), nil); r.Status != 400 {
		t.Errorf("alerts with another scope: %d %s", r.Status, r.Body)
	}
	if r := p.beta(bobTok(graphURL), "GET", alertsBase+"alerts?"+alertScope, nil); r.Status != 403 {
		t.Errorf("a user lists alerts: %d %s", r.Status, r.Body)
	}
	if r := p.beta(bobTok(graphURL), "PATCH", alertsBase+"alerts/"+id("RolesAssignedOutsidePimAlert"), map[string]bool{"isActive": false}); r.Status != 403 {
		t.Errorf("a user dismisses an alert: %d %s", r.Status, r.Body)
	}
	if r := p.beta("", "GET", alertsBase+"alerts/DirectoryRole_"+p.Boot.TenantID+"_NoSuchAlert", nil); r.Status != 404 {
		t.Errorf("an unknown alert: %d %s", r.Status, r.Body)
	}
	defs := p.beta("", "GET", alertsBase+"alertDefinitions?"+alertScope, nil)
	if defs.Status != 200 || strings.Count(string(defs.Body), `"severityLevel"`) != 3 {
		t.Errorf("definitions: %d %s", defs.Status, defs.Body)
	}
	if d := p.beta("", "GET", alertsBase+"alertDefinitions/"+id("SequentialActivationRenewalsAlert"), nil); jsonField(d.Body, "displayName") != "Roles are being activated too frequently" {
		t.Errorf("definition: %d %s", d.Status, d.Body)
	}
	if a := p.alert(t, "RolesAssignedOutsidePimAlert"); a.IsActive || a.IncidentCount != 0 || a.ScopeID != "/" || a.ScopeType != "DirectoryRole" || a.AlertDefinitionID != a.ID {
		t.Fatalf("before anything happened: %+v", a)
	}

	// bob straight into the governed group.
	if r := p.Graph("POST", "/groups/"+group+"/members/$ref", map[string]string{"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/" + bob}); r.Status != 204 {
		t.Fatalf("adding bob: %d %s", r.Status, r.Body)
	}
	a, in := p.waitAlert(t, "RolesAssignedOutsidePimAlert", func(in gIncident) bool { return in.AssigneeID == bob })
	if in.GroupID != group || in.AccessID != "member" || in.RoleDefinitionID != "member" || in.AssigneeUserPrincipalName != "bob@keyward.test" ||
		!strings.Contains(in.RoleDisplayName, "hsm-ops") || a.IncidentCount != len(a.AlertIncidents) {
		t.Errorf("outside-PIM incident: %+v of %+v", in, a)
	}
	inc := p.beta("", "GET", alertsBase+"alerts/"+a.ID+"/alertIncidents", nil)
	if inc.Status != 200 || !strings.Contains(string(inc.Body), "#microsoft.graph.rolesAssignedOutsidePrivilegedIdentityManagementAlertIncident") ||
		!strings.Contains(string(inc.Body), bob) {
		t.Errorf("incidents: %d %s", inc.Status, inc.Body)
	}
	if r := p.beta("", "GET", alertsBase+"alerts/"+a.ID+"/alertIncidents/"+in.ID, nil); jsonField(r.Body, "assigneeId") != bob {
		t.Errorf("one incident: %d %s", r.Status, r.Body)
	}
	if r := p.beta("", "POST", alertsBase+"alerts/"+a.ID+"/alertIncidents/"+in.ID+"/remediate", nil); r.Status != 400 {
		t.Errorf("remediate: %d %s", r.Status, r.Body)
	}
	// Dismiss, then refresh re-activates it (its incident remains).
	if r := p.beta("", "PATCH", alertsBase+"alerts/"+a.ID, map[string]bool{"isActive": false}); r.Status != 204 {
		t.Fatalf("dismiss: %d %s", r.Status, r.Body)
	}
	if got := p.beta("", "GET", alertsBase+"alerts/"+a.ID, nil); strings.Contains(string(got.Body), `"isActive":true`) {
		t.Fatalf("after dismissal: %s", got.Body)
	}
	if r := p.beta("", "POST", alertsBase+"alerts/"+a.ID+"/refresh", nil); r.Status != 202 || !strings.Contains(r.Header.Get("Location"), "operations/refresh:"+a.ID) {
		t.Errorf("refresh: %d %v %s", r.Status, r.Header, r.Body)
	}
	if got := p.alert(t, "RolesAssignedOutsidePimAlert"); !got.IsActive {
		t.Errorf("refresh did not re-activate: %+v", got)
	}
	p.beta("", "PATCH", alertsBase+"alerts/"+a.ID, map[string]bool{"isActive": false})

	// Threshold 2, through the configuration.
	cfg := alertsBase + "alertConfigurations/" + id("SequentialActivationRenewalsAlert")
	if r := p.beta(bobTok(graphURL), "PATCH", cfg, map[string]any{"sequentialActivationCounterThreshold": 2}); r.Status != 403 {
		t.Errorf("a user configures an alert: %d %s", r.Status, r.Body)
	}
	if r := p.beta("", "PATCH", alertsBase+"alertConfigurations/"+id("RolesAssignedOutsidePimAlert"), map[string]any{"sequentialActivationCounterThreshold": 2}); r.Status != 400 {
		t.Errorf("a threshold on the outside-PIM alert: %d %s", r.Status, r.Body)
	}
	if r := p.beta("", "PATCH", cfg, map[string]any{"sequentialActivationCounterThreshold": 1}); r.Status != 400 {
		t.Errorf("threshold 1: %d %s", r.Status, r.Body)
	}
	if r := p.beta("", "PATCH", cfg, map[string]any{"@odata.type": "#microsoft.graph.sequentialActivationRenewalsAlertConfiguration",
		"isEnabled": true, "timeIntervalBetweenActivations": "PT1H", "sequentialActivationCounterThreshold": 2}); r.Status != 204 {
		t.Fatalf("configure: %d %s", r.Status, r.Body)
	}
	c := p.beta("", "GET", cfg, nil)
	if !strings.Contains(string(c.Body), `"sequentialActivationCounterThreshold":2`) || jsonField(c.Body, "timeIntervalBetweenActivations") != "PT1H" {
		t.Fatalf("configuration: %d %s", c.Status, c.Body)
	}
	if l := p.beta("", "GET", alertsBase+"alertConfigurations?"+alertScope, nil); strings.Count(string(l.Body), `"isEnabled"`) != 3 {
		t.Errorf("configurations: %d %s", l.Status, l.Body)
	}

	// Two activations by alice within the hour (the default policy: no MFA).
	tok := aliceTok(graphURL)
	if r := p.activate(tok, group, alice, "selfActivate"); r.Status != 201 || jsonField(r.Body, "status") != "Provisioned" {
		t.Fatalf("first activation: %d %s", r.Status, r.Body)
	}
	_, nomfa := p.waitAlert(t, "NoMfaOnRoleActivationAlert", func(in gIncident) bool { return in.GroupID == group })
	if nomfa.RoleDefinitionID != "member" || nomfa.AssigneeID != "" {
		t.Errorf("no-MFA incident: %+v", nomfa)
	}
	if a := p.alert(t, "SequentialActivationRenewalsAlert"); a.IncidentCount != 0 {
		t.Fatalf("one activation is an incident: %+v", a)
	}
	p.clock.set(p.clock.now().Add(10 * time.Minute))
	if r := p.activate(tok, group, alice, "selfDeactivate"); r.Status != 201 || jsonField(r.Body, "status") != "Revoked" {
		t.Fatalf("deactivation: %d %s", r.Status, r.Body)
	}
	p.clock.set(p.clock.now().Add(10 * time.Minute))
	if r := p.activate(tok, group, alice, "selfActivate"); r.Status != 201 || jsonField(r.Body, "status") != "Provisioned" {
		t.Fatalf("second activation: %d %s", r.Status, r.Body)
	}
	_, seq := p.waitAlert(t, "SequentialActivationRenewalsAlert", func(in gIncident) bool { return in.AssigneeID == alice })
	if seq.ActivationCount != 2 || seq.GroupID != group || seq.SequenceStartDateTime == "" || seq.SequenceEndDateTime <= seq.SequenceStartDateTime {
		t.Errorf("sequential incident: %+v", seq)
	}
	p.waitEvent(t, "Keyward.PIM.AlertRaised")
}

// TestPIMPrivilegedRoleAdministrator: a Global Administrator grants the
// Privileged Role Administrator role through Graph's role assignments;
// its holder then administers group PIM (eligibility, policy, alerts)
// but not the directory; a plain user can do none of it, nor can the
// holder once the assignment is deleted.
func TestPIMPrivilegedRoleAdministrator(t *testing.T) {
	p := startPIM(t)
	group := p.pimGroup(t, "ops")
	carol, carolTok := p.user(t, "carol")
	dave, _ := p.user(t, "dave")
	const pra = "e8611ab8-c189-46e8-94e1-60213ab1f814"
	policy := func() string {
		pa := p.Graph("GET", "/policies/roleManagementPolicyAssignments?$filter="+url.QueryEscape("scopeId eq '"+group+"' and scopeType eq 'Group' and roleDefinitionId eq 'member'"), nil)
		var pas struct{ Value []struct{ PolicyID string } }
		json.Unmarshal(pa.Body, &pas)
		if len(pas.Value) != 1 {
			t.Fatalf("policy assignments: %d %s", pa.Status, pa.Body)
		}
		return pas.Value[0].PolicyID
	}()
	administer := func(tok string) (eligibility, patch, alerts int) {
		r := p.graphAs(tok, "POST", pimGroup+"eligibilityScheduleRequests", map[string]any{"accessId": "member", "groupId": group, "principalId": dave,
			"action": "adminAssign", "justification": "rota", "scheduleInfo": map[string]any{"expiration": map[string]any{"type": "afterDuration", "duration": "P7D"}}})
		eligibility = r.Status
		r = p.graphAs(tok, "PATCH", "/policies/roleManagementPolicies/"+policy+"/rules/Expiration_EndUser_Assignment", map[string]any{
			"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyExpirationRule", "id": "Expiration_EndUser_Assignment",
			"isExpirationRequired": true, "maximumDuration": "PT2H"})
		patch = r.Status
		return eligibility, patch, p.beta(tok, "GET", alertsBase+"alerts?"+alertScope, nil).Status
	}
	if e, pt, al := administer(carolTok(graphURL)); e != 403 || pt != 403 || al != 403 {
		t.Fatalf("a plain user administers PIM: eligibility %d, policy %d, alerts %d", e, pt, al)
	}
	assign := map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleAssignment", "roleDefinitionId": pra, "principalId": carol, "directoryScopeId": "/"}
	if r := p.graphAs(carolTok(graphURL), "POST", "/roleManagement/directory/roleAssignments", assign); r.Status != 403 {
		t.Fatalf("a user grants herself a role: %d %s", r.Status, r.Body)
	}
	for name, bad := range map[string]map[string]any{
		"unknown role":      {"roleDefinitionId": servertest.NewGUID(), "principalId": carol, "directoryScopeId": "/"},
		"unknown principal": {"roleDefinitionId": pra, "principalId": servertest.NewGUID(), "directoryScopeId": "/"},
		"a group":           {"roleDefinitionId": pra, "principalId": group, "directoryScopeId": "/"},
		"narrow scope":      {"roleDefinitionId": pra, "principalId": carol, "directoryScopeId": "/administrativeUnits/x"},
	} {
		if r := p.Graph("POST", "/roleManagement/directory/roleAssignments", bad); r.Status < 400 || r.Status >= 500 || r.ErrorCode() == "" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	r := p.Graph("POST", "/roleManagement/directory/roleAssignments", assign)
	if r.Status != 201 || jsonField(r.Body, "roleDefinitionId") != pra || jsonField(r.Body, "principalId") != carol || jsonField(r.Body, "directoryScopeId") != "/" {
		t.Fatalf("grant: %d %s", r.Status, r.Body)
	}
	assignment := jsonField(r.Body, "id")
	if r := p.Graph("POST", "/roleManagement/directory/roleAssignments", assign); r.Status != 409 {
		t.Errorf("a second grant: %d %s", r.Status, r.Body)
	}
	if l := p.Graph("GET", "/roleManagement/directory/roleAssignments?$filter="+url.QueryEscape("principalId eq '"+carol+"'"), nil); !strings.Contains(string(l.Body), assignment) {
		t.Errorf("list: %d %s", l.Status, l.Body)
	}
	if g := p.Graph("GET", "/roleManagement/directory/roleAssignments/"+assignment, nil); g.Status != 200 || jsonField(g.Body, "principalId") != carol {
		t.Errorf("get: %d %s", g.Status, g.Body)
	}
	if e, pt, al := administer(carolTok(graphURL)); e != 201 || pt != 204 || al != 200 {
		t.Fatalf("a Privileged Role Administrator: eligibility %d, policy %d, alerts %d", e, pt, al)
	}
	// Not a directory writer, and not one who grants roles.
	if r := p.graphAs(carolTok(graphURL), "POST", "/groups", map[string]string{"displayName": "x", "mailNickname": "x"}); r.Status != 403 {
		t.Errorf("a Privileged Role Administrator creates a group: %d", r.Status)
	}
	if r := p.Graph("DELETE", "/roleManagement/directory/roleAssignments/"+assignment, nil); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r := p.Graph("GET", "/roleManagement/directory/roleAssignments/"+assignment, nil); r.Status != 404 {
		t.Errorf("after delete: %d %s", r.Status, r.Body)
	}
	if _, _, al := administer(carolTok(graphURL)); al != 403 {
		t.Errorf("after the role was taken away, alerts: %d", al)
	}
}

// TestPIMGroupMFAActivation: under a policy that requires MFA, a password
// sign-in is refused (MfaRule); the user enrolls TOTP, signs in with a
// code (amr has mfa) and is accepted; the HSM answers 200; selfDeactivate
// ends membership at once (403 again) and posts Keyward.PIM.Deactivated.
func TestPIMGroupMFAActivation(t *testing.T) {
	p := startPIM(t)
	group := p.pimGroup(t, "hsm-crypto")
	p.Assign(group, rbac.CryptoUserID, "/")
	alice, aliceTok := p.user(t, "alice")
	p.eligible(t, p.AdminToken(graphURL), group, alice)
	pa := p.Graph("GET", "/policies/roleManagementPolicyAssignments?$filter="+url.QueryEscape("scopeId eq '"+group+"' and scopeType eq 'Group' and roleDefinitionId eq 'member'"), nil)
	var pas struct{ Value []struct{ PolicyID string } }
	json.Unmarshal(pa.Body, &pas)
	if len(pas.Value) != 1 {
		t.Fatalf("policy assignments: %d %s", pa.Status, pa.Body)
	}
	if r := p.Graph("PATCH", "/policies/roleManagementPolicies/"+pas.Value[0].PolicyID+"/rules/Enablement_EndUser_Assignment", map[string]any{
		"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyEnablementRule", "id": "Enablement_EndUser_Assignment",
		"enabledRules": []string{"MultiFactorAuthentication", "Justification"}}); r.Status != 204 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	pwd := aliceTok(graphURL)
	if r := p.activate(pwd, group, alice, "selfActivate"); r.Status != 400 || !strings.Contains(string(r.Body), "MfaRule") {
		t.Fatalf("a password sign-in activates: %d %s", r.Status, r.Body)
	}

	// Enroll and confirm TOTP (the clock is the server's).
	e := p.graphAs(pwd, "POST", "/me/authentication/softwareOathMethods", map[string]any{})
	secret, method := jsonField(e.Body, "secretKey"), jsonField(e.Body, "id")
	if e.Status != 201 || secret == "" {
		t.Fatalf("enroll: %d %s", e.Status, e.Body)
	}
	code := func() string {
		c, err := totp.GenerateCodeCustom(secret, p.clock.now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if r := p.graphAs(pwd, "POST", "/me/authentication/softwareOathMethods/"+method+"/confirm", map[string]string{"code": code()}); r.Status != 204 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	p.clock.set(p.clock.now().Add(31 * time.Second))
	signIn := func(resource string) string {
		form := url.Values{"grant_type": {"password"}, "username": {"alice@keyward.test"}, "password": {"Correct horse 1"},
			"scope": {resource + "/.default"}, "otp": {code()}}
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
			t.Fatalf("no MFA token: %d", resp.StatusCode)
		}
		return tok.AccessToken
	}
	mfa := signIn(graphURL)
	if r := p.activate(mfa, group, alice, "selfActivate"); r.Status != 201 || jsonField(r.Body, "status") != "Provisioned" {
		t.Fatalf("an MFA sign-in activates: %d %s", r.Status, r.Body)
	}
	hsm := aliceTok(server.ManagedHSMResource)
	if r := p.Do("GET", "/keys?api-version=7.4", hsm, nil); r.Status != 200 {
		t.Fatalf("an activated member on the HSM: %d %s", r.Status, r.Body)
	}
	// Deactivation ends it at once, on the same token.
	if r := p.activate(pwd, group, alice, "selfDeactivate"); r.Status != 201 || jsonField(r.Body, "status") != "Revoked" {
		t.Fatalf("deactivation: %d %s", r.Status, r.Body)
	}
	if r := p.Do("GET", "/keys?api-version=7.4", hsm, nil); r.Status != 403 {
		t.Fatalf("after deactivation on the HSM: %d, want 403", r.Status)
	}
	if isMember(t, p, group, alice) {
		t.Error("still a member after deactivation")
	}
	p.waitEvent(t, "Keyward.PIM.Deactivated")
}
