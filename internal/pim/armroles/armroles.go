// Package armroles is Privileged Identity Management for Azure roles on
// the control plane: eligibilities and active assignments made only
// through requests, schedules and the instances in force now, one role
// management policy per (scope, role) whose rules decide what a request
// needs, and approvals of activations whose policy asks for one.
//
// An active assignment (a direct AdminAssign or a SelfActivate of an
// eligibility) is an ordinary control-plane role assignment bounded by its
// start and end (armrbac.Assignment.Start/End), made in the transaction
// that records the schedule, so armrbac decides as if the principal held
// the role until the end: the end is judged at each decision, so access
// ends by itself on the next request. A schedule past its end is no longer
// listed.
//
// Callers (the ARM surface) authorize Admin* requests with
// Microsoft.Authorization/roleAssignments/write at the scope before
// submitting them; Self* requests are the caller's own.
package armroles

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/armrbac"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/pim"
	"github.com/keyward/keyward/internal/store"
)

// Levels: what a request or schedule makes.
const (
	Eligibility = "Eligibility"
	Assignment  = "Assignment"
)

// Request types.
const (
	AdminAssign    = "AdminAssign"
	AdminRemove    = "AdminRemove"
	SelfActivate   = "SelfActivate"
	SelfDeactivate = "SelfDeactivate"
)

// Assignment types of active schedules.
const (
	Activated = "Activated"
	Assigned  = "Assigned"
)

// Expiration types.
const (
	AfterDuration = "AfterDuration"
	AfterDateTime = "AfterDateTime"
	NoExpiration  = "NoExpiration"
)

// Request statuses.
const (
	StatusProvisioned       = "Provisioned"
	StatusRevoked           = "Revoked"
	StatusPendingApproval   = "PendingApproval"
	StatusDenied            = "Denied"
	StatusCanceled          = "Canceled"
	StatusGranted           = "Granted"
	StatusPendingEvaluation = "PendingEvaluation"
	// StatusFailed: an approved activation whose eligibility was no longer
	// in force (or whose policy could no longer be met) at the decision.
	StatusFailed = "Failed"
	// StatusTimedOut: an activation not decided within ApprovalWindow.
	StatusTimedOut = "TimedOut"
)

// ApprovalWindow is how long an activation waits for approval: one older
// than this by the service's clock reads as TimedOut and can no longer be
// approved (Azure's approval stage times out after one day).
const ApprovalWindow = 24 * time.Hour

// settle shows a request waiting for approval past ApprovalWindow at now
// as TimedOut.
func (r *Request) settle(now time.Time) {
	if r.Status == StatusPendingApproval && !now.Before(r.Created.Add(ApprovalWindow)) {
		r.Status = StatusTimedOut
	}
}

const (
	kindRequest  = "pimRoleRequest"
	kindSchedule = "pimRoleSchedule"
	kindPolicy   = "pimRolePolicy"
)

// Request is an eligibility or assignment schedule request.
type Request struct {
	ID, Name                      string
	Level                         string
	Scope, RoleID                 string // RoleID is the role's GUID
	PrincipalID, PrincipalType    string
	RequestType                   string
	Justification                 string
	TicketNumber, TicketSystem    string
	Condition, ConditionVersion   string
	LinkedEligibilityID           string
	Start                         time.Time
	ExpirationType, Duration      string
	End                           time.Time // zero: no expiration
	TargetScheduleID              string
	Status, ApprovalID            string
	RequestorID                   string
	Created                       time.Time
	Approvers                     []string `json:",omitempty"`
	ReviewedBy, ReviewResult      string   `json:",omitempty"`
	ReviewJustification           string   `json:",omitempty"`
	Reviewed                      time.Time
	ReviewerType, ReviewerName    string `json:",omitempty"`
	ApprovalStageID               string `json:",omitempty"`
	RequestedEnd, RequestedExpiry string `json:",omitempty"`
}

// Schedule is an eligibility or an active assignment, from its start to
// its end (zero: none).
type Schedule struct {
	ID, Name                   string
	Level                      string
	Scope, RoleID              string
	PrincipalID, PrincipalType string
	AssignmentType             string // Activated or Assigned, for assignments
	RequestID                  string
	LinkedEligibilityID        string
	OriginAssignmentID         string // the armrbac assignment in force
	Start, End                 time.Time
	Created, Updated           time.Time
	Condition                  string `json:",omitempty"`
}

