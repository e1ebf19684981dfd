package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"

	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

const mhsmContributorID = "18500a29-7fe2-46b2-a342-b16a415e101d"

// passwordCredential signs a user in with the password grant.
type passwordCredential struct {
	env            *servertest.Env
	user, password string
}

func (c passwordCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	form := url.Values{"grant_type": {"password"}, "username": {c.user}, "password": {c.password}, "scope": {strings.Join(opts.Scopes, " ")}}
	req, _ := http.NewRequestWithContext(ctx, "POST", c.env.Boot.AuthorityHost+c.env.Boot.TenantID+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.env.HTTP.Do(req)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		return azcore.AccessToken{}, errors.New("password grant refused: " + resp.Status)
	}
	return azcore.AccessToken{Token: tok.AccessToken, ExpiresOn: time.Now().Add(time.Duration(tok.ExpiresIn) * time.Second)}, nil
}

// pimARM is a server with a settable clock, the armauthorization clients
// of the administrator and of one user.
type pimARM struct {
	*servertest.Env
	t          *testing.T
	clock      *settableClock
	sub, scope string // scope: the keyward resource group, as the SDK takes it
	userID     string
	user       azcore.TokenCredential
	opts       *arm.ClientOptions
}

func newPIMARM(t *testing.T) *pimARM { return newPIMARMWith(t, nil) }

// newPIMARMWith is newPIMARM with more configuration.
func newPIMARMWith(t *testing.T, configure func(*server.Config)) *pimARM {
	clock := &settableClock{t: time.Now()}
	env := servertest.StartWith(t, t.TempDir(), func(c *server.Config) {
		c.Clock = clock.now
		if configure != nil {
			configure(c)
		}
	})
	sub := subscriptionOf(t, env)
	r := env.Graph("POST", "/users", map[string]any{"displayName": "Pat", "userPrincipalName": "pat@contoso.test",
		"passwordProfile": map[string]string{"password": "Correct horse 1"}})
	if r.Status != 201 {
		t.Fatalf("creating the user: %d %s", r.Status, r.Body)
	}
	opts := &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: env.HTTP, Cloud: cloud.Configuration{
		ActiveDirectoryAuthorityHost: env.Boot.AuthorityHost,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{cloud.ResourceManager: {
			Endpoint: strings.TrimSuffix(env.Boot.ManagementURI, "/"), Audience: "https://management.azure.com/"}}}}}
	return &pimARM{Env: env, t: t, clock: clock, sub: sub, scope: "subscriptions/" + sub + "/resourceGroups/keyward",
		userID: jsonField(r.Body, "id"), user: passwordCredential{env, "pat@contoso.test", "Correct horse 1"}, opts: opts}
}

func (p *pimARM) roleID(guid string) string {
	return "/subscriptions/" + p.sub + "/providers/Microsoft.Authorization/roleDefinitions/" + guid
}

func (p *pimARM) eligibilityClient(cred azcore.TokenCredential) *armauthorization.RoleEligibilityScheduleRequestsClient {
	c, err := armauthorization.NewRoleEligibilityScheduleRequestsClient(cred, p.opts)
	must(p.t, err)
	return c
}

func (p *pimARM) activationClient(cred azcore.TokenCredential) *armauthorization.RoleAssignmentScheduleRequestsClient {
	c, err := armauthorization.NewRoleAssignmentScheduleRequestsClient(cred, p.opts)
	must(p.t, err)
	return c
}

// activate asks for the role for d as the user.
func (p *pimARM) activate(d, justification, linked string) (armauthorization.RoleAssignmentScheduleRequestsClientCreateResponse, error) {
	return p.activationClient(p.user).Create(ctx, p.scope, servertest.NewGUID(), armauthorization.RoleAssignmentScheduleRequest{
		Properties: &armauthorization.RoleAssignmentScheduleRequestProperties{PrincipalID: to.Ptr(p.userID), RoleDefinitionID: to.Ptr(p.roleID(mhsmContributorID)),
			RequestType: to.Ptr(armauthorization.RequestTypeSelfActivate), Justification: to.Ptr(justification), LinkedRoleEligibilityScheduleID: to.Ptr(linked),
			ScheduleInfo: &armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfo{StartDateTime: to.Ptr(p.clock.now()),
				Expiration: &armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration{
					Type: to.Ptr(armauthorization.TypeAfterDuration), Duration: to.Ptr(d)}}}}, nil)
}

