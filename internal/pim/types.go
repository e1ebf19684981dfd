// Package pim is Keyward's Privileged Identity Management: just-in-time
// access that is requested, checked against a policy, perhaps approved,
// and ends by itself.
//
// It is generic over a Target: membership of a directory group (PIM for
// Groups, served on Graph) or a role at a scope (PIM for Azure roles,
// served on the resource manager). Each target kind has a Provisioner that
// makes access real (a group membership bounded in time, a role assignment
// with an end) and takes it away. Eligibilities and activations are made
// only through requests; a request that succeeds creates a schedule, and
// the schedules in force now are the instances.
//
// Records are kept as store objects (JSON documents). Every method takes
// the time from the clock given to New, so tests move time.
package pim

import (
	"strings"
	"time"
)

// Target kinds.
const (
	KindGroup = "group"
	KindRole  = "role"
)

// Target is what access is for: a group's membership or ownership
// (Kind "group", GroupID, AccessID "member" or "owner") or a role at a
// scope (Kind "role", RoleDefinitionID, Scope).
type Target struct {
	Kind             string `json:"kind"`
	GroupID          string `json:"groupId,omitempty"`
	AccessID         string `json:"accessId,omitempty"`
	RoleDefinitionID string `json:"roleDefinitionId,omitempty"`
	Scope            string `json:"scope,omitempty"`
}

// GroupTarget is a group's member (accessID "member") or owner access.
func GroupTarget(groupID, accessID string) Target {
	return Target{Kind: KindGroup, GroupID: groupID, AccessID: accessID}
}

// RoleTarget is a role definition (full id) at a scope.
func RoleTarget(roleDefinitionID, scope string) Target {
	return Target{Kind: KindRole, RoleDefinitionID: roleDefinitionID, Scope: scope}
}

// Key is the target's identity, without regard to case.
func (t Target) Key() string {
	if t.Kind == KindGroup {
		return strings.ToLower("group|" + t.GroupID + "|" + t.AccessID)
	}
	return strings.ToLower("role|" + strings.TrimSuffix(t.Scope, "/") + "|" + t.RoleDefinitionID)
}

// Same reports whether t and o are the same target.
func (t Target) Same(o Target) bool { return t.Key() == o.Key() }

// Request kinds: eligibility requests make eligibilities, assignment
// requests make active assignments (activations among them).
const (
	Eligibility = "eligibility"
	Assignment  = "assignment"
)

// Actions (Graph's spelling; ARM's Pascal case is accepted by ParseAction).
const (
	AdminAssign    = "adminAssign"
	AdminRemove    = "adminRemove"
	AdminUpdate    = "adminUpdate"
	AdminExtend    = "adminExtend"
	AdminRenew     = "adminRenew"
	SelfActivate   = "selfActivate"
	SelfDeactivate = "selfDeactivate"
	SelfExtend     = "selfExtend"
	SelfRenew      = "selfRenew"
)

var actions = []string{AdminAssign, AdminRemove, AdminUpdate, AdminExtend, AdminRenew, SelfActivate, SelfDeactivate, SelfExtend, SelfRenew}

// ParseAction returns the action named a in any case ("SelfActivate",
// "selfActivate"), or "" if there is none.
func ParseAction(a string) string {
	for _, x := range actions {
		if strings.EqualFold(x, a) {
			return x
		}
	}
	return ""
}

// IsAdmin reports whether an action is an administrator's.
func IsAdmin(action string) bool { return strings.HasPrefix(action, "admin") }

// Statuses (Azure's strings).
const (
	StatusPendingApproval = "PendingApproval"
	StatusGranted         = "Granted"
	StatusProvisioned     = "Provisioned"
	StatusRevoked         = "Revoked"
	StatusExpired         = "Expired"
	StatusDenied          = "Denied"
	StatusCanceled        = "Canceled"
	StatusTimedOut        = "TimedOut"
	// StatusFailed: an approved activation that could no longer be
	// granted (its eligibility ended, or the policy no longer allows it).
	StatusFailed = "Failed"
)

// Expiration types (Graph's spelling; ParseExpiration takes ARM's too).
const (
	NotSpecified  = "notSpecified"
	NoExpiration  = "noExpiration"
	AfterDuration = "afterDuration"
	AfterDateTime = "afterDateTime"
)

// ParseExpiration returns the expiration type named e in any case; "" is
// notSpecified; an unknown name is "".
func ParseExpiration(e string) (string, bool) {
	if e == "" {
		return NotSpecified, true
	}
	for _, x := range []string{NotSpecified, NoExpiration, AfterDuration, AfterDateTime} {
		if strings.EqualFold(x, e) {
			return x, true
		}
	}
	return "", false
}