// Live reports whether the schedule is in force at t.
func (s *Schedule) Live(t time.Time) bool {
	return !t.Before(s.Start) && (s.End.IsZero() || t.Before(s.End))
}

// Input is what a request's body says; Caller is who sends it.
type Input struct {
	Name, Level, Scope          string
	RoleDefinitionID            string
	PrincipalID, RequestType    string
	Justification               string
	TicketNumber, TicketSystem  string
	Condition, ConditionVersion string
	LinkedEligibilityID         string
	Start                       *time.Time
	ExpirationType, Duration    string
	End                         *time.Time
}

// Caller is the principal sending a request, and whether its token shows
// multi-factor authentication.
type Caller struct {
	ObjectID string
	MFA      bool
}

// Service is PIM for Azure roles.
type Service struct {
	store  store.Store
	dir    *identity.Directory
	now    func() time.Time
	exists func(ctx context.Context, scope string) bool
	rep    reporting
}

// New returns the service. exists tells which scopes exist (nil: any).
func New(s store.Store, dir *identity.Directory, now func() time.Time, exists func(context.Context, string) bool) *Service {
	if exists == nil {
		exists = func(context.Context, string) bool { return true }
	}
	return &Service{store: s, dir: dir, now: now, exists: exists}
}

var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// NormalizeScope spells a scope one way: a leading slash, no trailing one,
// and /providers/Microsoft.Subscription/subscriptions/{id} as
// /subscriptions/{id}.
func NormalizeScope(scope string) string {
	scope = "/" + strings.Trim(scope, "/")
	const alt = "/providers/microsoft.subscription/subscriptions/"
	if strings.HasPrefix(strings.ToLower(scope), alt) {
		scope = "/subscriptions/" + scope[len(alt):]
	}
	return scope
}

// covers reports whether something at scope applies at resource.
func covers(scope, resource string) bool {
	scope, resource = strings.ToLower(strings.TrimSuffix(scope, "/")), strings.ToLower(strings.TrimSuffix(resource, "/"))
	return scope == resource || strings.HasPrefix(resource, scope+"/")
}

// collection is the ARM collection name of a level's objects.
func collection(level, what string) string {
	if level == Eligibility {
		return "roleEligibility" + what
	}
	return "roleAssignment" + what
}

// ObjectID is the ARM id of a request ("ScheduleRequests"), schedule
// ("Schedules") or instance ("ScheduleInstances") of level at scope.
func ObjectID(scope, level, what, name string) string {
	return strings.TrimSuffix(scope, "/") + "/providers/Microsoft.Authorization/" + collection(level, what) + "/" + name
}

func lastSegment(id string) string { return id[strings.LastIndex(id, "/")+1:] }

// PolicyFailed is the error of a request that breaks rules of its policy.
func PolicyFailed(rules []string) error {
	names, _ := json.Marshal(rules)
	return fault.Errorf(fault.Invalid, "RoleAssignmentRequestPolicyValidationFailed", "The following policy rules failed: %s", names)
}

func invalidSchedule(format string, args ...any) error {
	return fault.Errorf(fault.Invalid, "InvalidScheduleInfo", format, args...)
}