// createHSM tries to create an HSM as the user and returns the status.
func (p *pimARM) createHSM(name string) int {
	tok := p.Token(p.user, "https://management.azure.com")
	r := p.Do("PUT", p.Boot.AuthorityHost+p.scope+"/providers/Microsoft.KeyVault/managedHSMs/"+name+"?api-version=2024-11-01", tok, hsmBody(p.userID))
	return r.Status
}

// activeInstances lists the user's active role instances with asTarget().
func (p *pimARM) activeInstances() []*armauthorization.RoleAssignmentScheduleInstance {
	c, err := armauthorization.NewRoleAssignmentScheduleInstancesClient(p.user, p.opts)
	must(p.t, err)
	var out []*armauthorization.RoleAssignmentScheduleInstance
	for pg := c.NewListForScopePager(p.scope, &armauthorization.RoleAssignmentScheduleInstancesClientListForScopeOptions{Filter: to.Ptr("asTarget()")}); pg.More(); {
		page, err := pg.NextPage(ctx)
		must(p.t, err)
		out = append(out, page.Value...)
	}
	return out
}

func policyFailure(t *testing.T, err error, rules string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 400 || re.ErrorCode != "RoleAssignmentRequestPolicyValidationFailed" || !strings.Contains(strings.ReplaceAll(err.Error(), `\"`, `"`), rules) {
		t.Fatalf("want 400 RoleAssignmentRequestPolicyValidationFailed %s, got %v", rules, err)
	}
}

