package armroles

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/armrbac"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/store"
)

// Policy is the role management policy of a role at a scope: Azure's 17
// rules, each kept in Azure's JSON form (ruleType, id, target and the
// fields of its type). Every (scope, role) has one; until changed it is
// the default.
type Policy struct {
	ID, Name       string
	Scope, RoleID  string
	Rules          []json.RawMessage
	Modified       time.Time
	ModifiedBy     string
	ModifiedByName string
}

// AssignmentName is the name of the policy assignment that attaches the
// policy to its role: {policyGuid}_{roleDefinitionGuid}.
func (p *Policy) AssignmentName() string { return p.Name + "_" + p.RoleID }

// storedPolicy is what a changed policy keeps: the rules that differ from
// the default ones, by id.
type storedPolicy struct {
	Scope, RoleID  string
	Rules          map[string]json.RawMessage
	Modified       time.Time
	ModifiedBy     string
	ModifiedByName string
}

var policyNamespace = uuid.MustParse("6b5f0c8e-4d35-4b8a-9a53-6f3e0c2a9d11")

// PolicyName is the GUID of the policy of role at scope, the same on
// every node and every start.
func PolicyName(scope, role string) string {
	return uuid.NewSHA1(policyNamespace, []byte(strings.ToLower(NormalizeScope(scope))+"|"+strings.ToLower(lastSegment(role)))).String()
}

// PolicyID is the ARM id of a policy.
func PolicyID(scope, name string) string {
	return NormalizeScope(scope) + "/providers/Microsoft.Authorization/roleManagementPolicies/" + name
}

// ruleIDs are the 17 rules of every policy, in the order lists show them.
var ruleIDs = []string{
	"Expiration_Admin_Eligibility", "Enablement_Admin_Eligibility",
	"Notification_Admin_Admin_Eligibility", "Notification_Requestor_Admin_Eligibility", "Notification_Approver_Admin_Eligibility",
	"Expiration_Admin_Assignment", "Enablement_Admin_Assignment",
	"Notification_Admin_Admin_Assignment", "Notification_Requestor_Admin_Assignment", "Notification_Approver_Admin_Assignment",
	"Expiration_EndUser_Assignment", "Enablement_EndUser_Assignment", "Approval_EndUser_Assignment", "AuthenticationContext_EndUser_Assignment",
	"Notification_Admin_EndUser_Assignment", "Notification_Requestor_EndUser_Assignment", "Notification_Approver_EndUser_Assignment",
}

func ruleType(id string) string {
	return "RoleManagementPolicy" + id[:strings.Index(id, "_")] + "Rule"
}

// defaultRule is a rule's default, in Azure's form.
func defaultRule(id string) map[string]any {
	parts := strings.Split(id, "_")
	caller, level := parts[len(parts)-2], parts[len(parts)-1]
	r := map[string]any{"id": id, "ruleType": ruleType(id), "target": map[string]any{"caller": caller, "operations": []string{"All"},
		"level": level, "targetObjects": nil, "inheritableSettings": nil, "enforcedSettings": nil}}
	switch id {
	case "Expiration_Admin_Eligibility":
		r["isExpirationRequired"], r["maximumDuration"] = true, "P365D"
	case "Expiration_Admin_Assignment":
		r["isExpirationRequired"], r["maximumDuration"] = false, "P180D"
	case "Expiration_EndUser_Assignment":
		r["isExpirationRequired"], r["maximumDuration"] = true, "PT8H"
	case "Enablement_Admin_Eligibility":
		r["enabledRules"] = []string{}
	case "Enablement_Admin_Assignment":
		r["enabledRules"] = []string{"Justification"}
	case "Enablement_EndUser_Assignment":
		r["enabledRules"] = []string{"MultiFactorAuthentication", "Justification"}
	case "Approval_EndUser_Assignment":
		r["setting"] = map[string]any{"isApprovalRequired": false, "isApprovalRequiredForExtension": false, "isRequestorJustificationRequired": true,
			"approvalMode": "SingleStage", "approvalStages": []map[string]any{{"approvalStageTimeOutInDays": 1, "isApproverJustificationRequired": true,
				"escalationTimeInMinutes": 0, "isEscalationEnabled": false, "primaryApprovers": []any{}, "escalationApprovers": []any{}}}}
	case "AuthenticationContext_EndUser_Assignment":
		r["isEnabled"], r["claimValue"] = false, ""
	default: // notifications
		recipient := parts[1]
		r["notificationType"], r["recipientType"], r["isDefaultRecipientsEnabled"] = "Email", recipient, true
		r["notificationLevel"], r["notificationRecipients"] = "All", []string{}
	}
	return r
}