// schedule works out a request's start and end from its input. def is the
// duration to use when none is given (0: no expiration).
func (s *Service) schedule(in Input, now time.Time, def time.Duration) (start, end time.Time, err error) {
	start = now
	if in.Start != nil && !in.Start.IsZero() {
		start = in.Start.UTC()
	}
	typ := in.ExpirationType
	if typ == "" {
		switch {
		case in.Duration != "":
			typ = AfterDuration
		case in.End != nil:
			typ = AfterDateTime
		case def > 0:
			return start, start.Add(def), nil
		default:
			typ = NoExpiration
		}
	}
	switch typ {
	case AfterDuration:
		if in.Duration == "" {
			return start, end, invalidSchedule("scheduleInfo.expiration.duration is required with the AfterDuration type")
		}
		d, err := keys.ParseDuration(in.Duration)
		if err != nil || d <= 0 || d > 100*365*24*time.Hour {
			return start, end, invalidSchedule("scheduleInfo.expiration.duration %q is not a positive ISO 8601 duration such as PT8H", in.Duration)
		}
		end = start.Add(d)
	case AfterDateTime:
		if in.End == nil || in.End.IsZero() {
			return start, end, invalidSchedule("scheduleInfo.expiration.endDateTime is required with the AfterDateTime type")
		}
		end = in.End.UTC()
	case NoExpiration:
	default:
		return start, end, invalidSchedule("scheduleInfo.expiration.type %q is not AfterDuration, AfterDateTime or NoExpiration", typ)
	}
	if !end.IsZero() && !end.After(start) {
		return start, end, invalidSchedule("the schedule ends (%s) before it starts (%s)", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	if !end.IsZero() && !end.After(now) {
		return start, end, invalidSchedule("the schedule ends in the past (%s)", end.Format(time.RFC3339))
	}
	return start, end, nil
}

// principalType is ARM's word for a directory object's kind.
func principalType(kind string) string {
	switch kind {
	case store.KindUser:
		return "User"
	case store.KindGroup:
		return "Group"
	default:
		return "ServicePrincipal"
	}
}

// Submit checks a request against its policy and carries it out: it
// makes, activates, deactivates or removes a schedule, or leaves an
// activation waiting for approval. A request that fails changes nothing.
func (s *Service) Submit(ctx context.Context, c Caller, in Input) (Request, error) {
	return s.submit(ctx, c, in, false)
}

// Validate is Submit without effects: the request as it would be, with
// status Granted, or PendingEvaluation when it would need approval.
func (s *Service) Validate(ctx context.Context, c Caller, in Input) (Request, error) {
	return s.submit(ctx, c, in, true)
}

func (s *Service) submit(ctx context.Context, c Caller, in Input, dry bool) (Request, error) {
	now := s.now().UTC()
	in.Scope = NormalizeScope(in.Scope)
	if !guid.MatchString(in.Name) {
		return Request{}, fault.Invalidf("the request name %q is not a GUID", in.Name)
	}
	if in.PrincipalID == "" || in.RoleDefinitionID == "" || in.RequestType == "" {
		return Request{}, fault.Invalidf("properties.principalId, properties.roleDefinitionId and properties.requestType are required")
	}
	role, ok := armrbac.RoleByID(in.RoleDefinitionID)
	if !ok {
		return Request{}, fault.Errorf(fault.Invalid, "RoleDefinitionDoesNotExist", "The specified role definition with ID '%s' does not exist.", lastSegment(in.RoleDefinitionID))
	}
	if !s.exists(ctx, in.Scope) {
		return Request{}, fault.Errorf(fault.Invalid, "InvalidScope", "The scope '%s' does not name an existing subscription, resource group or resource.", in.Scope)
	}
	p, err := s.dir.Get(ctx, in.PrincipalID)
	if err != nil {
		return Request{}, fault.Errorf(fault.Invalid, "PrincipalNotFound", "Principal %s does not exist in the directory %s.", in.PrincipalID, s.dir.TenantID())
	}
	self := in.RequestType == SelfActivate || in.RequestType == SelfDeactivate
	switch in.RequestType {
	case AdminAssign, AdminRemove:
	case SelfActivate, SelfDeactivate:
		if in.Level != Assignment {
			return Request{}, fault.Invalidf("the request type %s applies to role assignment schedule requests", in.RequestType)
		}
		if !strings.EqualFold(in.PrincipalID, c.ObjectID) {
			return Request{}, armrbac.ErrDenied.With("The client '%s' may make %s requests only for itself.", c.ObjectID, in.RequestType)
		}
	case "AdminUpdate", "AdminExtend", "AdminRenew", "SelfExtend", "SelfRenew":
		return Request{}, fault.Errorf(fault.Invalid, "UnsupportedRequestType", "The request type %s is not supported: remove and assign again.", in.RequestType)
	default:
		return Request{}, fault.Invalidf("properties.requestType %q is not one of AdminAssign, AdminRemove, SelfActivate, SelfDeactivate", in.RequestType)
	}
	req := Request{ID: ObjectID(in.Scope, in.Level, "ScheduleRequests", in.Name), Name: in.Name, Level: in.Level, Scope: in.Scope,
		RoleID: role.ID, PrincipalID: p.ID, PrincipalType: principalType(p.Kind), RequestType: in.RequestType,
		Justification: in.Justification, TicketNumber: in.TicketNumber, TicketSystem: in.TicketSystem, Condition: in.Condition,
		ConditionVersion: in.ConditionVersion, LinkedEligibilityID: in.LinkedEligibilityID, ExpirationType: in.ExpirationType,
		Duration: in.Duration, RequestorID: c.ObjectID, Created: now}
	policy, err := s.Policy(ctx, in.Scope, role.ID)
	if err != nil {
		return Request{}, err
	}
	rules := policy.evaluation()

	var groups []string
	if self {
		if groups, err = s.dir.GroupsOf(ctx, c.ObjectID); err != nil {
			return Request{}, err
		}
	}
	var failed []string
	needs := func(enabled []string) {
		if slices.Contains(enabled, "Justification") && strings.TrimSpace(in.Justification) == "" {
			failed = append(failed, "JustificationRule")
		}
		if slices.Contains(enabled, "Ticketing") && (in.TicketNumber == "" || in.TicketSystem == "") {
			failed = append(failed, "TicketingRule")
		}
		if slices.Contains(enabled, "MultiFactorAuthentication") && !c.MFA {
			failed = append(failed, "MfaRule")
		}
	}
	expiration := func(r expirationRule, start, end time.Time) {
		switch {
		case end.IsZero() && r.Required:
			failed = append(failed, "ExpirationRule")
		case !end.IsZero() && r.Max > 0 && end.Sub(start) > r.Max:
			failed = append(failed, "ExpirationRule")
		}
	}
	var out Request
	err = s.store.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.GetObject(ctx, kindRequest, req.ID); err == nil {
			return fault.Errorf(fault.Conflict, "RoleAssignmentRequestExists", "A request named '%s' already exists at this scope.", in.Name)
		}
		scheds, err := listSchedules(ctx, tx)
		if err != nil {
			return err
		}
		// live finds the schedules in force of this principal, role and
		// level at exactly this scope.
		live := func(level string) []Schedule {
			var out []Schedule
			for _, x := range scheds {
				if x.Level == level && x.PrincipalID == p.ID && x.RoleID == role.ID && strings.EqualFold(x.Scope, in.Scope) && x.Live(now) {
					out = append(out, x)
				}
			}
			return out
		}
		switch {
		case in.RequestType == AdminAssign:
			var start, end time.Time
			if in.Level == Eligibility {
				if start, end, err = s.schedule(in, now, 0); err != nil {
					return err
				}
				expiration(rules.adminEligibilityExpiry, start, end)
				needs(rules.adminEligibilityNeeds)
			} else {
				if start, end, err = s.schedule(in, now, 0); err != nil {
					return err
				}
				expiration(rules.adminAssignmentExpiry, start, end)
				needs(rules.adminAssignmentNeeds)
			}
			if len(failed) > 0 {
				return PolicyFailed(failed)
			}
			if len(live(in.Level)) > 0 {
				return fault.Errorf(fault.Invalid, "RoleAssignmentExists", "The role assignment already exists.")
			}
			req.Start, req.End = start, end
			typ := ""
			if in.Level == Assignment {
				typ = Assigned
			}
			return s.provision(ctx, tx, &req, typ, "", dry, now)
		case in.RequestType == AdminRemove || in.RequestType == SelfDeactivate:
			found := live(in.Level)
			if in.RequestType == SelfDeactivate {
				found = slices.DeleteFunc(found, func(x Schedule) bool { return x.AssignmentType != Activated })
			}
			if len(found) == 0 {
				return fault.Errorf(fault.Invalid, "RoleAssignmentDoesNotExist", "The Role assignment does not exist.")
			}
			req.Status, req.Start, req.TargetScheduleID = StatusRevoked, now, found[0].ID
			if dry {
				req.Status = StatusGranted
				return nil
			}
			for _, x := range found {
				if err := s.end(ctx, tx, x, now); err != nil {
					return err
				}
			}
			return putRequest(ctx, tx, req)
		default: // SelfActivate
			elig := s.eligibility(scheds, append([]string{c.ObjectID}, groups...), role.ID, in.Scope, in.LinkedEligibilityID, now)
			if elig == nil {
				failed = append(failed, "EligibilityRule")
			}
			start, end, err := s.schedule(in, now, rules.activationExpiry.Max)
			if err != nil {
				return err
			}
			if start.Before(now) {
				start = now // an activation starts no earlier than it is made
			}
			expiration(rules.activationExpiry, start, end)
			en := rules.activationNeeds
			if rules.approval.Required && rules.approval.JustificationRequired {
				en = append(slices.Clone(en), "Justification")
			}
			needs(en)
			if len(failed) > 0 {
				slices.Sort(failed)
				return PolicyFailed(slices.Compact(failed))
			}
			if elig != nil && !elig.End.IsZero() && end.After(elig.End) {
				end = elig.End // an activation does not outlive its eligibility
			}
			if len(live(Assignment)) > 0 {
				return fault.Errorf(fault.Invalid, "RoleAssignmentExists", "The role assignment already exists.")
			}
			req.Start, req.End, req.LinkedEligibilityID = start, end, elig.ID
			if rules.approval.Required {
				req.Status, req.ApprovalID, req.Approvers = StatusPendingApproval, req.Name, rules.approval.Approvers
				req.ApprovalStageID = req.Name
				if dry {
					req.Status, req.ApprovalID = StatusPendingEvaluation, ""
					return nil
				}
				return putRequest(ctx, tx, req)
			}
			return s.provision(ctx, tx, &req, Activated, elig.ID, dry, now)
		}
	})
	if err != nil {
		return Request{}, err
	}
	out = req
	if !dry {
		s.reported(ctx, out)
	}
	return out, nil
}