// TestPIMAzureRoles is the acceptance of PIM for Azure roles, with the
// real armauthorization/v2 clients: Managed HSM contributor made eligible,
// found with asTarget(), refused before activation, the policy's rules
// enforced (MFA, justification, duration), activated (201, Provisioned),
// used, seen Activated with an end, deactivated (refused again at once),
// and a second activation that ends by itself.
func TestPIMAzureRoles(t *testing.T) {
	t.Parallel()
	p := newPIMARM(t)

	// The administrator makes the user eligible for 30 days.
	created, err := p.eligibilityClient(p.Cred).Create(ctx, p.scope, servertest.NewGUID(), armauthorization.RoleEligibilityScheduleRequest{
		Properties: &armauthorization.RoleEligibilityScheduleRequestProperties{PrincipalID: to.Ptr(p.userID), RoleDefinitionID: to.Ptr(p.roleID(mhsmContributorID)),
			RequestType: to.Ptr(armauthorization.RequestTypeAdminAssign), Justification: to.Ptr("on call"),
			ScheduleInfo: &armauthorization.RoleEligibilityScheduleRequestPropertiesScheduleInfo{StartDateTime: to.Ptr(p.clock.now()),
				Expiration: &armauthorization.RoleEligibilityScheduleRequestPropertiesScheduleInfoExpiration{
					Type: to.Ptr(armauthorization.TypeAfterDuration), Duration: to.Ptr("P30D")}}}}, nil)
	must(t, err)
	if *created.Properties.Status != armauthorization.StatusProvisioned || created.Properties.TargetRoleEligibilityScheduleID == nil {
		t.Fatalf("eligibility request: %+v", created.Properties)
	}

	// The user finds it with asTarget().
	ec, err := armauthorization.NewRoleEligibilityScheduleInstancesClient(p.user, p.opts)
	must(t, err)
	var eligible []*armauthorization.RoleEligibilityScheduleInstance
	for pg := ec.NewListForScopePager(p.scope, &armauthorization.RoleEligibilityScheduleInstancesClientListForScopeOptions{Filter: to.Ptr("asTarget()")}); pg.More(); {
		page, err := pg.NextPage(ctx)
		must(t, err)
		eligible = append(eligible, page.Value...)
	}
	if len(eligible) != 1 || !strings.HasSuffix(*eligible[0].Properties.RoleDefinitionID, mhsmContributorID) || *eligible[0].Properties.PrincipalID != p.userID {
		t.Fatalf("asTarget() eligibilities: %d %+v", len(eligible), eligible)
	}
	linked := *eligible[0].Properties.RoleEligibilityScheduleID

	// Not yet active: the user may not create an HSM.
	if st := p.createHSM("pim-early"); st != 403 {
		t.Fatalf("creating an HSM before activating: %d", st)
	}

	// The default policy wants MFA and a justification; a password
	// sign-in has no MFA.
	_, err = p.activate("PT1H", "", linked)
	policyFailure(t, err, `["JustificationRule","MfaRule"]`)

	// The administrator drops MFA: a PATCH with only the rule that changes.
	pa, err := armauthorization.NewRoleManagementPolicyAssignmentsClient(p.Cred, p.opts)
	must(t, err)
	var policyID string
	for pg := pa.NewListForScopePager(p.scope, nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		must(t, err)
		for _, x := range page.Value {
			if strings.HasSuffix(*x.Properties.RoleDefinitionID, mhsmContributorID) {
				policyID = *x.Properties.PolicyID
				if !strings.HasSuffix(*x.Name, "_"+mhsmContributorID) {
					t.Fatalf("policy assignment name %s", *x.Name)
				}
			}
		}
	}
	if policyID == "" {
		t.Fatal("no default policy for Managed HSM contributor")
	}
	pc, err := armauthorization.NewRoleManagementPoliciesClient(p.Cred, p.opts)
	must(t, err)
	policyName := policyID[strings.LastIndex(policyID, "/")+1:]
	updated, err := pc.Update(ctx, p.scope, policyName, armauthorization.RoleManagementPolicy{Properties: &armauthorization.RoleManagementPolicyProperties{
		Rules: []armauthorization.RoleManagementPolicyRuleClassification{&armauthorization.RoleManagementPolicyEnablementRule{
			ID: to.Ptr("Enablement_EndUser_Assignment"), RuleType: to.Ptr(armauthorization.RoleManagementPolicyRuleTypeRoleManagementPolicyEnablementRule),
			EnabledRules: []*armauthorization.EnablementRules{to.Ptr(armauthorization.EnablementRulesJustification)},
			Target:       &armauthorization.RoleManagementPolicyRuleTarget{Caller: to.Ptr("EndUser"), Level: to.Ptr("Assignment"), Operations: []*string{to.Ptr("All")}}}}}}, nil)
	must(t, err)
	if len(updated.Properties.Rules) != 17 {
		t.Fatalf("the policy has %d rules", len(updated.Properties.Rules))
	}
	got, err := pc.Get(ctx, p.scope, policyName, nil)
	must(t, err)
	for _, r := range got.Properties.Rules {
		switch x := r.(type) {
		case *armauthorization.RoleManagementPolicyEnablementRule:
			if *x.ID == "Enablement_EndUser_Assignment" && (len(x.EnabledRules) != 1 || *x.EnabledRules[0] != armauthorization.EnablementRulesJustification) {
				t.Fatalf("activation needs %v after the PATCH", x.EnabledRules)
			}
		case *armauthorization.RoleManagementPolicyExpirationRule:
			if *x.ID == "Expiration_EndUser_Assignment" && *x.MaximumDuration != "PT8H" {
				t.Fatalf("an unpatched rule changed: %s", *x.MaximumDuration)
			}
		}
	}

	// Still no justification; then too long; then right.
	_, err = p.activate("PT1H", "", linked)
	policyFailure(t, err, `["JustificationRule"]`)
	_, err = p.activate("PT9H", "incident 42", linked)
	policyFailure(t, err, `["ExpirationRule"]`)
	act, err := p.activate("PT1H", "incident 42", linked)
	must(t, err)
	if *act.Properties.Status != armauthorization.StatusProvisioned || act.Properties.TargetRoleAssignmentScheduleID == nil {
		t.Fatalf("activation: %+v", act.Properties)
	}
	if _, err := p.activate("PT1H", "again", linked); err == nil || !strings.Contains(err.Error(), "RoleAssignmentExists") {
		t.Fatalf("a second activation while active: %v", err)
	}

	// Active: the user creates an HSM, and sees an Activated instance with an end.
	if st := p.createHSM("pim-hsm"); st != 200 && st != 201 {
		t.Fatalf("creating an HSM while active: %d", st)
	}
	inst := p.activeInstances()
	if len(inst) != 1 || *inst[0].Properties.AssignmentType != armauthorization.AssignmentTypeActivated || inst[0].Properties.EndDateTime == nil ||
		inst[0].Properties.EndDateTime.Sub(p.clock.now()) > time.Hour+time.Second {
		t.Fatalf("active instances: %+v", inst)
	}

	// Deactivated: refused again at once.
	deact, err := p.activationClient(p.user).Create(ctx, p.scope, servertest.NewGUID(), armauthorization.RoleAssignmentScheduleRequest{
		Properties: &armauthorization.RoleAssignmentScheduleRequestProperties{PrincipalID: to.Ptr(p.userID), RoleDefinitionID: to.Ptr(p.roleID(mhsmContributorID)),
			RequestType: to.Ptr(armauthorization.RequestTypeSelfDeactivate)}}, nil)
	must(t, err)
	if *deact.Properties.Status != armauthorization.StatusRevoked {
		t.Fatalf("deactivation: %+v", deact.Properties)
	}
	if st := p.createHSM("pim-after"); st != 403 {
		t.Fatalf("creating an HSM after deactivating: %d", st)
	}
	if inst := p.activeInstances(); len(inst) != 0 {
		t.Fatalf("instances after deactivating: %d", len(inst))
	}

	// A second activation ends by itself, on the next request after its end.
	if _, err := p.activate("PT10M", "incident 43", linked); err != nil {
		t.Fatal(err)
	}
	if st := p.createHSM("pim-second"); st != 200 && st != 201 {
		t.Fatalf("creating an HSM in the second activation: %d", st)
	}
	p.clock.set(p.clock.now().Add(10*time.Minute + time.Second))
	if st := p.createHSM("pim-expired"); st != 403 {
		t.Fatalf("creating an HSM after the activation ended: %d", st)
	}
	if inst := p.activeInstances(); len(inst) != 0 {
		t.Fatalf("instances after the end: %d", len(inst))
	}
	// The role assignment list no longer shows it.
	r := p.Do("GET", p.Boot.AuthorityHost+p.scope+"/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter="+
		url.QueryEscape("principalId eq '"+p.userID+"'"), p.AdminToken(mgmtAudience), nil)
	if r.Status != 200 || strings.Contains(string(r.Body), mhsmContributorID) {
		t.Fatalf("role assignments after the end: %d %s", r.Status, r.Body)
	}
}

