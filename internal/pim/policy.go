package pim

import (
	"crypto/fips140"
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Rule types (ARM's ruleType; Graph's @odata.type is
// #microsoft.graph.unifiedRoleManagementPolicy{Expiration,…}Rule).
const (
	ExpirationRule            = "RoleManagementPolicyExpirationRule"
	EnablementRule            = "RoleManagementPolicyEnablementRule"
	ApprovalRule              = "RoleManagementPolicyApprovalRule"
	AuthenticationContextRule = "RoleManagementPolicyAuthenticationContextRule"
	NotificationRule          = "RoleManagementPolicyNotificationRule"
)

// Rule ids that requests are checked against.
const (
	RuleExpirationAdminEligibility = "Expiration_Admin_Eligibility"
	RuleEnablementAdminEligibility = "Enablement_Admin_Eligibility"
	RuleExpirationAdminAssignment  = "Expiration_Admin_Assignment"
	RuleEnablementAdminAssignment  = "Enablement_Admin_Assignment"
	RuleExpirationEndUser          = "Expiration_EndUser_Assignment"
	RuleEnablementEndUser          = "Enablement_EndUser_Assignment"
	RuleApprovalEndUser            = "Approval_EndUser_Assignment"
	RuleAuthContextEndUser         = "AuthenticationContext_EndUser_Assignment"
)

// Enablement values.
const (
	EnableMFA           = "MultiFactorAuthentication"
	EnableJustification = "Justification"
	EnableTicketing     = "Ticketing"
)

// RuleTarget is a rule's target block.
type RuleTarget struct {
	Caller              string   `json:"caller"`
	Operations          []string `json:"operations"`
	Level               string   `json:"level"`
	TargetObjects       []string `json:"targetObjects"`
	InheritableSettings []string `json:"inheritableSettings"`
	EnforcedSettings    []string `json:"enforcedSettings"`
}

// ApprovalStage is one stage of an approval rule.
type ApprovalStage struct {
	ApprovalStageTimeOutInDays      int        `json:"approvalStageTimeOutInDays"`
	IsApproverJustificationRequired bool       `json:"isApproverJustificationRequired"`
	EscalationTimeInMinutes         int        `json:"escalationTimeInMinutes"`
	IsEscalationEnabled             bool       `json:"isEscalationEnabled"`
	PrimaryApprovers                []Approver `json:"primaryApprovers"`
	EscalationApprovers             []Approver `json:"escalationApprovers"`
}

// ApprovalSetting is an approval rule's setting.
type ApprovalSetting struct {
	IsApprovalRequired               bool            `json:"isApprovalRequired"`
	IsApprovalRequiredForExtension   bool            `json:"isApprovalRequiredForExtension"`
	IsRequestorJustificationRequired bool            `json:"isRequestorJustificationRequired"`
	ApprovalMode                     string          `json:"approvalMode"`
	ApprovalStages                   []ApprovalStage `json:"approvalStages"`
}

// Rule is one policy rule in ARM's shape (the fields of every rule type;
// those of other types stay empty).
type Rule struct {
	ID       string     `json:"id"`
	RuleType string     `json:"ruleType"`
	Target   RuleTarget `json:"target"`
	// Expiration rules.
	IsExpirationRequired bool   `json:"isExpirationRequired,omitempty"`
	MaximumDuration      string `json:"maximumDuration,omitempty"`
	// Enablement rules.
	EnabledRules []string `json:"enabledRules,omitempty"`
	// Approval rules.
	Setting *ApprovalSetting `json:"setting,omitempty"`
	// Authentication-context rules.
	IsEnabled  bool   `json:"isEnabled,omitempty"`
	ClaimValue string `json:"claimValue,omitempty"`
	// Notification rules.
	NotificationType           string   `json:"notificationType,omitempty"`
	RecipientType              string   `json:"recipientType,omitempty"`
	NotificationLevel          string   `json:"notificationLevel,omitempty"`
	NotificationRecipients     []string `json:"notificationRecipients,omitempty"`
	IsDefaultRecipientsEnabled bool     `json:"isDefaultRecipientsEnabled,omitempty"`
}

// Policy is a target's role management policy.
type Policy struct {
	ID             string    `json:"id"`
	Target         Target    `json:"target"`
	Rules          []Rule    `json:"rules"`
	LastModifiedBy string    `json:"lastModifiedBy,omitempty"`
	LastModified   time.Time `json:"lastModified"`
}

// Rule returns the policy's rule id, or nil.
func (p *Policy) Rule(id string) *Rule {
	for i := range p.Rules {
		if strings.EqualFold(p.Rules[i].ID, id) {
			return &p.Rules[i]
		}
	}
	return nil
}

var policySpace = uuid.MustParse("1d3b8f5e-8a0f-4c3e-9a55-6f1c2b7d0e11")

// PolicyGUID is the stable GUID of a target's policy.
func PolicyGUID(t Target) string {
	// A name-based UUID (RFC 9562 version 5) is SHA-1 by definition; it
	// names, it protects nothing, so FIPS mode's refusal of SHA-1 is lifted
	// for it.
	var id string
	fips140.WithoutEnforcement(func() { id = uuid.NewHash(sha1.New(), policySpace, []byte(t.Key()), 5).String() })
	return id
}

// PolicyID is a target's policy id: Group_{groupId}_{guid} for groups (as
// Graph spells them), the GUID for roles.
func PolicyID(t Target) string {
	if t.Kind == KindGroup {
		return "Group_" + t.GroupID + "_" + PolicyGUID(t)
	}
	return PolicyGUID(t)
}

var groupPolicyID = regexp.MustCompile(`(?i)^Group_([0-9a-f-]{36})_([0-9a-f-]{36})$`)

// GroupPolicyTarget finds the group target a Graph policy id names.
func GroupPolicyTarget(id string) (Target, bool) {
	m := groupPolicyID.FindStringSubmatch(id)
	if m == nil {
		return Target{}, false
	}
	for _, access := range []string{"member", "owner"} {
		t := GroupTarget(strings.ToLower(m[1]), access)
		if strings.EqualFold(PolicyGUID(t), m[2]) {
			return t, true
		}
	}
	return Target{}, false
}

func target(caller, level string) RuleTarget {
	return RuleTarget{Caller: caller, Operations: []string{"All"}, Level: level, TargetObjects: []string{},
		InheritableSettings: []string{}, EnforcedSettings: []string{}}
}

// DefaultPolicy is a target's policy until it is changed: activation up
// to 8 hours with a justification, no approval; eligibility up to a year.
func DefaultPolicy(t Target) *Policy {
	p := &Policy{ID: PolicyID(t), Target: t}
	rule := func(r Rule) { p.Rules = append(p.Rules, r) }
	rule(Rule{ID: RuleExpirationAdminEligibility, RuleType: ExpirationRule, Target: target("Admin", "Eligibility"), IsExpirationRequired: true, MaximumDuration: "P365D"})
	rule(Rule{ID: RuleEnablementAdminEligibility, RuleType: EnablementRule, Target: target("Admin", "Eligibility"), EnabledRules: []string{}})
	rule(Rule{ID: RuleExpirationAdminAssignment, RuleType: ExpirationRule, Target: target("Admin", "Assignment"), IsExpirationRequired: false, MaximumDuration: "P180D"})
	rule(Rule{ID: RuleEnablementAdminAssignment, RuleType: EnablementRule, Target: target("Admin", "Assignment"), EnabledRules: []string{EnableJustification}})
	rule(Rule{ID: RuleExpirationEndUser, RuleType: ExpirationRule, Target: target("EndUser", "Assignment"), IsExpirationRequired: true, MaximumDuration: "PT8H"})
	rule(Rule{ID: RuleEnablementEndUser, RuleType: EnablementRule, Target: target("EndUser", "Assignment"), EnabledRules: []string{EnableJustification}})
	rule(Rule{ID: RuleApprovalEndUser, RuleType: ApprovalRule, Target: target("EndUser", "Assignment"), Setting: &ApprovalSetting{
		ApprovalMode: "SingleStage", ApprovalStages: []ApprovalStage{{ApprovalStageTimeOutInDays: 1, PrimaryApprovers: []Approver{}, EscalationApprovers: []Approver{}}}}})
	rule(Rule{ID: RuleAuthContextEndUser, RuleType: AuthenticationContextRule, Target: target("EndUser", "Assignment")})
	for _, level := range []string{"Eligibility", "Assignment"} {
		for _, caller := range []string{"Admin", "EndUser"} {
			if caller == "EndUser" && level == "Eligibility" {
				continue
			}
			for _, rcpt := range []string{"Admin", "Requestor", "Approver"} {
				rule(Rule{ID: "Notification_" + rcpt + "_" + caller + "_" + level, RuleType: NotificationRule, Target: target(caller, level),
					NotificationType: "Email", RecipientType: rcpt, NotificationLevel: "All", NotificationRecipients: []string{}, IsDefaultRecipientsEnabled: true})
			}
		}
	}
	return p
}

// ruleTypeOf is the type every fixed rule id has.
func ruleTypeOf(id string) string {
	switch {
	case strings.HasPrefix(id, "Expiration_"):
		return ExpirationRule
	case strings.HasPrefix(id, "Enablement_"):
		return EnablementRule
	case strings.HasPrefix(id, "Approval_"):
		return ApprovalRule
	case strings.HasPrefix(id, "AuthenticationContext_"):
		return AuthenticationContextRule
	case strings.HasPrefix(id, "Notification_"):
		return NotificationRule
	}
	return ""
}

// apply replaces the rule of r's id in p, after checking it.
func (p *Policy) apply(r Rule) error {
	cur := p.Rule(r.ID)
	if cur == nil {
		return ErrInvalidPolicy.With("The policy is invalid: there is no rule %q.", r.ID)
	}
	if r.RuleType == "" {
		r.RuleType = cur.RuleType
	}
	if !strings.EqualFold(r.RuleType, ruleTypeOf(cur.ID)) {
		return ErrInvalidPolicy.With("The policy is invalid: rule %s has type %s, not %s.", cur.ID, ruleTypeOf(cur.ID), r.RuleType)
	}
	r.ID, r.RuleType = cur.ID, cur.RuleType
	if r.Target.Caller == "" {
		r.Target = cur.Target
	}
	switch r.RuleType {
	case ExpirationRule:
		if r.MaximumDuration == "" {
			r.MaximumDuration = cur.MaximumDuration
		}
		d, err := ParseDuration(r.MaximumDuration)
		if err != nil || d < time.Minute {
			return ErrInvalidPolicy.With("The policy is invalid: maximumDuration %q of %s is not an ISO 8601 duration of at least one minute.", r.MaximumDuration, r.ID)
		}
	case EnablementRule:
		if r.EnabledRules == nil {
			r.EnabledRules = []string{}
		}
		for i, e := range r.EnabledRules {
			ok := false
			for _, v := range []string{EnableMFA, EnableJustification, EnableTicketing} {
				if strings.EqualFold(v, e) {
					r.EnabledRules[i], ok = v, true
				}
			}
			if !ok {
				return ErrInvalidPolicy.With("The policy is invalid: %q is not MultiFactorAuthentication, Justification or Ticketing.", e)
			}
		}
	case ApprovalRule:
		if r.Setting == nil {
			return ErrInvalidPolicy.With("The policy is invalid: %s needs a setting.", r.ID)
		}
		for i := range r.Setting.ApprovalStages {
			st := &r.Setting.ApprovalStages[i]
			if st.PrimaryApprovers == nil {
				st.PrimaryApprovers = []Approver{}
			}
			if st.EscalationApprovers == nil {
				st.EscalationApprovers = []Approver{}
			}
			for j := range st.PrimaryApprovers {
				a := &st.PrimaryApprovers[j]
				switch {
				case strings.EqualFold(a.UserType, "User"):
					a.UserType = "User"
				case strings.EqualFold(a.UserType, "Group"):
					a.UserType = "Group"
				default:
					return ErrInvalidPolicy.With("The policy is invalid: approver userType %q is not User or Group.", a.UserType)
				}
				if _, err := uuid.Parse(a.ID); err != nil {
					return ErrInvalidPolicy.With("The policy is invalid: approver id %q is not an object id.", a.ID)
				}
				a.ID = strings.ToLower(a.ID)
			}
		}
		if r.Setting.IsApprovalRequired && (len(r.Setting.ApprovalStages) == 0 || len(r.Setting.ApprovalStages[0].PrimaryApprovers) == 0) {
			return ErrInvalidPolicy.With("The policy is invalid: approval is required but no approver is named.")
		}
	case AuthenticationContextRule:
		if r.IsEnabled && r.ClaimValue == "" {
			return ErrInvalidPolicy.With("The policy is invalid: an enabled authentication context needs a claimValue.")
		}
	}
	*cur = r
	return nil
}

var isoDuration = regexp.MustCompile(`^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`)

// ParseDuration reads an ISO 8601 duration ("PT8H", "P1DT30M", "P365D");
// a year is 365 days and a month 30.
func ParseDuration(s string) (time.Duration, error) {
	m := isoDuration.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(s)))
	if m == nil || s == "P" || strings.HasSuffix(strings.ToUpper(s), "T") {
		return 0, fmt.Errorf("pim: %q is not an ISO 8601 duration", s)
	}
	units := []time.Duration{365 * 24 * time.Hour, 30 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute}
	// Every term and every sum is checked against the limit before it is
	// made, so nothing wraps (P585Y is not some days).
	const limit = 100 * 365 * 24 * time.Hour
	var d time.Duration
	any := false
	for i, u := range units {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n < 0 || n > int64(limit/u) || time.Duration(n)*u > limit-d {
			return 0, fmt.Errorf("pim: %q is out of range", s)
		}
		d += time.Duration(n) * u
		any = true
	}
	if m[7] != "" {
		f, err := strconv.ParseFloat(m[7], 64)
		if err != nil || f < 0 || f*float64(time.Second) > float64(limit-d) {
			return 0, fmt.Errorf("pim: %q is out of range", s)
		}
		d += time.Duration(f * float64(time.Second))
		any = true
	}
	if !any || d < 0 || d > limit {
		return 0, fmt.Errorf("pim: %q is not a usable duration", s)
	}
	return d, nil
}

// FormatDuration writes d as ISO 8601 (PT1H30M, P1D).
func FormatDuration(d time.Duration) string {
	if d <= 0 {
		return "PT0S"
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	out := "P"
	if days > 0 {
		out += strconv.Itoa(int(days)) + "D"
	}
	if d > 0 {
		out += "T"
		if h := d / time.Hour; h > 0 {
			out += strconv.Itoa(int(h)) + "H"
			d -= h * time.Hour
		}
		if m := d / time.Minute; m > 0 {
			out += strconv.Itoa(int(m)) + "M"
			d -= m * time.Minute
		}
		if d > 0 {
			out += strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "S"
		}
	}
	return out
}

func clonePolicy(p *Policy) *Policy {
	b, _ := json.Marshal(p)
	var c Policy
	json.Unmarshal(b, &c)
	return &c
}

func hasEnabled(r *Rule, v string) bool { return r != nil && slices.Contains(r.EnabledRules, v) }