// eligibility finds an eligibility in force of one of principals for role
// at scope or above it (the one linked, when a link is given).
func (s *Service) eligibility(scheds []Schedule, principals []string, role, scope, linked string, now time.Time) *Schedule {
	for i := range scheds {
		x := &scheds[i]
		if x.Level != Eligibility || x.RoleID != role || !slices.Contains(principals, x.PrincipalID) || !covers(x.Scope, scope) || !x.Live(now) {
			continue
		}
		if linked != "" && !strings.EqualFold(lastSegment(linked), x.Name) {
			continue
		}
		return x
	}
	return nil
}

// provision makes the schedule of a granted request (and, for an active
// assignment, the role assignment in force), and stores the request.
func (s *Service) provision(ctx context.Context, tx store.Tx, req *Request, typ, linked string, dry bool, now time.Time) error {
	name := uuid.NewString()
	sc := Schedule{ID: ObjectID(req.Scope, req.Level, "Schedules", name), Name: name, Level: req.Level, Scope: req.Scope,
		RoleID: req.RoleID, PrincipalID: req.PrincipalID, PrincipalType: req.PrincipalType, AssignmentType: typ, RequestID: req.ID,
		LinkedEligibilityID: linked, Start: req.Start, End: req.End, Created: now, Updated: now, Condition: req.Condition}
	req.TargetScheduleID, req.Status = sc.ID, StatusProvisioned
	if dry {
		req.Status, req.TargetScheduleID = StatusGranted, ""
		return nil
	}
	if req.Level == Assignment {
		a := armrbac.Assignment{Name: uuid.NewString(), Scope: req.Scope, RoleID: req.RoleID, PrincipalID: req.PrincipalID,
			PrincipalType: req.PrincipalType, Created: now, Start: req.Start, End: req.End}
		a.ID = armrbac.AssignmentID(a.Scope, a.Name)
		if err := armrbac.AssignTx(ctx, tx, a); err != nil {
			if fault.KindOf(err) == fault.Conflict {
				return fault.Errorf(fault.Invalid, "RoleAssignmentExists", "The role assignment already exists.")
			}
			return err
		}
		sc.OriginAssignmentID = a.ID
	}
	if err := putSchedule(ctx, tx, sc); err != nil {
		return err
	}
	return putRequest(ctx, tx, *req)
}