// ScheduleInfo is when requested access starts and ends.
type ScheduleInfo struct {
	// Start is when access begins; zero is now.
	Start time.Time `json:"start"`
	// Expiration is one of the expiration types.
	Expiration string `json:"expiration"`
	// Duration is the ISO 8601 duration of afterDuration ("PT2H").
	Duration string `json:"duration,omitempty"`
	// End is the end of afterDateTime.
	End time.Time `json:"end"`
}

// Ticket is a request's ticket reference; not checked against anything.
type Ticket struct {
	Number string `json:"number,omitempty"`
	System string `json:"system,omitempty"`
}

// Request is an eligibility or assignment schedule request.
type Request struct {
	ID            string       `json:"id"`
	Kind          string       `json:"kind"` // Eligibility or Assignment
	Target        Target       `json:"target"`
	PrincipalID   string       `json:"principalId"`
	PrincipalKind string       `json:"principalKind"` // store.KindUser, …
	Action        string       `json:"action"`
	RequestorID   string       `json:"requestorId"`
	Justification string       `json:"justification,omitempty"`
	Ticket        Ticket       `json:"ticket"`
	Schedule      ScheduleInfo `json:"schedule"`
	// LinkedEligibilityID is the eligibility schedule an activation uses.
	LinkedEligibilityID string `json:"linkedEligibilityId,omitempty"`
	Status              string `json:"status"`
	// ApprovalID is set while an approval is or was needed (the request's id).
	ApprovalID string `json:"approvalId,omitempty"`
	// TargetScheduleID is the schedule the request created or ended.
	TargetScheduleID string    `json:"targetScheduleId,omitempty"`
	Created          time.Time `json:"created"`
	Completed        time.Time `json:"completed"`
	// MFA records whether the requester's token carried mfa.
	MFA bool `json:"mfa,omitempty"`
}

// Schedule types of assignment schedules.
const (
	Activated = "Activated"
	Assigned  = "Assigned"
)

// Schedule is an eligibility or an active assignment, in force from Start
// until End (zero: no end) while its Status is Provisioned.
type Schedule struct {
	ID             string    `json:"id"`
	Kind           string    `json:"kind"` // Eligibility or Assignment
	Target         Target    `json:"target"`
	PrincipalID    string    `json:"principalId"`
	PrincipalKind  string    `json:"principalKind"`
	AssignmentType string    `json:"assignmentType,omitempty"` // Activated or Assigned (assignments)
	Start          time.Time `json:"start"`
	End            time.Time `json:"end"`
	Status         string    `json:"status"`
	RequestID      string    `json:"requestId"`
	// LinkedEligibilityID is the eligibility an activation came from.
	LinkedEligibilityID string    `json:"linkedEligibilityId,omitempty"`
	Created             time.Time `json:"created"`
	Updated             time.Time `json:"updated"`
}

// InForce reports whether the schedule grants at t.
func (s *Schedule) InForce(t time.Time) bool {
	return s.Status == StatusProvisioned && !t.Before(s.Start) && (s.End.IsZero() || t.Before(s.End))
}

// Approver is a user or a group (every member may decide).
type Approver struct {
	ID          string `json:"id"`
	UserType    string `json:"userType"` // "User" or "Group"
	IsBackup    bool   `json:"isBackup"`
	Description string `json:"description,omitempty"`
}

// Stage statuses and review results.
const (
	StageNotStarted = "NotStarted"
	StageInProgress = "InProgress"
	StageCompleted  = "Completed"
	StageExpired    = "Expired"

	NotReviewed = "NotReviewed"
	Approve     = "Approve"
	Deny        = "Deny"
)

// Stage is one step of an approval.
type Stage struct {
	ID                              string     `json:"id"`
	DisplayName                     string     `json:"displayName"`
	Approvers                       []Approver `json:"approvers"`
	IsApproverJustificationRequired bool       `json:"isApproverJustificationRequired"`
	Status                          string     `json:"status"`
	ReviewResult                    string     `json:"reviewResult"`
	ReviewedBy                      string     `json:"reviewedBy,omitempty"`
	Reviewed                        time.Time  `json:"reviewed"`
	Justification                   string     `json:"justification,omitempty"`
}

// Approval is the approval of a request; its id is the request's.
type Approval struct {
	ID          string    `json:"id"`
	RequestKind string    `json:"requestKind"`
	Target      Target    `json:"target"`
	PrincipalID string    `json:"principalId"`
	RequestorID string    `json:"requestorId"`
	Stages      []Stage   `json:"stages"`
	Created     time.Time `json:"created"`
}

// Caller is who makes a request, as the surface authenticated it.
type Caller struct {
	ObjectID string
	// Kind is the caller's principal kind (store.KindUser, …).
	Kind string
	// AMR and ACRS are the token's amr and acrs claims.
	AMR  []string
	ACRS []string
	// Admin reports whether the caller may administer the target (the
	// surface decides: Global or Privileged Role Administrator for groups,
	// Microsoft.Authorization/roleAssignments/write for roles).
	Admin bool
}