// TestPIMAzureRoleApproval: an activation whose policy asks for approval
// waits (PendingApproval) until the approver approves it at
// roleAssignmentApprovals/{id}/stages/{stageId}; the user may not approve
// it, nor anyone not listed.
func TestPIMAzureRoleApproval(t *testing.T) {
	t.Parallel()
	p := newPIMARM(t)
	admin := jsonField(p.Graph("GET", "/servicePrincipals/"+p.Boot.ClientID, nil).Body, "id")
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
	ok("PUT", base+"roleEligibilityScheduleRequests/"+servertest.NewGUID()+"?api-version=2020-10-01", adminTok, map[string]any{"properties": map[string]any{
		"principalId": p.userID, "roleDefinitionId": p.roleID(mhsmContributorID), "requestType": "AdminAssign",
		"scheduleInfo": map[string]any{"expiration": map[string]any{"type": "AfterDuration", "duration": "P7D"}}}}, 201)
	var assignments struct {
		Value []struct{ Properties struct{ PolicyID string } }
	}
	must(t, json.Unmarshal(ok("GET", base+"roleManagementPolicyAssignments?api-version=2020-10-01&$filter="+
		url.QueryEscape("roleDefinitionId eq '"+p.roleID(mhsmContributorID)+"'"), adminTok, nil, 200).Body, &assignments))
	if len(assignments.Value) != 1 {
		t.Fatalf("policy assignments for one role: %d", len(assignments.Value))
	}
	policyURL := p.Boot.AuthorityHost + strings.TrimPrefix(assignments.Value[0].Properties.PolicyID, "/") + "?api-version=2020-10-01"
	ok("PATCH", policyURL, adminTok, map[string]any{"properties": map[string]any{"rules": []map[string]any{
		{"id": "Enablement_EndUser_Assignment", "ruleType": "RoleManagementPolicyEnablementRule", "enabledRules": []string{}},
		{"id": "Approval_EndUser_Assignment", "ruleType": "RoleManagementPolicyApprovalRule", "setting": map[string]any{
			"isApprovalRequired": true, "isRequestorJustificationRequired": false, "approvalMode": "SingleStage",
			"approvalStages": []map[string]any{{"primaryApprovers": []map[string]any{{"id": admin, "userType": "User"}}}}}}}}}, 200)
	// A user may not change the policy.
	userTok := p.Token(p.user, mgmtAudience)
	ok("PATCH", policyURL, userTok, map[string]any{"properties": map[string]any{"rules": []map[string]any{}}}, 403)

	name := servertest.NewGUID()
	r := ok("PUT", base+"roleAssignmentScheduleRequests/"+name+"?api-version=2020-10-01", userTok, map[string]any{"properties": map[string]any{
		"principalId": p.userID, "roleDefinitionId": p.roleID(mhsmContributorID), "requestType": "SelfActivate",
		"scheduleInfo": map[string]any{"expiration": map[string]any{"type": "AfterDuration", "duration": "PT2H"}}}}, 201)
	if s := propField(r.Body, "status"); s != "PendingApproval" {
		t.Fatalf("status %s: %s", s, r.Body)
	}
	if st := p.createHSM("pim-pending"); st != 403 {
		t.Fatalf("creating an HSM while pending: %d", st)
	}
	stage := base + "roleAssignmentApprovals/" + name + "/stages/" + name + "?api-version=2021-01-01-preview"
	ok("PATCH", stage, userTok, map[string]any{"reviewResult": "Approve", "justification": "me"}, 403)
	ok("GET", base+"roleAssignmentApprovals?api-version=2021-01-01-preview&$filter=asApprover()", adminTok, nil, 200)
	r = ok("PATCH", stage, adminTok, map[string]any{"properties": map[string]any{"reviewResult": "Approve", "justification": "ok"}}, 200)
	if propField(r.Body, "reviewResult") != "Approve" {
		t.Fatalf("stage after approval: %s", r.Body)
	}
	ok("PATCH", stage, adminTok, map[string]any{"reviewResult": "Deny"}, 409)
	if s := propField(ok("GET", base+"roleAssignmentScheduleRequests/"+name+"?api-version=2020-10-01", userTok, nil, 200).Body, "status"); s != "Provisioned" {
		t.Fatalf("status after approval: %s", s)
	}
	if st := p.createHSM("pim-approved"); st != 200 && st != 201 {
		t.Fatalf("creating an HSM after approval: %d", st)
	}
}

