package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

// keyward pim: Privileged Identity Management for groups (Microsoft
// Graph's PIM for Groups) and for control-plane roles (ARM's role
// eligibility and assignment schedule requests). az has no PIM commands;
// these keep az's style: flags named as az names them elsewhere, JSON out,
// -o table readable.

const (
	pimGroupBase  = "/identityGovernance/privilegedAccess/group"
	pimARMVersion = "2020-10-01"
	// approvalsVersion is ARM's api-version for role assignment approvals.
	approvalsVersion = "2021-01-01-preview"
)

func newPIMCmd(e *env) *cobra.Command {
	pim := &cobra.Command{Use: "pim", Short: "Just-in-time privileged access: eligibility, activation, approval, alerts"}
	group := &cobra.Command{Use: "group", Short: "PIM for groups: eligible membership, activated for a while"}
	groupPolicy := &cobra.Command{Use: "policy", Short: "The activation policy of a group's membership"}
	groupPolicy.AddCommand(pimGroupPolicyShow(e), pimGroupPolicyUpdate(e))
	groupEligible := &cobra.Command{Use: "eligible", Short: "Who may activate a group's membership"}
	groupEligible.AddCommand(pimGroupEligibleCreate(e), pimGroupEligibleList(e), pimGroupEligibleDelete(e))
	group.AddCommand(groupPolicy, groupEligible, pimGroupActivate(e, "activate"), pimGroupActivate(e, "deactivate"))

	role := &cobra.Command{Use: "role", Short: "PIM for control-plane roles: eligible assignments, activated for a while"}
	rolePolicy := &cobra.Command{Use: "policy", Short: "The activation policy of a role at a scope"}
	rolePolicy.AddCommand(pimRolePolicyShow(e), pimRolePolicyUpdate(e))
	roleEligible := &cobra.Command{Use: "eligible", Short: "Who may activate a role at a scope"}
	roleEligible.AddCommand(pimRoleEligibleCreate(e), pimRoleEligibleList(e), pimRoleEligibleDelete(e))
	role.AddCommand(rolePolicy, roleEligible, pimRoleActivate(e, "activate"), pimRoleActivate(e, "deactivate"))

	request := &cobra.Command{Use: "request", Short: "Activation requests: yours, and those waiting for your approval"}
	request.AddCommand(pimRequestList(e), pimRequestDecide(e, "approve"), pimRequestDecide(e, "deny"))
	alert := &cobra.Command{Use: "alert", Short: "PIM alerts"}
	alertConfig := &cobra.Command{Use: "config", Short: "How an alert is raised"}
	alertConfig.AddCommand(pimAlertConfigUpdate(e))
	alert.AddCommand(pimAlertList(e), alertConfig)
	pim.AddCommand(group, role, request, alert)
	return pim
}

// armPIM sends an ARM request with PIM's api-version.
func (c *client) armPIM(ctx context.Context, method, path, version string, body, out any) error {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return c.call(ctx, armScope, method, strings.TrimSuffix(c.prof.managementURL(), "/")+path+sep+"api-version="+version, body, out)
}