// end ends a schedule now: its role assignment goes, and the schedule is
// kept with its end, no longer listed.
func (s *Service) end(ctx context.Context, tx store.Tx, x Schedule, now time.Time) error {
	if x.OriginAssignmentID != "" {
		if err := armrbac.DeleteTx(ctx, tx, x.OriginAssignmentID); err != nil {
			return err
		}
	}
	x.End, x.Updated = now, now
	return putSchedule(ctx, tx, x)
}

func putRequest(ctx context.Context, tx store.Tx, r Request) error {
	data, _ := json.Marshal(r)
	return tx.PutObject(ctx, &store.Object{Kind: kindRequest, ID: r.ID, Data: data})
}

func putSchedule(ctx context.Context, tx store.Tx, x Schedule) error {
	data, _ := json.Marshal(x)
	return tx.PutObject(ctx, &store.Object{Kind: kindSchedule, ID: x.ID, Data: data})
}

func listOf[T any](ctx context.Context, tx store.Tx, kind string) ([]T, error) {
	objs, err := tx.ListObjects(ctx, kind, "")
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		var v T
		if err := json.Unmarshal(o.Data, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func listSchedules(ctx context.Context, tx store.Tx) ([]Schedule, error) {
	return listOf[Schedule](ctx, tx, kindSchedule)
}

// Filter selects requests, schedules or instances, as ARM's $filter does.
type Filter struct {
	// AtScope: the scope and its ancestors only (otherwise also below).
	AtScope bool
	// Principal: one principal's own rows.
	Principal string
	// AssignedTo: rows of these principals (a user and its groups).
	AssignedTo []string
	// Requestor: requests this principal made.
	Requestor string
	// Role: one role (GUID).
	Role string
}

func (f Filter) match(scope, principal, role, requestor, at string) bool {
	if !covers(scope, at) && (f.AtScope || !covers(at, scope)) {
		return false
	}
	if f.Principal != "" && !strings.EqualFold(principal, f.Principal) {
		return false
	}
	if f.AssignedTo != nil && !slices.ContainsFunc(f.AssignedTo, func(p string) bool { return strings.EqualFold(p, principal) }) {
		return false
	}
	if f.Requestor != "" && !strings.EqualFold(requestor, f.Requestor) {
		return false
	}
	return f.Role == "" || strings.EqualFold(lastSegment(f.Role), role)
}

// Requests lists the requests of level that f selects at scope, oldest first.
func (s *Service) Requests(ctx context.Context, level, scope string, f Filter) ([]Request, error) {
	var all []Request
	err := s.store.View(ctx, func(tx store.Tx) (err error) { all, err = listOf[Request](ctx, tx, kindRequest); return err })
	if err != nil {
		return nil, err
	}
	out := []Request{}
	now := s.now()
	for _, r := range all {
		r.settle(now)
		if r.Level == level && f.match(r.Scope, r.PrincipalID, r.RoleID, r.RequestorID, NormalizeScope(scope)) {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// GetRequest returns the request with ARM id id.
func (s *Service) GetRequest(ctx context.Context, id string) (Request, error) {
	var r Request
	err := s.store.View(ctx, func(tx store.Tx) error {
		o, err := tx.GetObject(ctx, kindRequest, id)
		if err != nil {
			return err
		}
		return json.Unmarshal(o.Data, &r)
	})
	if err != nil {
		return Request{}, notFound("request", id, err)
	}
	r.settle(s.now())
	return r, nil
}

func notFound(what, id string, err error) error {
	if fault.KindOf(err) == fault.NotFound || strings.Contains(err.Error(), "not found") {
		return fault.Errorf(fault.NotFound, "ResourceNotFound", "The %s '%s' could not be found.", what, lastSegment(id))
	}
	return err
}

// Schedules lists the schedules of level in force or to come that f
// selects at scope; instances are the ones in force now.
func (s *Service) Schedules(ctx context.Context, level, scope string, f Filter, instances bool) ([]Schedule, error) {
	now := s.now()
	var all []Schedule
	err := s.store.View(ctx, func(tx store.Tx) (err error) { all, err = listSchedules(ctx, tx); return err })
	if err != nil {
		return nil, err
	}
	out := []Schedule{}
	for _, x := range all {
		if x.Level != level || (!x.End.IsZero() && !now.Before(x.End)) || (instances && now.Before(x.Start)) {
			continue
		}
		if f.match(x.Scope, x.PrincipalID, x.RoleID, "", NormalizeScope(scope)) {
			out = append(out, x)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// GetSchedule returns the schedule of level named name at scope, if it is
// in force or to come.
func (s *Service) GetSchedule(ctx context.Context, level, scope, name string) (Schedule, error) {
	id := ObjectID(NormalizeScope(scope), level, "Schedules", name)
	var x Schedule
	err := s.store.View(ctx, func(tx store.Tx) error {
		o, err := tx.GetObject(ctx, kindSchedule, id)
		if err != nil {
			return err
		}
		return json.Unmarshal(o.Data, &x)
	})
	if err == nil && x.Level == level && (x.End.IsZero() || s.now().Before(x.End)) {
		return x, nil
	}
	if err == nil {
		err = store.ErrNotFound
	}
	return Schedule{}, notFound("schedule", id, err)
}

// Cancel cancels a request waiting for approval.
func (s *Service) Cancel(ctx context.Context, id, caller string, admin bool) error {
	var canceled Request
	err := s.store.Update(ctx, func(tx store.Tx) error {
		o, err := tx.GetObject(ctx, kindRequest, id)
		if err != nil {
			return notFound("request", id, err)
		}
		var r Request
		if err := json.Unmarshal(o.Data, &r); err != nil {
			return err
		}
		if !admin && !strings.EqualFold(r.RequestorID, caller) {
			return armrbac.ErrDenied.With("The client '%s' may cancel only its own requests.", caller)
		}
		r.settle(s.now())
		if r.Status != StatusPendingApproval {
			return fault.Errorf(fault.Invalid, "InvalidRequestState", "Only a request waiting for approval can be canceled; this one is %s.", r.Status)
		}
		r.Status = StatusCanceled
		canceled = r
		return putRequest(ctx, tx, r)
	})
	if err == nil {
		s.requestEvent(pim.EventApprovalDecided, canceled, "Canceled")
	}
	return err
}

// Decide settles an activation waiting for approval: approver approves
// (the assignment is made) or denies it. Only a listed approver (or a
// member of a listed group) may, never the requester.
//
// An approval is judged again at the decision, as the request was at its
// submission: a request that waited longer than ApprovalWindow becomes
// TimedOut (409 ApprovalAlreadyDecided); one whose linked eligibility is
// no longer in force for its principal (or a group of it) at its scope or
// above becomes Failed with no access (400
// RoleAssignmentRequestPolicyValidationFailed ["EligibilityRule"]). The
// access granted starts at the decision, keeps the requested span, and
// ends no later than the eligibility nor past the policy's maximum
// activation duration as it is now.
func (s *Service) Decide(ctx context.Context, approvalID, stageID, approver string, approve bool, justification string) (Request, error) {
	now := s.now().UTC()
	groups, err := s.dir.GroupsOf(ctx, approver)
	if err != nil {
		return Request{}, err
	}
	mine := append([]string{approver}, groups...)
	// The request's target, to look up its policy and its principal's
	// groups outside the transaction (they do not change).
	var target *Request
	if err := s.store.View(ctx, func(tx store.Tx) (err error) { target, err = findApproval(ctx, tx, approvalID); return err }); err != nil {
		return Request{}, err
	}
	policy, err := s.Policy(ctx, target.Scope, target.RoleID)
	if err != nil {
		return Request{}, err
	}
	rules := policy.evaluation()
	principals := []string{target.PrincipalID}
	if pg, err := s.dir.GroupsOf(ctx, target.PrincipalID); err == nil {
		principals = append(principals, pg...)
	}
	var out Request
	var refused error // the request ended (TimedOut, Failed): stored, then answered
	err = s.store.Update(ctx, func(tx store.Tx) error {
		refused = nil
		r, err := findApproval(ctx, tx, approvalID)
		if err != nil {
			return err
		}
		if stageID != "" && !strings.EqualFold(stageID, r.ApprovalStageID) {
			return fault.Errorf(fault.NotFound, "ResourceNotFound", "The approval stage '%s' could not be found.", stageID)
		}
		if !slices.ContainsFunc(r.Approvers, func(a string) bool { return slices.Contains(mine, a) }) || strings.EqualFold(r.PrincipalID, approver) {
			return armrbac.ErrDenied.With("The client '%s' is not an approver of this request.", approver)
		}
		if r.settle(now); r.Status == StatusTimedOut {
			refused = fault.Errorf(fault.Conflict, "ApprovalAlreadyDecided", "The request is %s, no longer waiting for approval.", r.Status)
			out = *r
			return putRequest(ctx, tx, *r)
		}
		if r.Status != StatusPendingApproval {
			return fault.Errorf(fault.Conflict, "ApprovalAlreadyDecided", "The request is %s, no longer waiting for approval.", r.Status)
		}
		r.ReviewedBy, r.ReviewJustification, r.Reviewed = approver, justification, now
		if p, err := tx.GetPrincipal(ctx, approver); err == nil {
			r.ReviewerType, r.ReviewerName = p.Kind, p.DisplayName
		}
		if !approve {
			r.ReviewResult, r.Status = "Deny", StatusDenied
			out = *r
			return putRequest(ctx, tx, *r)
		}
		r.ReviewResult = "Approve"
		fail := func(rule string) error {
			r.Status = StatusFailed
			refused = PolicyFailed([]string{rule})
			out = *r
			return putRequest(ctx, tx, *r)
		}
		scheds, err := listSchedules(ctx, tx)
		if err != nil {
			return err
		}
		elig := s.eligibility(scheds, principals, r.RoleID, r.Scope, r.LinkedEligibilityID, now)
		if elig == nil || r.LinkedEligibilityID == "" {
			return fail("EligibilityRule")
		}
		if r.Start.Before(now) {
			if !r.End.IsZero() {
				r.End = r.End.Add(now.Sub(r.Start))
			}
			r.Start = now
		}
		if limit := rules.activationExpiry.Max; limit > 0 && (r.End.IsZero() || r.End.Sub(r.Start) > limit) {
			r.End = r.Start.Add(limit)
		}
		if !elig.End.IsZero() && (r.End.IsZero() || r.End.After(elig.End)) {
			r.End = elig.End // an activation does not outlive its eligibility
		}
		if r.End.IsZero() && rules.activationExpiry.Required {
			return fail("ExpirationRule")
		}
		if !r.End.IsZero() && !r.End.After(r.Start) {
			return fail("EligibilityRule")
		}
		if err := s.provision(ctx, tx, r, Activated, r.LinkedEligibilityID, false, now); err != nil {
			return err
		}
		out = *r
		return nil
	})
	if err != nil {
		return Request{}, err
	}
	if refused != nil {
		return Request{}, refused
	}
	s.requestEvent(pim.EventApprovalDecided, out, out.ReviewResult)
	s.reported(ctx, out)
	return out, nil
}

func findApproval(ctx context.Context, tx store.Tx, approvalID string) (*Request, error) {
	all, err := listOf[Request](ctx, tx, kindRequest)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if all[i].ApprovalID != "" && strings.EqualFold(all[i].ApprovalID, approvalID) {
			return &all[i], nil
		}
	}
	return nil, fault.Errorf(fault.NotFound, "ResourceNotFound", "The approval '%s' could not be found.", approvalID)
}

// Approval returns the request an approval is about.
func (s *Service) Approval(ctx context.Context, approvalID string) (Request, error) {
	var r *Request
	err := s.store.View(ctx, func(tx store.Tx) (err error) { r, err = findApproval(ctx, tx, approvalID); return err })
	if err != nil {
		return Request{}, err
	}
	r.settle(s.now())
	return *r, nil
}

// Approvals lists the requests that used or wait for an approval.
func (s *Service) Approvals(ctx context.Context) ([]Request, error) {
	var all []Request
	err := s.store.View(ctx, func(tx store.Tx) (err error) { all, err = listOf[Request](ctx, tx, kindRequest); return err })
	now := s.now()
	for i := range all {
		all[i].settle(now)
	}
	return slices.DeleteFunc(all, func(r Request) bool { return r.ApprovalID == "" }), err
}

// Governed reports whether role is PIM-governed at scope: some
// eligibility for it exists there or above.
func (s *Service) Governed(ctx context.Context, role, scope string) (bool, error) {
	now := s.now()
	var all []Schedule
	err := s.store.View(ctx, func(tx store.Tx) (err error) { all, err = listSchedules(ctx, tx); return err })
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(all, func(x Schedule) bool {
		return x.Level == Eligibility && x.RoleID == lastSegment(role) && covers(x.Scope, scope) && x.Live(now)
	}), nil
}

func (r Request) String() string { return fmt.Sprintf("%s %s %s", r.RequestType, r.RoleID, r.Status) }