// approvalRig is a PIM ARM server where the user is eligible for
// Managed HSM Contributor for 7 days and activating it needs the
// administrator's approval.
type approvalRig struct {
	p           *pimARM
	ok          func(method, u, tok string, body any, want int) *servertest.Response
	eligibility func(typ, duration string)
	activate    func(d string) string
	approve     func(name string, want int) *servertest.Response
	status      func(name string) string
	policyURL   string
}

func newApprovalRig(t *testing.T) approvalRig {
	p := newPIMARM(t)
	admin := jsonField(p.Graph("GET", "/servicePrincipals/"+p.Boot.ClientID, nil).Body, "id")
	base := p.Boot.AuthorityHost + p.scope + "/providers/Microsoft.Authorization/"
	ok := func(method, u, tok string, body any, want int) *servertest.Response {
		t.Helper()
		r := p.Do(method, u, tok, body)
		if r.Status != want {
			t.Fatalf("%s %s: %d %s", method, u, r.Status, r.Body)
		}
		return r
	}
	eligibility := func(typ, duration string) {
		t.Helper()
		props := map[string]any{"principalId": p.userID, "roleDefinitionId": p.roleID(mhsmContributorID), "requestType": typ}
		want := 201
		if duration != "" {
			props["scheduleInfo"] = map[string]any{"startDateTime": p.clock.now().UTC().Format(time.RFC3339),
				"expiration": map[string]any{"type": "AfterDuration", "duration": duration}}
		}
		ok("PUT", base+"roleEligibilityScheduleRequests/"+servertest.NewGUID()+"?api-version=2020-10-01", p.AdminToken(mgmtAudience), map[string]any{"properties": props}, want)
	}
	eligibility("AdminAssign", "P7D")
	var assignments struct {
		Value []struct{ Properties struct{ PolicyID string } }
	}
	must(t, json.Unmarshal(ok("GET", base+"roleManagementPolicyAssignments?api-version=2020-10-01&$filter="+
		url.QueryEscape("roleDefinitionId eq '"+p.roleID(mhsmContributorID)+"'"), p.AdminToken(mgmtAudience), nil, 200).Body, &assignments))
	policyURL := p.Boot.AuthorityHost + strings.TrimPrefix(assignments.Value[0].Properties.PolicyID, "/") + "?api-version=2020-10-01"
	ok("PATCH", policyURL, p.AdminToken(mgmtAudience), map[string]any{"properties": map[string]any{"rules": []map[string]any{
		{"id": "Enablement_EndUser_Assignment", "ruleType": "RoleManagementPolicyEnablementRule", "enabledRules": []string{}},
		{"id": "Approval_EndUser_Assignment", "ruleType": "RoleManagementPolicyApprovalRule", "setting": map[string]any{
			"isApprovalRequired": true, "isRequestorJustificationRequired": false, "approvalMode": "SingleStage",
			"approvalStages": []map[string]any{{"primaryApprovers": []map[string]any{{"id": admin, "userType": "User"}}}}}}}}}, 200)
	// activate asks for the role for d and returns the request's name.
	activate := func(d string) string {
		t.Helper()
		name := servertest.NewGUID()
		r := ok("PUT", base+"roleAssignmentScheduleRequests/"+name+"?api-version=2020-10-01", p.Token(p.user, mgmtAudience), map[string]any{"properties": map[string]any{
			"principalId": p.userID, "roleDefinitionId": p.roleID(mhsmContributorID), "requestType": "SelfActivate",
			"scheduleInfo": map[string]any{"expiration": map[string]any{"type": "AfterDuration", "duration": d}}}}, 201)
		if s := propField(r.Body, "status"); s != "PendingApproval" {
			t.Fatalf("status %s: %s", s, r.Body)
		}
		return name
	}
	approve := func(name string, want int) *servertest.Response {
		t.Helper()
		return ok("PATCH", base+"roleAssignmentApprovals/"+name+"/stages/"+name+"?api-version=2021-01-01-preview", p.AdminToken(mgmtAudience),
			map[string]any{"properties": map[string]any{"reviewResult": "Approve", "justification": "ok"}}, want)
	}
	status := func(name string) string {
		t.Helper()
		return propField(ok("GET", base+"roleAssignmentScheduleRequests/"+name+"?api-version=2020-10-01", p.Token(p.user, mgmtAudience), nil, 200).Body, "status")
	}

	return approvalRig{p: p, ok: ok, eligibility: eligibility, activate: activate, approve: approve, status: status, policyURL: policyURL}
}