// Policy returns the policy of role (GUID or full id) at scope.
func (s *Service) Policy(ctx context.Context, scope, role string) (*Policy, error) {
	scope, role = NormalizeScope(scope), lastSegment(role)
	r, ok := armrbac.RoleByID(role)
	if !ok {
		return nil, fault.Errorf(fault.Invalid, "RoleDefinitionDoesNotExist", "The specified role definition with ID '%s' does not exist.", role)
	}
	name := PolicyName(scope, r.ID)
	p := &Policy{ID: PolicyID(scope, name), Name: name, Scope: scope, RoleID: r.ID}
	var st storedPolicy
	err := s.store.View(ctx, func(tx store.Tx) error {
		o, err := tx.GetObject(ctx, kindPolicy, p.ID)
		if err != nil {
			return err
		}
		return json.Unmarshal(o.Data, &st)
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	p.Modified, p.ModifiedBy, p.ModifiedByName = st.Modified, st.ModifiedBy, st.ModifiedByName
	for _, id := range ruleIDs {
		if raw, ok := st.Rules[id]; ok {
			p.Rules = append(p.Rules, raw)
			continue
		}
		raw, _ := json.Marshal(defaultRule(id))
		p.Rules = append(p.Rules, raw)
	}
	return p, nil
}

// PolicyByName finds a policy at scope by its name.
func (s *Service) PolicyByName(ctx context.Context, scope, name string) (*Policy, error) {
	for _, r := range armrbac.BuiltInRoles() {
		if strings.EqualFold(PolicyName(scope, r.ID), name) {
			return s.Policy(ctx, scope, r.ID)
		}
	}
	return nil, fault.Errorf(fault.NotFound, "RoleManagementPolicyNotFound", "The role management policy '%s' could not be found at scope '%s'.", name, scope)
}

// Policies lists the policies of every role at scope.
func (s *Service) Policies(ctx context.Context, scope string) ([]*Policy, error) {
	var out []*Policy
	for _, r := range armrbac.BuiltInRoles() {
		p, err := s.Policy(ctx, scope, r.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

var enablements = []string{"MultiFactorAuthentication", "Justification", "Ticketing"}

// PatchPolicy changes the rules given (by id), each merged field by field
// over the rule it replaces; the others stay.
func (s *Service) PatchPolicy(ctx context.Context, scope, name string, rules []json.RawMessage, by, byName string) (*Policy, error) {
	p, err := s.PolicyByName(ctx, scope, name)
	if err != nil {
		return nil, err
	}
	current := map[string]map[string]any{}
	for _, raw := range p.Rules {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
		current[m["id"].(string)] = m
	}
	changed := map[string]json.RawMessage{}
	for _, raw := range rules {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fault.Invalidf("a rule is not a JSON object")
		}
		id, _ := m["id"].(string)
		cur, ok := current[id]
		if !ok {
			return nil, fault.Errorf(fault.Invalid, "InvalidRoleManagementPolicyRule", "The rule id '%s' is not one of the policy's rules.", id)
		}
		if t, _ := m["ruleType"].(string); t != "" && t != cur["ruleType"] {
			return nil, fault.Errorf(fault.Invalid, "InvalidRoleManagementPolicyRule", "The rule '%s' is of type %s, not %s.", id, cur["ruleType"], t)
		}
		for k, v := range m {
			if v != nil { // a null field keeps the current value
				cur[k] = v
			}
		}
		merged, _ := json.Marshal(cur)
		if _, err := parseRule(id, merged); err != nil {
			return nil, err
		}
		changed[id] = merged
	}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		st := storedPolicy{Scope: p.Scope, RoleID: p.RoleID, Rules: map[string]json.RawMessage{}}
		if o, err := tx.GetObject(ctx, kindPolicy, p.ID); err == nil {
			if err := json.Unmarshal(o.Data, &st); err != nil {
				return err
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if st.Rules == nil {
			st.Rules = map[string]json.RawMessage{}
		}
		for id, raw := range changed {
			st.Rules[id] = raw
		}
		st.Modified, st.ModifiedBy, st.ModifiedByName = s.now().UTC(), by, byName
		data, _ := json.Marshal(st)
		return tx.PutObject(ctx, &store.Object{Kind: kindPolicy, ID: p.ID, Data: data})
	})
	if err != nil {
		return nil, err
	}
	s.checkNoMFA(ctx, p.Scope, p.RoleID, "")
	return s.Policy(ctx, scope, p.RoleID)
}

// rule is the part of a rule the evaluation reads.
type rule struct {
	IsExpirationRequired *bool    `json:"isExpirationRequired"`
	MaximumDuration      string   `json:"maximumDuration"`
	EnabledRules         []string `json:"enabledRules"`
	Setting              *struct {
		IsApprovalRequired               bool `json:"isApprovalRequired"`
		IsRequestorJustificationRequired bool `json:"isRequestorJustificationRequired"`
		ApprovalStages                   []struct {
			PrimaryApprovers []struct {
				ID string `json:"id"`
			} `json:"primaryApprovers"`
		} `json:"approvalStages"`
	} `json:"setting"`
	IsEnabled bool `json:"isEnabled"`
}

func parseRule(id string, raw json.RawMessage) (rule, error) {
	var r rule
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fault.Errorf(fault.Invalid, "InvalidRoleManagementPolicyRule", "The rule '%s' is malformed: %v", id, err)
	}
	if r.MaximumDuration != "" {
		if d, err := keys.ParseDuration(r.MaximumDuration); err != nil || d <= 0 {
			return r, fault.Errorf(fault.Invalid, "InvalidRoleManagementPolicyRule", "The rule '%s' has a maximumDuration %q that is not an ISO 8601 duration such as PT8H.", id, r.MaximumDuration)
		}
	}
	for _, e := range r.EnabledRules {
		if !slices.Contains(enablements, e) {
			return r, fault.Errorf(fault.Invalid, "InvalidRoleManagementPolicyRule", "The rule '%s' enables %q, not one of %v.", id, e, enablements)
		}
	}
	if r.Setting != nil && r.Setting.IsApprovalRequired {
		n := 0
		for _, st := range r.Setting.ApprovalStages {
			n += len(st.PrimaryApprovers)
		}
		if n == 0 {
			return r, fault.Errorf(fault.Invalid, "InvalidRoleManagementPolicyRule", "The rule '%s' requires approval but names no approver.", id)
		}
	}
	if r.IsEnabled && strings.HasPrefix(id, "AuthenticationContext") {
		return r, fault.Errorf(fault.Invalid, "InvalidRoleManagementPolicyRule", "Authentication contexts are not supported.")
	}
	return r, nil
}

type expirationRule struct {
	Required bool
	Max      time.Duration
}

// evaluation is what a policy's rules require of requests.
type evaluation struct {
	adminEligibilityExpiry, adminAssignmentExpiry, activationExpiry expirationRule
	adminEligibilityNeeds, adminAssignmentNeeds, activationNeeds    []string
	approval                                                        struct {
		Required, JustificationRequired bool
		Approvers                       []string
	}
}

func (p *Policy) evaluation() evaluation {
	var e evaluation
	for i, raw := range p.Rules {
		id := ruleIDs[i]
		r, _ := parseRule(id, raw)
		var exp expirationRule
		if r.IsExpirationRequired != nil {
			exp.Required = *r.IsExpirationRequired
		}
		exp.Max, _ = keys.ParseDuration(r.MaximumDuration)
		switch id {
		case "Expiration_Admin_Eligibility":
			e.adminEligibilityExpiry = exp
		case "Expiration_Admin_Assignment":
			e.adminAssignmentExpiry = exp
		case "Expiration_EndUser_Assignment":
			e.activationExpiry = exp
		case "Enablement_Admin_Eligibility":
			e.adminEligibilityNeeds = r.EnabledRules
		case "Enablement_Admin_Assignment":
			e.adminAssignmentNeeds = r.EnabledRules
		case "Enablement_EndUser_Assignment":
			e.activationNeeds = r.EnabledRules
		case "Approval_EndUser_Assignment":
			if r.Setting != nil {
				e.approval.Required, e.approval.JustificationRequired = r.Setting.IsApprovalRequired, r.Setting.IsRequestorJustificationRequired
				for _, st := range r.Setting.ApprovalStages {
					for _, a := range st.PrimaryApprovers {
						e.approval.Approvers = append(e.approval.Approvers, a.ID)
					}
				}
			}
		}
	}
	return e
}