// me is the signed-in principal's object id, read from its own token (the
// oid claim), as az reads the signed-in account.
func (c *client) me(ctx context.Context) (string, error) {
	tok, err := c.token(ctx, graphScope)
	if err != nil {
		return "", err
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("the access token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("reading the access token: %w", err)
	}
	var claims struct {
		OID string `json:"oid"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.OID == "" {
		return "", fmt.Errorf("the access token names no object id")
	}
	return claims.OID, nil
}

// groupID resolves a group by display name or id.
func (c *client) groupID(ctx context.Context, ref string) (string, error) {
	g, err := c.resolve(ctx, "groups", ref)
	if err != nil {
		return "", err
	}
	id, _ := g["id"].(string)
	if id == "" {
		return "", fmt.Errorf("the directory returned a group without an id for '%s'", ref)
	}
	return id, nil
}

// principalID resolves a user (UPN or id), group or service principal.
func (c *client) principalID(ctx context.Context, ref string) (string, error) {
	if !strings.Contains(ref, "@") && !guidPattern.MatchString(ref) {
		if id, err := c.groupID(ctx, ref); err == nil {
			return id, nil
		}
	}
	return c.resolveAssignee(ctx, ref)
}

// schedule is the scheduleInfo of a request starting now, for duration
// (an ISO 8601 duration) or without an end.
func schedule(duration string, graphCase bool) map[string]any {
	typ := map[bool]string{true: "afterDuration", false: "AfterDuration"}[graphCase]
	exp := map[string]any{"type": typ, "duration": duration}
	if duration == "" {
		exp = map[string]any{"type": map[bool]string{true: "noExpiration", false: "NoExpiration"}[graphCase]}
	}
	return map[string]any{"startDateTime": time.Now().UTC().Format(time.RFC3339), "expiration": exp}
}

// groupPolicyID finds the policy of a group's membership.
func (c *client) groupPolicyID(ctx context.Context, group string) (string, error) {
	filter := fmt.Sprintf("scopeId eq '%s' and scopeType eq 'Group' and roleDefinitionId eq 'member'", group)
	var list struct {
		Value []struct {
			PolicyID string `json:"policyId"`
		} `json:"value"`
	}
	if err := c.graph(ctx, http.MethodGet, "/policies/roleManagementPolicyAssignments?$filter="+url.QueryEscape(filter), nil, &list); err != nil {
		return "", err
	}
	if len(list.Value) == 0 || list.Value[0].PolicyID == "" {
		return "", fmt.Errorf("the group %s has no membership policy", group)
	}
	return list.Value[0].PolicyID, nil
}

func (c *client) groupPolicy(ctx context.Context, policyID string) (map[string]any, error) {
	var p map[string]any
	err := c.graph(ctx, http.MethodGet, "/policies/roleManagementPolicies/"+url.PathEscape(policyID)+"?$expand=rules", nil, &p)
	return p, err
}

func pimGroupPolicyShow(e *env) *cobra.Command {
	var group string
	return command(e, "show", "Show the activation policy of a group's membership",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&group, "group", "g", "", "group display name or object id")
			required(cmd, "group")
		},
		func(ctx context.Context, c *client) (any, error) {
			g, err := c.groupID(ctx, group)
			if err != nil {
				return nil, err
			}
			id, err := c.groupPolicyID(ctx, g)
			if err != nil {
				return nil, err
			}
			return c.groupPolicy(ctx, id)
		})
}

// policyFlags are the activation rules the policy commands change.
type policyFlags struct {
	maxDuration                          string
	justification, mfa, approval, ticket string
	approvers                            []string
}

func (f *policyFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.maxDuration, "max-duration", "", "longest activation, ISO 8601 (e.g. PT4H)")
	fl.StringVar(&f.justification, "require-justification", "", "true or false")
	fl.StringVar(&f.mfa, "require-mfa", "", "true or false: activation needs a sign-in with a second factor")
	fl.StringVar(&f.ticket, "require-ticket", "", "true or false")
	fl.StringVar(&f.approval, "require-approval", "", "true or false")
	fl.StringSliceVar(&f.approvers, "approvers", nil, "who approves: users (UPN or id) or groups (name or id)")
}

func parseBool(flag, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "yes":
		return true, nil
	case "false", "no":
		return false, nil
	}
	return false, usagef("--%s takes true or false, not %q", flag, v)
}

// ruleByID returns a policy's rule.
func ruleByID(policy map[string]any, id string) map[string]any {
	for _, key := range []string{"rules", "properties"} {
		var rules []any
		switch v := policy[key].(type) {
		case []any:
			rules = v
		case map[string]any:
			rules, _ = v["rules"].([]any)
		}
		for _, r := range rules {
			if m, ok := r.(map[string]any); ok && m["id"] == id {
				return m
			}
		}
	}
	return nil
}

// enabledRules returns the Enablement_EndUser_Assignment list after the
// flags' changes.
func (f *policyFlags) enabledRules(current map[string]any) ([]string, bool, error) {
	var rules []string
	if current != nil {
		if list, ok := current["enabledRules"].([]any); ok {
			for _, r := range list {
				if s, ok := r.(string); ok {
					rules = append(rules, s)
				}
			}
		}
	}
	changed := false
	for flag, name := range map[string]string{"require-justification": "Justification", "require-mfa": "MultiFactorAuthentication", "require-ticket": "Ticketing"} {
		v := map[string]string{"require-justification": f.justification, "require-mfa": f.mfa, "require-ticket": f.ticket}[flag]
		if v == "" {
			continue
		}
		on, err := parseBool(flag, v)
		if err != nil {
			return nil, false, err
		}
		changed = true
		rules = slices.DeleteFunc(rules, func(s string) bool { return s == name })
		if on {
			rules = append(rules, name)
		}
	}
	slices.Sort(rules)
	if rules == nil {
		rules = []string{}
	}
	return rules, changed, nil
}

// approvalSetting is the setting of the Approval_EndUser_Assignment rule
// the flags ask for: one stage with the --approvers, or none. Graph and ARM
// spell an approver differently (Graph: subjectSet types; ARM: userType).
func (f *policyFlags) approvalSetting(ctx context.Context, c *client, graph bool) (map[string]any, error) {
	on := true
	if f.approval != "" {
		var err error
		if on, err = parseBool("require-approval", f.approval); err != nil {
			return nil, err
		}
	}
	users, groups, err := c.resolveApprovers(ctx, f.approvers)
	if err != nil {
		return nil, err
	}
	approvers := []map[string]any{}
	for _, u := range users {
		a := map[string]any{"userType": "User", "isBackup": false, "id": u}
		if graph {
			a = map[string]any{"@odata.type": "#microsoft.graph.singleUser", "userId": u}
		}
		approvers = append(approvers, a)
	}
	for _, g := range groups {
		a := map[string]any{"userType": "Group", "isBackup": false, "id": g}
		if graph {
			a = map[string]any{"@odata.type": "#microsoft.graph.groupMembers", "groupId": g}
		}
		approvers = append(approvers, a)
	}
	if on && len(approvers) == 0 {
		return nil, usagef("--require-approval true needs --approvers")
	}
	stages := []map[string]any{}
	if on {
		stage := map[string]any{"approvalStageTimeOutInDays": 1, "isApproverJustificationRequired": true,
			"escalationTimeInMinutes": 0, "isEscalationEnabled": false, "primaryApprovers": approvers}
		if graph {
			stage["escalationApprovers"] = []any{}
		}
		stages = append(stages, stage)
	}
	return map[string]any{"isApprovalRequired": on, "isApprovalRequiredForExtension": false, "isRequestorJustificationRequired": true,
		"approvalMode": map[bool]string{true: "SingleStage", false: "NoApproval"}[on], "approvalStages": stages}, nil
}

// resolveApprovers turns --approvers into user and group ids.
func (c *client) resolveApprovers(ctx context.Context, refs []string) (users, groups []string, err error) {
	for _, ref := range refs {
		if strings.Contains(ref, "@") {
			id, err := c.resolveAssignee(ctx, ref)
			if err != nil {
				return nil, nil, err
			}
			users = append(users, id)
			continue
		}
		if id, err := c.groupID(ctx, ref); err == nil {
			groups = append(groups, id)
			continue
		}
		id, err := c.resolveAssignee(ctx, ref)
		if err != nil {
			return nil, nil, err
		}
		users = append(users, id)
	}
	return users, groups, nil
}

func pimGroupPolicyUpdate(e *env) *cobra.Command {
	var group string
	var f policyFlags
	return command(e, "update", "Change the activation policy of a group's membership",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&group, "group", "g", "", "group display name or object id")
			f.register(cmd)
			required(cmd, "group")
		},
		func(ctx context.Context, c *client) (any, error) {
			g, err := c.groupID(ctx, group)
			if err != nil {
				return nil, err
			}
			id, err := c.groupPolicyID(ctx, g)
			if err != nil {
				return nil, err
			}
			policy, err := c.groupPolicy(ctx, id)
			if err != nil {
				return nil, err
			}
			target := map[string]any{"caller": "EndUser", "operations": []string{"all"}, "level": "Assignment"}
			patch := func(rule map[string]any) error {
				return c.graph(ctx, http.MethodPatch, "/policies/roleManagementPolicies/"+url.PathEscape(id)+"/rules/"+url.PathEscape(rule["id"].(string)), rule, nil)
			}
			if f.maxDuration != "" {
				if err := patch(map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyExpirationRule",
					"id": "Expiration_EndUser_Assignment", "isExpirationRequired": true, "maximumDuration": f.maxDuration, "target": target}); err != nil {
					return nil, err
				}
			}
			rules, changed, err := f.enabledRules(ruleByID(policy, "Enablement_EndUser_Assignment"))
			if err != nil {
				return nil, err
			}
			if changed {
				if err := patch(map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyEnablementRule",
					"id": "Enablement_EndUser_Assignment", "enabledRules": rules, "target": target}); err != nil {
					return nil, err
				}
			}
			if f.approval != "" || f.approvers != nil {
				setting, err := f.approvalSetting(ctx, c, true)
				if err != nil {
					return nil, err
				}
				if err := patch(map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyApprovalRule",
					"id": "Approval_EndUser_Assignment", "target": target, "setting": setting}); err != nil {
					return nil, err
				}
			}
			return c.groupPolicy(ctx, id)
		})
}

func pimGroupEligibleCreate(e *env) *cobra.Command {
	var group, member, duration string
	return command(e, "create", "Make someone eligible for a group's membership",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&group, "group", "g", "", "group display name or object id")
			cmd.Flags().StringVar(&member, "member", "", "user (UPN or id), group or service principal")
			cmd.Flags().StringVar(&duration, "duration", "", "how long the eligibility lasts, ISO 8601 (e.g. P30D; default: no end)")
			required(cmd, "group", "member")
		},
		func(ctx context.Context, c *client) (any, error) {
			g, err := c.groupID(ctx, group)
			if err != nil {
				return nil, err
			}
			m, err := c.principalID(ctx, member)
			if err != nil {
				return nil, err
			}
			var out map[string]any
			err = c.graph(ctx, http.MethodPost, pimGroupBase+"/eligibilityScheduleRequests", map[string]any{
				"accessId": "member", "principalId": m, "groupId": g, "action": "adminAssign",
				"justification": "keyward pim group eligible create", "scheduleInfo": schedule(duration, true)}, &out)
			return out, err
		})
}

func pimGroupEligibleList(e *env) *cobra.Command {
	var group string
	return command(e, "list", "List who is eligible for a group's membership",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&group, "group", "g", "", "group display name or object id")
			required(cmd, "group")
		},
		func(ctx context.Context, c *client) (any, error) {
			g, err := c.groupID(ctx, group)
			if err != nil {
				return nil, err
			}
			return c.graphList(ctx, pimGroupBase+"/eligibilitySchedules?$filter="+url.QueryEscape("groupId eq '"+g+"'"))
		})
}

func pimGroupEligibleDelete(e *env) *cobra.Command {
	var group, member string
	return command(e, "delete", "End someone's eligibility for a group's membership",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&group, "group", "g", "", "group display name or object id")
			cmd.Flags().StringVar(&member, "member", "", "user (UPN or id), group or service principal")
			required(cmd, "group", "member")
		},
		func(ctx context.Context, c *client) (any, error) {
			g, err := c.groupID(ctx, group)
			if err != nil {
				return nil, err
			}
			m, err := c.principalID(ctx, member)
			if err != nil {
				return nil, err
			}
			var out map[string]any
			err = c.graph(ctx, http.MethodPost, pimGroupBase+"/eligibilityScheduleRequests", map[string]any{
				"accessId": "member", "principalId": m, "groupId": g, "action": "adminRemove"}, &out)
			return out, err
		})
}

// pimGroupActivate is activate (selfActivate) or deactivate (selfDeactivate).
func pimGroupActivate(e *env, verb string) *cobra.Command {
	var group, duration, justification, ticket string
	short := map[string]string{"activate": "Activate your eligible membership of a group, for a while",
		"deactivate": "End your activated membership of a group now"}[verb]
	return command(e, verb, short,
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&group, "group", "g", "", "group display name or object id")
			if verb == "activate" {
				cmd.Flags().StringVar(&duration, "duration", "PT1H", "how long, ISO 8601 (e.g. PT4H)")
				cmd.Flags().StringVar(&justification, "justification", "", "why you need it")
				cmd.Flags().StringVar(&ticket, "ticket", "", "ticket number")
			}
			required(cmd, "group")
		},
		func(ctx context.Context, c *client) (any, error) {
			g, err := c.groupID(ctx, group)
			if err != nil {
				return nil, err
			}
			me, err := c.me(ctx)
			if err != nil {
				return nil, err
			}
			body := map[string]any{"accessId": "member", "principalId": me, "groupId": g, "action": "selfDeactivate"}
			if verb == "activate" {
				body["action"], body["justification"], body["scheduleInfo"] = "selfActivate", justification, schedule(duration, true)
				if ticket != "" {
					body["ticketInfo"] = map[string]string{"ticketNumber": ticket, "ticketSystem": "keyward"}
				}
			}
			var out map[string]any
			err = c.graph(ctx, http.MethodPost, pimGroupBase+"/assignmentScheduleRequests", body, &out)
			return out, err
		})
}

// roleTarget resolves --role and --scope to a role definition id and scope.
func (c *client) roleTarget(ctx context.Context, role, scope string) (roleID, sc string, err error) {
	if sc, err = c.scope(scope, ""); err != nil {
		return "", "", err
	}
	roleID, err = c.armRole(ctx, role)
	return roleID, sc, err
}

func (c *client) rolePolicy(ctx context.Context, roleID, scope string) (map[string]any, error) {
	filter := "roleDefinitionId eq '" + roleID + "'"
	var list struct {
		Value []map[string]any `json:"value"`
	}
	if err := c.armPIM(ctx, http.MethodGet, scope+"/providers/Microsoft.Authorization/roleManagementPolicyAssignments?$filter="+url.QueryEscape(filter), pimARMVersion, nil, &list); err != nil {
		return nil, err
	}
	for _, a := range list.Value {
		props, _ := a["properties"].(map[string]any)
		if rid, _ := props["roleDefinitionId"].(string); strings.EqualFold(rid, roleID) {
			policyID, _ := props["policyId"].(string)
			var p map[string]any
			err := c.armPIM(ctx, http.MethodGet, policyID, pimARMVersion, nil, &p)
			return p, err
		}
	}
	return nil, fmt.Errorf("no policy governs %s at %s", roleID, scope)
}

func pimRolePolicyShow(e *env) *cobra.Command {
	var role, scope string
	return command(e, "show", "Show the activation policy of a role at a scope",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&role, "role", "", "role name or id")
			cmd.Flags().StringVar(&scope, "scope", "", "scope (default: the subscription)")
			required(cmd, "role")
		},
		func(ctx context.Context, c *client) (any, error) {
			roleID, sc, err := c.roleTarget(ctx, role, scope)
			if err != nil {
				return nil, err
			}
			return c.rolePolicy(ctx, roleID, sc)
		})
}

func pimRolePolicyUpdate(e *env) *cobra.Command {
	var role, scope string
	var f policyFlags
	return command(e, "update", "Change the activation policy of a role at a scope",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&role, "role", "", "role name or id")
			cmd.Flags().StringVar(&scope, "scope", "", "scope (default: the subscription)")
			f.register(cmd)
			required(cmd, "role")
		},
		func(ctx context.Context, c *client) (any, error) {
			roleID, sc, err := c.roleTarget(ctx, role, scope)
			if err != nil {
				return nil, err
			}
			policy, err := c.rolePolicy(ctx, roleID, sc)
			if err != nil {
				return nil, err
			}
			target := map[string]any{"caller": "EndUser", "operations": []string{"All"}, "level": "Assignment"}
			var rules []map[string]any
			if f.maxDuration != "" {
				rules = append(rules, map[string]any{"id": "Expiration_EndUser_Assignment", "ruleType": "RoleManagementPolicyExpirationRule",
					"isExpirationRequired": true, "maximumDuration": f.maxDuration, "target": target})
			}
			enabled, changed, err := f.enabledRules(ruleByID(policy, "Enablement_EndUser_Assignment"))
			if err != nil {
				return nil, err
			}
			if changed {
				rules = append(rules, map[string]any{"id": "Enablement_EndUser_Assignment", "ruleType": "RoleManagementPolicyEnablementRule",
					"enabledRules": enabled, "target": target})
			}
			if f.approval != "" || f.approvers != nil {
				setting, err := f.approvalSetting(ctx, c, false)
				if err != nil {
					return nil, err
				}
				rules = append(rules, map[string]any{"id": "Approval_EndUser_Assignment", "ruleType": "RoleManagementPolicyApprovalRule",
					"target": target, "setting": setting})
			}
			id, _ := policy["id"].(string)
			var out map[string]any
			err = c.armPIM(ctx, http.MethodPatch, id, pimARMVersion, map[string]any{"properties": map[string]any{"rules": rules}}, &out)
			return out, err
		})
}

// roleRequest sends a role eligibility or assignment schedule request.
func (c *client) roleRequest(ctx context.Context, kind, scope string, props map[string]any) (map[string]any, error) {
	var out map[string]any
	err := c.armPIM(ctx, http.MethodPut, scope+"/providers/Microsoft.Authorization/"+kind+"/"+uuid.NewString(), pimARMVersion,
		map[string]any{"properties": props}, &out)
	return out, err
}

func pimRoleEligibleCreate(e *env) *cobra.Command {
	var role, scope, assignee, duration string
	return command(e, "create", "Make someone eligible for a role at a scope",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&role, "role", "", "role name or id")
			cmd.Flags().StringVar(&scope, "scope", "", "scope (default: the subscription)")
			cmd.Flags().StringVar(&assignee, "assignee", "", "user (UPN or id), group or service principal")
			cmd.Flags().StringVar(&duration, "duration", "", "how long the eligibility lasts, ISO 8601 (default: no end)")
			required(cmd, "role", "assignee")
		},
		func(ctx context.Context, c *client) (any, error) {
			roleID, sc, err := c.roleTarget(ctx, role, scope)
			if err != nil {
				return nil, err
			}
			p, err := c.principalID(ctx, assignee)
			if err != nil {
				return nil, err
			}
			return c.roleRequest(ctx, "roleEligibilityScheduleRequests", sc, map[string]any{"principalId": p, "roleDefinitionId": roleID,
				"requestType": "AdminAssign", "justification": "keyward pim role eligible create", "scheduleInfo": schedule(duration, false)})
		})
}

func pimRoleEligibleList(e *env) *cobra.Command {
	var scope string
	var mine bool
	return command(e, "list", "List eligible role assignments at a scope (yours with --mine)",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&scope, "scope", "", "scope (default: the subscription)")
			cmd.Flags().BoolVar(&mine, "mine", false, "only yours (asTarget())")
		},
		func(ctx context.Context, c *client) (any, error) {
			sc, err := c.scope(scope, "")
			if err != nil {
				return nil, err
			}
			path := sc + "/providers/Microsoft.Authorization/roleEligibilitySchedules"
			if mine {
				path += "?$filter=" + url.QueryEscape("asTarget()")
			}
			var list struct {
				Value []map[string]any `json:"value"`
			}
			err = c.armPIM(ctx, http.MethodGet, path, pimARMVersion, nil, &list)
			if list.Value == nil {
				list.Value = []map[string]any{}
			}
			return list.Value, err
		})
}

func pimRoleEligibleDelete(e *env) *cobra.Command {
	var role, scope, assignee string
	return command(e, "delete", "End someone's eligibility for a role at a scope",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&role, "role", "", "role name or id")
			cmd.Flags().StringVar(&scope, "scope", "", "scope (default: the subscription)")
			cmd.Flags().StringVar(&assignee, "assignee", "", "user (UPN or id), group or service principal")
			required(cmd, "role", "assignee")
		},
		func(ctx context.Context, c *client) (any, error) {
			roleID, sc, err := c.roleTarget(ctx, role, scope)
			if err != nil {
				return nil, err
			}
			p, err := c.principalID(ctx, assignee)
			if err != nil {
				return nil, err
			}
			return c.roleRequest(ctx, "roleEligibilityScheduleRequests", sc, map[string]any{"principalId": p, "roleDefinitionId": roleID,
				"requestType": "AdminRemove"})
		})
}

func pimRoleActivate(e *env, verb string) *cobra.Command {
	var role, scope, duration, justification, ticket string
	short := map[string]string{"activate": "Activate your eligible role at a scope, for a while",
		"deactivate": "End your activated role at a scope now"}[verb]
	return command(e, verb, short,
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&role, "role", "", "role name or id")
			cmd.Flags().StringVar(&scope, "scope", "", "scope (default: the subscription)")
			if verb == "activate" {
				cmd.Flags().StringVar(&duration, "duration", "PT1H", "how long, ISO 8601 (e.g. PT4H)")
				cmd.Flags().StringVar(&justification, "justification", "", "why you need it")
				cmd.Flags().StringVar(&ticket, "ticket", "", "ticket number")
			}
			required(cmd, "role")
		},
		func(ctx context.Context, c *client) (any, error) {
			roleID, sc, err := c.roleTarget(ctx, role, scope)
			if err != nil {
				return nil, err
			}
			me, err := c.me(ctx)
			if err != nil {
				return nil, err
			}
			props := map[string]any{"principalId": me, "roleDefinitionId": roleID, "requestType": "SelfDeactivate"}
			if verb == "activate" {
				props["requestType"], props["justification"], props["scheduleInfo"] = "SelfActivate", justification, schedule(duration, false)
				if ticket != "" {
					props["ticketInfo"] = map[string]string{"ticketNumber": ticket, "ticketSystem": "keyward"}
				}
			}
			return c.roleRequest(ctx, "roleAssignmentScheduleRequests", sc, props)
		})
}

// pimRequest is one row of `keyward pim request list`.
type pimRequest struct {
	ID            string `json:"id"`
	Kind          string `json:"kind"` // group or role
	Target        string `json:"target"`
	PrincipalID   string `json:"principalId"`
	Action        string `json:"action"`
	Status        string `json:"status"`
	Justification string `json:"justification"`
	Created       string `json:"createdDateTime"`
}

func pimRequestList(e *env) *cobra.Command {
	var pending bool
	return command(e, "list", "List your activation requests, or those waiting for your approval (--pending-approval)",
		func(cmd *cobra.Command) {
			cmd.Flags().BoolVar(&pending, "pending-approval", false, "requests you may approve that wait for a decision")
		},
		func(ctx context.Context, c *client) (any, error) {
			on, armFilter := "principal", "asRequestor()"
			if pending {
				on, armFilter = "approver", "asApprover()"
			}
			out := []pimRequest{}
			path := pimGroupBase + "/assignmentScheduleRequests/filterByCurrentUser(on='" + on + "')"
			if pending {
				path += "?$filter=" + url.QueryEscape("status eq 'PendingApproval'")
			}
			groups, err := c.graphList(ctx, path)
			if err != nil {
				return nil, err
			}
			str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
			for _, g := range groups {
				out = append(out, pimRequest{ID: str(g, "id"), Kind: "group", Target: str(g, "groupId"), PrincipalID: str(g, "principalId"),
					Action: str(g, "action"), Status: str(g, "status"), Justification: str(g, "justification"), Created: str(g, "createdDateTime")})
			}
			var roles struct {
				Value []struct {
					Name       string         `json:"name"`
					Properties map[string]any `json:"properties"`
				} `json:"value"`
			}
			if err := c.armPIM(ctx, http.MethodGet, "/providers/Microsoft.Authorization/roleAssignmentScheduleRequests?$filter="+url.QueryEscape(armFilter),
				pimARMVersion, nil, &roles); err != nil {
				return nil, err
			}
			for _, r := range roles.Value {
				p := r.Properties
				if pending && str(p, "status") != "PendingApproval" {
					continue
				}
				out = append(out, pimRequest{ID: r.Name, Kind: "role", Target: str(p, "roleDefinitionId") + " at " + str(p, "scope"),
					PrincipalID: str(p, "principalId"), Action: str(p, "requestType"), Status: str(p, "status"),
					Justification: str(p, "justification"), Created: str(p, "createdOn")})
			}
			return out, nil
		})
}

// pimRequestDecide approves or denies a request: a group request through
// Graph's assignmentApprovals, a role request through ARM's
// roleAssignmentApprovals.
func pimRequestDecide(e *env, verb string) *cobra.Command {
	var id, justification string
	result := map[string]string{"approve": "Approve", "deny": "Deny"}[verb]
	return command(e, verb, map[string]string{"approve": "Approve a request waiting for you", "deny": "Deny a request waiting for you"}[verb],
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&id, "id", "", "the request id (see pim request list --pending-approval)")
			cmd.Flags().StringVar(&justification, "justification", "", "why")
			required(cmd, "id", "justification")
		},
		func(ctx context.Context, c *client) (any, error) {
			body := map[string]string{"reviewResult": result, "justification": justification}
			var approval struct {
				ID     string           `json:"id"`
				Stages []map[string]any `json:"stages"`
				Steps  []map[string]any `json:"steps"`
			}
			err := c.graph(ctx, http.MethodGet, pimGroupBase+"/assignmentApprovals/"+url.PathEscape(id), nil, &approval)
			if err == nil {
				stage := openStage(append(approval.Stages, approval.Steps...))
				if stage == "" {
					return nil, fmt.Errorf("the request %s has no step waiting for your decision", id)
				}
				if err := c.graph(ctx, http.MethodPatch, pimGroupBase+"/assignmentApprovals/"+url.PathEscape(id)+"/steps/"+url.PathEscape(stage), body, nil); err != nil {
					return nil, err
				}
				return map[string]string{"id": id, "kind": "group", "reviewResult": result}, nil
			}
			var armApproval struct {
				Properties struct {
					Stages []map[string]any `json:"stages"`
					Steps  []map[string]any `json:"steps"`
				} `json:"properties"`
			}
			path := "/providers/Microsoft.Authorization/roleAssignmentApprovals/" + url.PathEscape(id)
			if aerr := c.armPIM(ctx, http.MethodGet, path, approvalsVersion, nil, &armApproval); aerr != nil {
				return nil, err // the group error: the id is neither's
			}
			steps := append(armApproval.Properties.Stages, armApproval.Properties.Steps...)
			var stage string
			for _, s := range steps {
				name, _ := s["name"].(string)
				props, _ := s["properties"].(map[string]any)
				if props == nil {
					props = s
				}
				if props["status"] == "InProgress" || props["assignedToMe"] == true {
					stage = name
					if stage == "" {
						stage, _ = props["id"].(string)
					}
					break
				}
			}
			if stage == "" {
				return nil, fmt.Errorf("the request %s has no step waiting for your decision", id)
			}
			if err := c.armPIM(ctx, http.MethodPatch, path+"/stages/"+url.PathEscape(stage), approvalsVersion,
				map[string]any{"properties": body}, nil); err != nil {
				return nil, err
			}
			return map[string]string{"id": id, "kind": "role", "reviewResult": result}, nil
		})
}

// openStage returns the id of the stage that waits for a decision.
func openStage(stages []map[string]any) string {
	for _, s := range stages {
		if s["status"] == "InProgress" || s["assignedToMe"] == true {
			id, _ := s["id"].(string)
			return id
		}
	}
	return ""
}

func pimAlertList(e *env) *cobra.Command {
	var all bool
	return command(e, "list", "List PIM alerts (active ones; --all for every alert)",
		func(cmd *cobra.Command) {
			cmd.Flags().BoolVar(&all, "all", false, "include alerts that are not active")
		},
		func(ctx context.Context, c *client) (any, error) {
			filter := url.QueryEscape("scopeId eq '/' and scopeType eq 'DirectoryRole'")
			var list struct {
				Value []map[string]any `json:"value"`
			}
			u := strings.TrimSuffix(c.prof.graphURL(), "/") + "/beta/identityGovernance/roleManagementAlerts/alerts?$filter=" + filter + "&$expand=alertIncidents"
			if err := c.call(ctx, graphScope, http.MethodGet, u, nil, &list); err != nil {
				return nil, err
			}
			out := []map[string]any{}
			for _, a := range list.Value {
				if all || a["isActive"] == true {
					out = append(out, a)
				}
			}
			return out, nil
		})
}

// alertConfigType is the configuration type of an alert, as Graph names it.
func alertConfigType(alert string) (string, bool) {
	switch alert {
	case "SequentialActivationRenewalsAlert":
		return "sequentialActivationRenewalsAlertConfiguration", true
	case "RolesAssignedOutsidePimAlert":
		return "rolesAssignedOutsidePrivilegedIdentityManagementAlertConfiguration", true
	case "NoMfaOnRoleActivationAlert":
		return "noMfaOnRoleActivationAlertConfiguration", true
	}
	return "", false
}

func pimAlertConfigUpdate(e *env) *cobra.Command {
	var typ, interval, enabled string
	var threshold int
	return command(e, "update", "Change an alert's configuration",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&typ, "type", "", "the alert: SequentialActivationRenewalsAlert, RolesAssignedOutsidePimAlert or NoMfaOnRoleActivationAlert")
			cmd.Flags().StringVar(&enabled, "enabled", "", "true or false")
			cmd.Flags().IntVar(&threshold, "threshold", 0, "SequentialActivationRenewalsAlert: activations within the interval that raise it")
			cmd.Flags().StringVar(&interval, "interval", "", "SequentialActivationRenewalsAlert: the interval, ISO 8601 (e.g. PT1H)")
			required(cmd, "type")
		},
		func(ctx context.Context, c *client) (any, error) {
			configType, ok := alertConfigType(typ)
			if !ok {
				return nil, usagef("unknown alert %q", typ)
			}
			body := map[string]any{"@odata.type": "#microsoft.graph." + configType}
			if enabled != "" {
				on, err := parseBool("enabled", enabled)
				if err != nil {
					return nil, err
				}
				body["isEnabled"] = on
			}
			if threshold != 0 {
				body["sequentialActivationCounterThreshold"] = threshold
			}
			if interval != "" {
				body["timeIntervalBetweenActivations"] = interval
			}
			base := strings.TrimSuffix(c.prof.graphURL(), "/") + "/beta/identityGovernance/roleManagementAlerts/alertConfigurations/"
			id := "DirectoryRole_" + c.prof.TenantID + "_" + typ
			if err := c.call(ctx, graphScope, http.MethodPatch, base+url.PathEscape(id), body, nil); err != nil {
				return nil, err
			}
			var out map[string]any
			err := c.call(ctx, graphScope, http.MethodGet, base+url.PathEscape(id), nil, &out)
			return out, err
		})
}