// TestPIMAzureRoleApprovalEligibilityRemoved: an activation whose
// eligibility the administrator removed while it waited for approval ends
// Failed at the approval (400 RoleAssignmentRequestPolicyValidationFailed
// ["EligibilityRule"]) and grants nothing.
func TestPIMAzureRoleApprovalEligibilityRemoved(t *testing.T) {
	t.Parallel()
	g := newApprovalRig(t)
	p, eligibility, activate, approve, status := g.p, g.eligibility, g.activate, g.approve, g.status
	name := activate("PT1H")
	eligibility("AdminRemove", "")
	r := approve(name, 400)
	if r.ErrorCode() != "RoleAssignmentRequestPolicyValidationFailed" || !strings.Contains(strings.ReplaceAll(string(r.Body), `\"`, `"`), `["EligibilityRule"]`) {
		t.Fatalf("approval after the eligibility was removed: %s", r.Body)
	}
	if s := status(name); s != "Failed" {
		t.Fatalf("status after the refused approval: %s", s)
	}
	if st := p.createHSM("pim-removed"); st != 403 {
		t.Fatalf("creating an HSM after the approval of a removed eligibility: %d", st)
	}
	if inst := p.activeInstances(); len(inst) != 0 {
		t.Fatalf("active instances after the refused approval: %d", len(inst))
	}
	approve(name, 409) // it is over
}

// TestPIMAzureRoleApprovalTimesOut: an activation that waited more than
// 24 hours (the service's clock) reads TimedOut and cannot be approved.
func TestPIMAzureRoleApprovalTimesOut(t *testing.T) {
	t.Parallel()
	g := newApprovalRig(t)
	p, activate, approve, status := g.p, g.activate, g.approve, g.status
	name := activate("PT1H")
	p.clock.set(p.clock.now().Add(24*time.Hour + time.Second))
	if s := status(name); s != "TimedOut" {
		t.Fatalf("status after 24 hours: %s", s)
	}
	approve(name, 409)
	if s := status(name); s != "TimedOut" {
		t.Fatalf("status after the late approval: %s", s)
	}
	if st := p.createHSM("pim-timedout"); st != 403 {
		t.Fatalf("creating an HSM after a timed-out approval: %d", st)
	}
}

