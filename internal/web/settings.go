package web

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PIM settings, for Privileged Role Administrators: per group (PIM for
// Groups) and per Azure role at a scope, the activation policy (maximum
// duration, justification, MFA, ticket, approval and approvers), who is
// eligible, and the PIM alerts with their incidents. What the API refuses
// the user (these reads are administrators') shows as refused.

// rule is a policy rule, in the Graph and ARM shapes (which share names).
type rule struct {
	ID              string   `json:"id"`
	MaximumDuration string   `json:"maximumDuration"`
	EnabledRules    []string `json:"enabledRules"`
	Setting         *struct {
		IsApprovalRequired bool `json:"isApprovalRequired"`
		ApprovalStages     []struct {
			PrimaryApprovers []struct {
				UserID  string `json:"userId"`
				GroupID string `json:"groupId"`
				ID      string `json:"id"`
			} `json:"primaryApprovers"`
		} `json:"approvalStages"`
	} `json:"setting"`
	Target struct {
		Caller string `json:"caller"`
		Level  string `json:"level"`
	} `json:"target"`
}

// policyView is a policy as the page shows it.
type policyView struct {
	PolicyID           string // a group's: the form's target
	Name, Scope        string
	MaxDuration        string
	Justification, MFA bool
	Ticket, Approval   bool
	Approvers          []string
	Eligible           []eligibleView
}

type eligibleView struct {
	Who   string
	Until time.Time
}

type alertView struct {
	Name, Severity string
	Active         bool
	Incidents      []string
}

type settingsData struct {
	// Admin: the user is a Global or Privileged Role Administrator, who
	// may change a group's policy (the API decides all the same).
	Admin         bool
	Groups, Roles []policyView
	Alerts        []alertView
	Problems      []string
}

func (c *Console) settings(w http.ResponseWriter, r *http.Request) {
	a := c.apiFor(r)
	var d settingsData
	problem := func(what string, err error) { d.Problems = append(d.Problems, describe(what, err)) }

	// Groups: those with eligible members.
	var elig graphList[schedule]
	if err := a.graph("GET", pimGroups+"eligibilitySchedules", nil, &elig); err != nil {
		problem("eligible group memberships", err)
	}
	byGroup := map[string][]schedule{}
	var ids []string
	for _, s := range elig.Value {
		if s.AccessID == "member" {
			byGroup[s.GroupID] = append(byGroup[s.GroupID], s)
			ids = append(ids, s.GroupID, s.PrincipalID)
		}
	}
	var roleElig graphList[armRole]
	sub := "/subscriptions/" + c.cfg.Subscription
	if err := a.arm("GET", sub+armAuthz+"roleEligibilitySchedules?"+pimVersion, nil, &roleElig); err != nil {
		problem("eligible roles", err)
	}
	for _, x := range roleElig.Value {
		ids = append(ids, x.Properties.PrincipalID)
	}
	names := a.names(ids)
	groups := make([]string, 0, len(byGroup))
	for g := range byGroup {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	for _, g := range groups {
		v := policyView{Name: names.of(g), Scope: "group membership"}
		if id, rules, err := a.groupPolicy(g); err != nil {
			problem("the policy of "+v.Name, err)
		} else {
			v.PolicyID = id
			v.apply(rules)
		}
		for _, s := range byGroup[g] {
			e := eligibleView{Who: names.of(s.PrincipalID)}
			if s.ScheduleInfo != nil {
				e.Until = parseTime(s.ScheduleInfo.Expiration.EndDateTime)
			}
			v.Eligible = append(v.Eligible, e)
		}
		d.Groups = append(d.Groups, v)
	}

	// Azure roles with eligible assignments, at their scopes.
	type roleAt struct{ role, scope string }
	byRole := map[roleAt][]armRole{}
	var keys []roleAt
	for _, x := range roleElig.Value {
		k := roleAt{x.Properties.RoleDefinitionID, x.Properties.Scope}
		if byRole[k] == nil {
			keys = append(keys, k)
		}
		byRole[k] = append(byRole[k], x)
	}
	for _, k := range keys {
		first := byRole[k][0].Properties
		v := policyView{Name: roleName(first.ExpandedProperties.RoleDefinition.DisplayName, k.role), Scope: k.scope}
		if rules, err := a.rolePolicy(k.scope, k.role); err != nil {
			problem("the policy of "+v.Name, err)
		} else {
			v.apply(rules)
		}
		for _, x := range byRole[k] {
			v.Eligible = append(v.Eligible, eligibleView{Who: names.of(x.Properties.PrincipalID), Until: parseTime(x.Properties.EndDateTime)})
		}
		d.Roles = append(d.Roles, v)
	}

	// Alerts, with their incidents.
	var alerts graphList[struct {
		ID       string `json:"id"`
		IsActive bool   `json:"isActive"`
		AlertDef struct {
			DisplayName   string `json:"displayName"`
			SeverityLevel string `json:"severityLevel"`
		} `json:"alertDefinition"`
		AlertIncidents []map[string]any `json:"alertIncidents"`
	}]
	filter := url.QueryEscape("scopeId eq '/' and scopeType eq 'DirectoryRole'")
	if err := a.graph("GET", "/beta/identityGovernance/roleManagementAlerts/alerts?$filter="+filter+"&$expand=alertIncidents,alertDefinition", nil, &alerts); err != nil {
		problem("alerts", err)
	}
	for _, al := range alerts.Value {
		v := alertView{Name: al.AlertDef.DisplayName, Severity: al.AlertDef.SeverityLevel, Active: al.IsActive}
		if v.Name == "" {
			v.Name = al.ID
		}
		for _, in := range al.AlertIncidents {
			v.Incidents = append(v.Incidents, incidentLine(in))
		}
		d.Alerts = append(d.Alerts, v)
	}
	var approvers []string
	for _, v := range append(slices.Clone(d.Groups), d.Roles...) {
		approvers = append(approvers, v.Approvers...)
	}
	who := a.names(approvers)
	for _, list := range [][]policyView{d.Groups, d.Roles} {
		for i := range list {
			for j, id := range list[i].Approvers {
				list[i].Approvers[j] = who.of(id)
			}
		}
	}
	d.Admin = a.pimAdmin()
	c.render(w, r, http.StatusOK, "settings", page{Title: "PIM settings", Nav: "settings", Data: d})
}

// apply reads the end-user assignment rules of a policy.
func (v *policyView) apply(rules []rule) {
	var approvers []string
	for _, r := range rules {
		switch {
		case strings.HasPrefix(r.ID, "Expiration_EndUser"):
			v.MaxDuration = r.MaximumDuration
		case strings.HasPrefix(r.ID, "Enablement_EndUser"):
			v.Justification = slices.Contains(r.EnabledRules, "Justification")
			v.MFA = slices.Contains(r.EnabledRules, "MultiFactorAuthentication")
			v.Ticket = slices.Contains(r.EnabledRules, "Ticketing")
		case strings.HasPrefix(r.ID, "Approval_EndUser") && r.Setting != nil:
			v.Approval = r.Setting.IsApprovalRequired
			for _, st := range r.Setting.ApprovalStages {
				for _, p := range st.PrimaryApprovers {
					approvers = append(approvers, p.UserID+p.GroupID+p.ID)
				}
			}
		}
	}
	v.Approvers = approvers // ids: settings names them all at once
}

// incidentLine says what an alert's incident is about, from the fields
// its kind has: who, which role, when, how often.
func incidentLine(in map[string]any) string {
	str := func(k string) string { return strings.TrimSpace(strings.ReplaceAll(stringOf(in[k]), "\n", " ")) }
	var parts []string
	who := str("assigneeDisplayName")
	if upn := str("assigneeUserPrincipalName"); upn != "" {
		who = strings.TrimSpace(who + " (" + upn + ")")
	}
	if who != "" {
		parts = append(parts, who)
	}
	if role := str("roleDisplayName"); role != "" {
		parts = append(parts, role)
	}
	for _, k := range []string{"assignmentCreatedDateTime", "creationDateTime"} {
		if t := parseTime(str(k)); !t.IsZero() {
			parts = append(parts, when(t))
			break
		}
	}
	if n := str("activationCount"); n != "" {
		parts = append(parts, n+" activations")
	}
	if len(parts) == 0 {
		return "an incident"
	}
	return strings.Join(parts, " — ")
}

func stringOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return ""
}

// Directory roles that administer PIM for Groups.
const (
	globalAdministrator         = "62e90394-69f5-4237-9190-012177145e10"
	privilegedRoleAdministrator = "e8611ab8-c189-46e8-94e1-60213ab1f814"
)

// pimAdmin tells whether the user holds a directory role that
// administers PIM for Groups (a read anyone may make).
func (a *api) pimAdmin() bool {
	var roles graphList[struct {
		RoleDefinitionID string `json:"roleDefinitionId"`
	}]
	filter := url.QueryEscape("principalId eq '" + sessionOf(a.r).User.ID + "'")
	if err := a.graph("GET", "/v1.0/roleManagement/directory/roleAssignments?$filter="+filter, nil, &roles); err != nil {
		return false
	}
	return slices.ContainsFunc(roles.Value, func(x struct {
		RoleDefinitionID string `json:"roleDefinitionId"`
	}) bool {
		return x.RoleDefinitionID == globalAdministrator || x.RoleDefinitionID == privilegedRoleAdministrator
	})
}

// patchRule is the form that changes a group's activation policy: the
// maximum duration, what activation needs, and the approvers (user
// names or group names).
func (c *Console) patchRule(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	policy := f.Get("policy")
	if policy == "" || strings.ContainsAny(policy, "/?#") {
		c.refused(w, r, "settings", "No such policy.")
		return
	}
	hours := f.Get("hours")
	if !slices.Contains([]string{"1", "2", "4", "8", "12", "24"}, hours) {
		c.refused(w, r, "settings", "Choose a maximum duration from the list.")
		return
	}
	a := c.apiFor(r)
	var users, groups []string
	for _, ref := range strings.Split(f.Get("approvers"), ",") {
		ref = strings.TrimSpace(ref)
		if ref == "" {
			continue
		}
		id, isGroup, err := a.principalByName(ref)
		if err != nil {
			c.refused(w, r, "settings", "No user or group is called "+ref+".")
			return
		}
		if isGroup {
			groups = append(groups, id)
		} else {
			users = append(users, id)
		}
	}
	approval := f.Get("approval") == "on"
	if approval && len(users)+len(groups) == 0 {
		c.refused(w, r, "settings", "Approval needs at least one approver.")
		return
	}
	enabled := []string{}
	for field, rule := range map[string]string{"justification": "Justification", "mfa": "MultiFactorAuthentication", "ticket": "Ticketing"} {
		if f.Get(field) == "on" {
			enabled = append(enabled, rule)
		}
	}
	slices.Sort(enabled)
	approvers := []map[string]any{}
	for _, u := range users {
		approvers = append(approvers, map[string]any{"@odata.type": "#microsoft.graph.singleUser", "userId": u})
	}
	for _, g := range groups {
		approvers = append(approvers, map[string]any{"@odata.type": "#microsoft.graph.groupMembers", "groupId": g})
	}
	stages := []map[string]any{}
	if approval {
		stages = append(stages, map[string]any{"approvalStageTimeOutInDays": 1, "isApproverJustificationRequired": true,
			"escalationTimeInMinutes": 0, "isEscalationEnabled": false, "primaryApprovers": approvers, "escalationApprovers": []any{}})
	}
	base := "/v1.0/policies/roleManagementPolicies/" + url.PathEscape(policy) + "/rules/"
	for _, rule := range []map[string]any{
		{"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyExpirationRule", "id": "Expiration_EndUser_Assignment",
			"isExpirationRequired": true, "maximumDuration": "PT" + hours + "H"},
		{"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyEnablementRule", "id": "Enablement_EndUser_Assignment",
			"enabledRules": enabled},
		{"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyApprovalRule", "id": "Approval_EndUser_Assignment",
			"setting": map[string]any{"isApprovalRequired": approval, "isApprovalRequiredForExtension": false, "isRequestorJustificationRequired": true,
				"approvalMode": map[bool]string{true: "SingleStage", false: "NoApproval"}[approval], "approvalStages": stages}},
	} {
		if err := a.graph("PATCH", base+rule["id"].(string), rule, nil); err != nil {
			c.apiRefused(w, r, "settings", "Policy not changed", err)
			return
		}
	}
	c.done(w, r, "settings", "policy")
}

// principalByName finds a user by name (UPN) or a group by display name.
func (a *api) principalByName(name string) (id string, isGroup bool, err error) {
	var u struct {
		ID string `json:"id"`
	}
	if strings.Contains(name, "@") {
		if err := a.graph("GET", "/v1.0/users/"+url.PathEscape(name), nil, &u); err == nil && u.ID != "" {
			return u.ID, false, nil
		}
	}
	var gs graphList[struct {
		ID string `json:"id"`
	}]
	filter := url.QueryEscape("displayName eq '" + strings.ReplaceAll(name, "'", "''") + "'")
	if err := a.graph("GET", "/v1.0/groups?$filter="+filter, nil, &gs); err != nil {
		return "", false, err
	}
	if len(gs.Value) != 1 {
		return "", false, fmt.Errorf("no single group is called %s", name)
	}
	return gs.Value[0].ID, true, nil
}

// groupPolicy returns the id and rules of group g's member policy.
func (a *api) groupPolicy(g string) (string, []rule, error) {
	var pols graphList[struct {
		ID    string `json:"id"`
		Rules []rule `json:"rules"`
	}]
	filter := "scopeId eq '" + g + "' and scopeType eq 'Group' and roleDefinitionId eq 'member'"
	if err := a.graph("GET", "/v1.0/policies/roleManagementPolicies?$expand=rules&$filter="+url.QueryEscape(filter), nil, &pols); err != nil {
		return "", nil, err
	}
	if len(pols.Value) == 0 {
		return "", nil, nil
	}
	return pols.Value[0].ID, pols.Value[0].Rules, nil
}

// rolePolicy returns the rules of the policy of role (a definition id) at
// scope.
func (a *api) rolePolicy(scope, role string) ([]rule, error) {
	filter := "roleDefinitionId eq '" + role[strings.LastIndex(role, "/")+1:] + "'"
	var pas graphList[struct {
		Properties struct {
			PolicyID string `json:"policyId"`
		} `json:"properties"`
	}]
	if err := a.arm("GET", armScope(scope)+armAuthz+"roleManagementPolicyAssignments?$filter="+url.QueryEscape(filter)+"&"+pimVersion, nil, &pas); err != nil {
		return nil, err
	}
	if len(pas.Value) == 0 {
		return nil, nil
	}
	var pol struct {
		Properties struct {
			Rules []rule `json:"rules"`
		} `json:"properties"`
	}
	if err := a.arm("GET", armScope(pas.Value[0].Properties.PolicyID)+"?"+pimVersion, nil, &pol); err != nil {
		return nil, err
	}
	return pol.Properties.Rules, nil
}