// TestPIMAzureRoleApprovalBounded: an approved activation ends no later
// than its eligibility, however late the approval, nor past the policy's
// maximum activation duration as it is at the decision.
func TestPIMAzureRoleApprovalBounded(t *testing.T) {
	t.Parallel()
	g := newApprovalRig(t)
	p, ok, eligibility, activate, approve, policyURL := g.p, g.ok, g.eligibility, g.activate, g.approve, g.policyURL
	// A late approval does not outlive the eligibility: eligible for two
	// hours, asking for one, approved after 90 minutes.
	eligibility("AdminRemove", "")
	eligibility("AdminAssign", "PT2H")
	eligEnd := p.clock.now().Add(2 * time.Hour)
	name := activate("PT1H")
	p.clock.set(p.clock.now().Add(90 * time.Minute))
	approve(name, 200)
	inst := p.activeInstances()
	if len(inst) != 1 || inst[0].Properties.EndDateTime == nil || inst[0].Properties.EndDateTime.After(eligEnd.Add(time.Second)) {
		t.Fatalf("active instances after a late approval (eligibility ends %s): %+v", eligEnd, inst)
	}
	p.clock.set(eligEnd.Add(time.Second))
	if st := p.createHSM("pim-past-eligibility"); st != 403 {
		t.Fatalf("creating an HSM after the eligibility ended: %d", st)
	}

	// The policy's maximum, lowered while the activation waits, bounds
	// the access granted.
	eligibility("AdminAssign", "P7D")
	name = activate("PT4H")
	ok("PATCH", policyURL, p.AdminToken(mgmtAudience), map[string]any{"properties": map[string]any{"rules": []map[string]any{
		{"id": "Expiration_EndUser_Assignment", "ruleType": "RoleManagementPolicyExpirationRule", "isExpirationRequired": true, "maximumDuration": "PT1H"}}}}, 200)
	approve(name, 200)
	inst = p.activeInstances()
	if len(inst) != 1 || inst[0].Properties.EndDateTime == nil || inst[0].Properties.EndDateTime.Sub(p.clock.now()) > time.Hour+time.Second {
		t.Fatalf("active instances after the policy's maximum was lowered: %+v", inst)
	}
}

// TestPIMAzureRoleBadInput: ARM's error envelope, and nothing changes.
func TestPIMAzureRoleBadInput(t *testing.T) {
	t.Parallel()
	p := newPIMARM(t)
	base := p.Boot.AuthorityHost + p.scope + "/providers/Microsoft.Authorization/"
	adminTok := p.AdminToken(mgmtAudience)
	userTok := p.Token(p.user, mgmtAudience)
	req := func(role, requestType string, expiration map[string]any, start string) map[string]any {
		si := map[string]any{"expiration": expiration}
		if start != "" {
			si["startDateTime"] = start
		}
		return map[string]any{"properties": map[string]any{"principalId": p.userID, "roleDefinitionId": role, "requestType": requestType,
			"justification": "why", "scheduleInfo": si}}
	}
	mhsm := p.roleID(mhsmContributorID)
	past := time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339)
	elig := base + "roleEligibilityScheduleRequests/"
	assign := base + "roleAssignmentScheduleRequests/"
	const v = "?api-version=2020-10-01"
	cases := map[string]struct {
		url, token string
		body       any
		status     int
		code       string
	}{
		"unknown role": {elig + servertest.NewGUID() + v, adminTok, req(p.roleID(servertest.NewGUID()), "AdminAssign",
			map[string]any{"type": "AfterDuration", "duration": "P1D"}, ""), 400, "RoleDefinitionDoesNotExist"},
		"malformed duration": {elig + servertest.NewGUID() + v, adminTok, req(mhsm, "AdminAssign",
			map[string]any{"type": "AfterDuration", "duration": "one day"}, ""), 400, "InvalidScheduleInfo"},
		"zero duration": {elig + servertest.NewGUID() + v, adminTok, req(mhsm, "AdminAssign",
			map[string]any{"type": "AfterDuration", "duration": "PT0S"}, ""), 400, "InvalidScheduleInfo"},
		"malformed start": {elig + servertest.NewGUID() + v, adminTok, req(mhsm, "AdminAssign",
			map[string]any{"type": "AfterDuration", "duration": "P1D"}, "yesterday"), 400, "InvalidScheduleInfo"},
		"schedule in the past": {elig + servertest.NewGUID() + v, adminTok, req(mhsm, "AdminAssign",
			map[string]any{"type": "AfterDateTime", "endDateTime": past}, ""), 400, "InvalidScheduleInfo"},
		"ends before it starts": {elig + servertest.NewGUID() + v, adminTok, req(mhsm, "AdminAssign",
			map[string]any{"type": "AfterDateTime", "endDateTime": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
			time.Now().Add(2*time.Hour).UTC().Format(time.RFC3339)), 400, "InvalidScheduleInfo"},
		"unknown expiration type": {elig + servertest.NewGUID() + v, adminTok, req(mhsm, "AdminAssign",
			map[string]any{"type": "Sometime"}, ""), 400, "InvalidScheduleInfo"},
		"unknown request type": {elig + servertest.NewGUID() + v, adminTok, req(mhsm, "AdminPlease",
			map[string]any{"type": "AfterDuration", "duration": "P1D"}, ""), 400, "BadParameter"},
		"name not a GUID": {elig + "not-a-guid" + v, adminTok, req(mhsm, "AdminAssign",
			map[string]any{"type": "AfterDuration", "duration": "P1D"}, ""), 400, "BadParameter"},
		"not JSON": {elig + servertest.NewGUID() + v, adminTok, "{", 400, "BadParameter"},
		"eligibility too long": {elig + servertest.NewGUID() + v, adminTok, req(mhsm, "AdminAssign",
			map[string]any{"type": "AfterDuration", "duration": "P400D"}, ""), 400, "RoleAssignmentRequestPolicyValidationFailed"},
		"permanent eligibility": {elig + servertest.NewGUID() + v, adminTok, req(mhsm, "AdminAssign",
			map[string]any{"type": "NoExpiration"}, ""), 400, "RoleAssignmentRequestPolicyValidationFailed"},
		"user makes himself eligible": {elig + servertest.NewGUID() + v, userTok, req(mhsm, "AdminAssign",
			map[string]any{"type": "AfterDuration", "duration": "P1D"}, ""), 403, "AuthorizationFailed"},
		"activation without eligibility": {assign + servertest.NewGUID() + v, userTok, req(mhsm, "SelfActivate",
			map[string]any{"type": "AfterDuration", "duration": "PT1H"}, ""), 400, "RoleAssignmentRequestPolicyValidationFailed"},
		"activation for someone else": {assign + servertest.NewGUID() + v, adminTok, req(mhsm, "SelfActivate",
			map[string]any{"type": "AfterDuration", "duration": "PT1H"}, ""), 403, "AuthorizationFailed"},
		"deactivating nothing": {assign + servertest.NewGUID() + v, userTok, req(mhsm, "SelfDeactivate", nil, ""), 400, "RoleAssignmentDoesNotExist"},
		"missing scope": {p.Boot.AuthorityHost + "subscriptions/" + p.sub + "/resourceGroups/nowhere/providers/Microsoft.Authorization/roleEligibilityScheduleRequests/" +
			servertest.NewGUID() + v, adminTok, req(mhsm, "AdminAssign", map[string]any{"type": "AfterDuration", "duration": "P1D"}, ""), 400, "InvalidScope"},
		"bad filter": {base + "roleEligibilityScheduleInstances" + v + "&$filter=" + url.QueryEscape("status eq 'x' or 1 eq 1"), userTok, nil, 400, "InvalidFilterInQueryString"},
		"unknown policy rule": {"", adminTok, map[string]any{"properties": map[string]any{"rules": []map[string]any{{"id": "Nope_Rule", "ruleType": "RoleManagementPolicyEnablementRule"}}}},
			400, "InvalidRoleManagementPolicyRule"},
		"malformed maximum duration": {"", adminTok, map[string]any{"properties": map[string]any{"rules": []map[string]any{{"id": "Expiration_EndUser_Assignment",
			"ruleType": "RoleManagementPolicyExpirationRule", "maximumDuration": "8 hours"}}}}, 400, "InvalidRoleManagementPolicyRule"},
	}
	var assignments struct {
		Value []struct{ Properties struct{ PolicyID string } }
	}
	must(t, json.Unmarshal(p.Do("GET", base+"roleManagementPolicyAssignments?api-version=2020-10-01&$filter="+
		url.QueryEscape("roleDefinitionId eq '"+mhsm+"'"), adminTok, nil).Body, &assignments))
	policyURL := p.Boot.AuthorityHost + strings.TrimPrefix(assignments.Value[0].Properties.PolicyID, "/") + v
	state := func() string {
		var b strings.Builder
		for _, u := range []string{elig[:len(elig)-1] + v, assign[:len(assign)-1] + v, base + "roleEligibilitySchedules" + v,
			base + "roleAssignmentSchedules" + v, base + "roleAssignments?api-version=2022-04-01", policyURL} {
			b.Write(p.Do("GET", u, adminTok, nil).Body)
		}
		return b.String()
	}
	before := state()
	for name, c := range cases {
		method, u := "PUT", c.url
		if u == "" {
			method, u = "PATCH", policyURL
		} else if c.body == nil {
			method = "GET"
		}
		r := p.Do(method, u, c.token, c.body)
		if r.Status != c.status || r.ErrorCode() != c.code {
			t.Errorf("%s: %d %s, want %d %s: %s", name, r.Status, r.ErrorCode(), c.status, c.code, r.Body)
		}
	}
	if after := state(); after != before {
		t.Fatalf("refused requests changed PIM:\n%s\n%s", before, after)
	}
}

// propField is properties.{field} of an ARM resource.
func propField(b []byte, field string) string {
	var m struct{ Properties map[string]any }
	json.Unmarshal(b, &m)
	s, _ := m.Properties[field].(string)
	return s
}
