package arm

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/odata"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/armrbac"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/pim/armroles"
)

// PIM for Azure roles (api-version 2020-10-01, as armauthorization/v2
// sends; approvals 2021-01-01-preview). Requests decide their own right:
// Admin* requests need Microsoft.Authorization/roleAssignments/write at
// the scope, Self* requests are the caller's own; lists show what is the
// caller's (or its groups'), what it asked for, and everything at scopes
// where it may read role assignments.

const assignRight = "Microsoft.Authorization/roleAssignments/write"
const readAssignments = "Microsoft.Authorization/roleAssignments/read"

// pimOperations are the PIM rows under {scope}/providers/Microsoft.Authorization/.
func (a *API) pimOperations() []route.Op {
	get, put, patch, post := http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodPost
	// self rows authorize in the handler.
	self := func(method, pattern, name string, h func(http.ResponseWriter, *http.Request) error) route.Op {
		return route.Op{Name: name, Method: method, Pattern: pattern, Scope: a.authzScope, Handle: h}
	}
	op := func(method, pattern, action string, h func(http.ResponseWriter, *http.Request) error) route.Op {
		return route.Op{Name: action, Method: method, Pattern: pattern, Action: action, Scope: a.authzScope, Handle: h}
	}
	var ops []route.Op
	for _, level := range []string{armroles.Eligibility, armroles.Assignment} {
		reqs := "role" + level + "ScheduleRequests"
		act := "Microsoft.Authorization/" + reqs
		ops = append(ops,
			self(get, reqs, act+"/read", a.listPIMRequests(level)),
			self(get, reqs+"/{name}", act+"/read", a.getPIMRequest(level)),
			self(put, reqs+"/{name}", act+"/write", a.putPIMRequest(level, false)),
			self(post, reqs+"/{name}/validate", act+"/validate/action", a.putPIMRequest(level, true)),
			self(post, reqs+"/{name}/cancel", act+"/cancel/action", a.cancelPIMRequest(level)),
		)
		for _, instances := range []bool{false, true} {
			coll := "role" + level + "Schedules"
			if instances {
				coll = "role" + level + "ScheduleInstances"
			}
			ops = append(ops,
				self(get, coll, "Microsoft.Authorization/"+coll+"/read", a.listPIMSchedules(level, instances)),
				self(get, coll+"/{name}", "Microsoft.Authorization/"+coll+"/read", a.getPIMSchedule(level, instances)))
		}
	}
	const approvals = "roleAssignmentApprovals"
	ops = append(ops,
		op(get, "roleManagementPolicies", "Microsoft.Authorization/roleManagementPolicies/read", a.listPolicies),
		op(get, "roleManagementPolicies/{name}", "Microsoft.Authorization/roleManagementPolicies/read", a.getPolicy),
		op(patch, "roleManagementPolicies/{name}", "Microsoft.Authorization/roleManagementPolicies/write", a.patchPolicy),
		op(get, "roleManagementPolicyAssignments", "Microsoft.Authorization/roleManagementPolicyAssignments/read", a.listPolicyAssignments),
		op(get, "roleManagementPolicyAssignments/{name}", "Microsoft.Authorization/roleManagementPolicyAssignments/read", a.getPolicyAssignment),
		self(get, approvals, "Microsoft.Authorization/roleAssignmentApprovals/read", a.listApprovals),
		self(get, approvals+"/{id}", "Microsoft.Authorization/roleAssignmentApprovals/read", a.getApproval),
	)
	for _, stages := range []string{"stages", "steps"} {
		ops = append(ops,
			self(get, approvals+"/{id}/"+stages, "Microsoft.Authorization/roleAssignmentApprovals/read", a.listStages),
			self(get, approvals+"/{id}/"+stages+"/{stage}", "Microsoft.Authorization/roleAssignmentApprovals/read", a.getStage),
			self(patch, approvals+"/{id}/"+stages+"/{stage}", "Microsoft.Authorization/roleAssignmentApprovals/write", a.decideStage),
			self(put, approvals+"/{id}/"+stages+"/{stage}", "Microsoft.Authorization/roleAssignmentApprovals/write", a.decideStage))
	}
	return ops
}

// pimScope is the request path's scope, spelled one way.
func (a *API) pimScope(r *http.Request) (string, error) {
	scope := armroles.NormalizeScope(a.authzScope(r))
	if !covers(a.subscriptionID(), scope) {
		return "", fault.Errorf(fault.NotFound, "SubscriptionNotFound", "The scope '%s' is not in this subscription.", scope)
	}
	return scope, nil
}

func covers(scope, resource string) bool {
	scope, resource = strings.ToLower(scope), strings.ToLower(resource)
	return scope == resource || strings.HasPrefix(resource, scope+"/")
}

// authorizeAt checks action at scope for the caller and records the
// decision, as the pipeline does for rows with an action.
func (a *API) authorizeAt(r *http.Request, action, scope string) error {
	c, _ := identity.FromContext(r.Context())
	g, err := a.rbac.Authorized(r.Context(), c, action, scope)
	rec := route.RecordOf(r.Context())
	rec.Action, rec.Scope = action, scope
	rec.Decision = &route.Decision{Allowed: g.Allowed, AssignmentID: g.AssignmentID, RoleID: g.RoleID}
	return err
}

// --- wire shapes ---

type pimTicket struct {
	TicketNumber string `json:"ticketNumber,omitempty"`
	TicketSystem string `json:"ticketSystem,omitempty"`
}

type pimExpiration struct {
	Type        string  `json:"type,omitempty"`
	Duration    *string `json:"duration"`
	EndDateTime *string `json:"endDateTime"`
}

type pimScheduleInfo struct {
	StartDateTime *string        `json:"startDateTime"`
	Expiration    *pimExpiration `json:"expiration,omitempty"`
}

type pimRequestIn struct {
	Properties struct {
		PrincipalID                     string           `json:"principalId"`
		RoleDefinitionID                string           `json:"roleDefinitionId"`
		RequestType                     string           `json:"requestType"`
		Justification                   string           `json:"justification"`
		LinkedRoleEligibilityScheduleID string           `json:"linkedRoleEligibilityScheduleId"`
		Condition                       string           `json:"condition"`
		ConditionVersion                string           `json:"conditionVersion"`
		TicketInfo                      *pimTicket       `json:"ticketInfo"`
		ScheduleInfo                    *pimScheduleInfo `json:"scheduleInfo"`
	} `json:"properties"`
}

type pimRef struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	Type        string `json:"type"`
	Email       string `json:"email,omitempty"`
}

type pimExpanded struct {
	Principal      pimRef `json:"principal"`
	RoleDefinition pimRef `json:"roleDefinition"`
	Scope          pimRef `json:"scope"`
}

type pimRequestProps struct {
	Scope                                   string           `json:"scope"`
	RoleDefinitionID                        string           `json:"roleDefinitionId"`
	PrincipalID                             string           `json:"principalId"`
	PrincipalType                           string           `json:"principalType"`
	RequestType                             string           `json:"requestType"`
	Status                                  string           `json:"status"`
	ApprovalID                              *string          `json:"approvalId"`
	ScheduleInfo                            *pimScheduleInfo `json:"scheduleInfo,omitempty"`
	TargetRoleAssignmentScheduleID          *string          `json:"targetRoleAssignmentScheduleId,omitempty"`
	TargetRoleAssignmentScheduleInstanceID  *string          `json:"targetRoleAssignmentScheduleInstanceId,omitempty"`
	TargetRoleEligibilityScheduleID         *string          `json:"targetRoleEligibilityScheduleId,omitempty"`
	TargetRoleEligibilityScheduleInstanceID *string          `json:"targetRoleEligibilityScheduleInstanceId,omitempty"`
	LinkedRoleEligibilityScheduleID         *string          `json:"linkedRoleEligibilityScheduleId,omitempty"`
	Justification                           string           `json:"justification,omitempty"`
	TicketInfo                              *pimTicket       `json:"ticketInfo,omitempty"`
	Condition                               *string          `json:"condition"`
	ConditionVersion                        *string          `json:"conditionVersion"`
	CreatedOn                               string           `json:"createdOn"`
	RequestorID                             string           `json:"requestorId"`
	ExpandedProperties                      pimExpanded      `json:"expandedProperties"`
}

type pimRequestOut struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Properties pimRequestProps `json:"properties"`
}

type pimScheduleProps struct {
	Scope                                   string      `json:"scope"`
	RoleDefinitionID                        string      `json:"roleDefinitionId"`
	PrincipalID                             string      `json:"principalId"`
	PrincipalType                           string      `json:"principalType"`
	RoleAssignmentScheduleRequestID         *string     `json:"roleAssignmentScheduleRequestId,omitempty"`
	RoleEligibilityScheduleRequestID        *string     `json:"roleEligibilityScheduleRequestId,omitempty"`
	RoleAssignmentScheduleID                *string     `json:"roleAssignmentScheduleId,omitempty"`
	RoleEligibilityScheduleID               *string     `json:"roleEligibilityScheduleId,omitempty"`
	LinkedRoleEligibilityScheduleID         *string     `json:"linkedRoleEligibilityScheduleId,omitempty"`
	LinkedRoleEligibilityScheduleInstanceID *string     `json:"linkedRoleEligibilityScheduleInstanceId,omitempty"`
	OriginRoleAssignmentID                  *string     `json:"originRoleAssignmentId,omitempty"`
	AssignmentType                          string      `json:"assignmentType,omitempty"`
	MemberType                              string      `json:"memberType"`
	Status                                  string      `json:"status"`
	StartDateTime                           string      `json:"startDateTime"`
	EndDateTime                             *string     `json:"endDateTime"`
	Condition                               *string     `json:"condition"`
	ConditionVersion                        *string     `json:"conditionVersion"`
	CreatedOn                               string      `json:"createdOn"`
	UpdatedOn                               string      `json:"updatedOn,omitempty"`
	ExpandedProperties                      pimExpanded `json:"expandedProperties"`
}

type pimScheduleOut struct {
	ID         string           `json:"id"`
	Name       string           `json:"name"`
	Type       string           `json:"type"`
	Properties pimScheduleProps `json:"properties"`
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func optTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := rfc3339(t)
	return &s
}

func opt(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (a *API) expanded(ctx context.Context, scope, roleID, principalID, principalType string) pimExpanded {
	e := pimExpanded{RoleDefinition: pimRef{ID: a.definitionID(roleID), Type: "BuiltInRole"},
		Principal: pimRef{ID: principalID, Type: principalType}, Scope: pimRef{ID: scope, Type: scopeType(scope)}}
	if role, ok := armrbac.RoleByID(roleID); ok {
		e.RoleDefinition.DisplayName = role.Name
	}
	if p, err := a.dir.Get(ctx, principalID); err == nil {
		e.Principal.DisplayName, e.Principal.Email = p.DisplayName, p.UPN
	}
	e.Scope.DisplayName = scope[strings.LastIndex(scope, "/")+1:]
	return e
}

func scopeType(scope string) string {
	switch strings.Count(strings.Trim(scope, "/"), "/") {
	case 1:
		return "subscription"
	case 3:
		return "resourcegroup"
	}
	return "resource"
}

func (a *API) requestOut(ctx context.Context, q armroles.Request) pimRequestOut {
	o := pimRequestOut{ID: q.ID, Name: q.Name, Type: "Microsoft.Authorization/Role" + q.Level + "ScheduleRequests"}
	p := &o.Properties
	p.Scope, p.RoleDefinitionID, p.PrincipalID, p.PrincipalType = q.Scope, a.definitionID(q.RoleID), q.PrincipalID, q.PrincipalType
	p.RequestType, p.Status, p.ApprovalID, p.Justification = q.RequestType, q.Status, opt(q.ApprovalID), q.Justification
	p.Condition, p.ConditionVersion, p.CreatedOn, p.RequestorID = opt(q.Condition), opt(q.ConditionVersion), rfc3339(q.Created), q.RequestorID
	if q.TicketNumber != "" || q.TicketSystem != "" {
		p.TicketInfo = &pimTicket{q.TicketNumber, q.TicketSystem}
	}
	if q.RequestType == armroles.AdminAssign || q.RequestType == armroles.SelfActivate {
		exp := &pimExpiration{Type: armroles.NoExpiration}
		if !q.End.IsZero() {
			exp.Type, exp.EndDateTime = armroles.AfterDateTime, optTime(q.End)
			if q.ExpirationType == armroles.AfterDuration {
				exp.Type, exp.Duration, exp.EndDateTime = armroles.AfterDuration, opt(q.Duration), nil
			}
		}
		p.ScheduleInfo = &pimScheduleInfo{StartDateTime: optTime(q.Start), Expiration: exp}
	}
	if q.Level == armroles.Eligibility {
		p.TargetRoleEligibilityScheduleID = opt(q.TargetScheduleID)
		p.TargetRoleEligibilityScheduleInstanceID = opt(instanceOf(q.TargetScheduleID))
	} else {
		p.TargetRoleAssignmentScheduleID = opt(q.TargetScheduleID)
		p.TargetRoleAssignmentScheduleInstanceID = opt(instanceOf(q.TargetScheduleID))
		p.LinkedRoleEligibilityScheduleID = opt(q.LinkedEligibilityID)
	}
	p.ExpandedProperties = a.expanded(ctx, q.Scope, q.RoleID, q.PrincipalID, q.PrincipalType)
	return o
}

// instanceOf is the id of a schedule's instance: the same name in the
// instances collection.
func instanceOf(scheduleID string) string {
	if scheduleID == "" {
		return ""
	}
	return strings.Replace(scheduleID, "Schedules/", "ScheduleInstances/", 1)
}

func (a *API) scheduleOut(ctx context.Context, x armroles.Schedule, instance bool, scope string) pimScheduleOut {
	what := "Schedules"
	if instance {
		what = "ScheduleInstances"
	}
	o := pimScheduleOut{ID: armroles.ObjectID(x.Scope, x.Level, what, x.Name), Name: x.Name, Type: "Microsoft.Authorization/Role" + x.Level + what}
	p := &o.Properties
	p.Scope, p.RoleDefinitionID, p.PrincipalID, p.PrincipalType = x.Scope, a.definitionID(x.RoleID), x.PrincipalID, x.PrincipalType
	p.Status, p.StartDateTime, p.EndDateTime, p.CreatedOn = armroles.StatusProvisioned, rfc3339(x.Start), optTime(x.End), rfc3339(x.Created)
	p.Condition, p.ConditionVersion = opt(x.Condition), nil
	p.MemberType = "Direct"
	if !strings.EqualFold(x.Scope, scope) && covers(x.Scope, scope) {
		p.MemberType = "Inherited"
	}
	if x.PrincipalType == "Group" {
		p.MemberType = "Group"
	}
	if !instance {
		p.UpdatedOn = rfc3339(x.Updated)
	}
	if x.Level == armroles.Eligibility {
		if instance {
			p.RoleEligibilityScheduleID = opt(x.ID)
		} else {
			p.RoleEligibilityScheduleRequestID = opt(x.RequestID)
		}
	} else {
		p.AssignmentType = x.AssignmentType
		p.LinkedRoleEligibilityScheduleID = opt(x.LinkedEligibilityID)
		if instance {
			p.RoleAssignmentScheduleID = opt(x.ID)
			p.OriginRoleAssignmentID = opt(x.OriginAssignmentID)
			p.LinkedRoleEligibilityScheduleInstanceID = opt(instanceOf(x.LinkedEligibilityID))
		} else {
			p.RoleAssignmentScheduleRequestID = opt(x.RequestID)
		}
	}
	p.ExpandedProperties = a.expanded(ctx, x.Scope, x.RoleID, x.PrincipalID, x.PrincipalType)
	return o
}

// --- requests ---

func parseTime(field string, s *string) (*time.Time, error) {
	if s == nil || *s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return nil, fault.Errorf(fault.Invalid, "InvalidScheduleInfo", "%s %q is not an RFC 3339 date and time", field, *s)
	}
	return &t, nil
}

func (a *API) pimInput(w http.ResponseWriter, r *http.Request, level, scope string) (armroles.Input, error) {
	var body json.RawMessage
	if err := httpx.ReadJSON(w, r, &body); err != nil {
		return armroles.Input{}, err
	}
	var req pimRequestIn
	if err := json.Unmarshal(body, &req); err != nil {
		return armroles.Input{}, fault.Invalidf("the request body does not have the shape of a role %s schedule request", strings.ToLower(level))
	}
	p := req.Properties
	in := armroles.Input{Name: r.PathValue("name"), Level: level, Scope: scope, RoleDefinitionID: p.RoleDefinitionID,
		PrincipalID: p.PrincipalID, RequestType: p.RequestType, Justification: p.Justification, Condition: p.Condition,
		ConditionVersion: p.ConditionVersion, LinkedEligibilityID: p.LinkedRoleEligibilityScheduleID}
	if p.TicketInfo != nil {
		in.TicketNumber, in.TicketSystem = p.TicketInfo.TicketNumber, p.TicketInfo.TicketSystem
	}
	if si := p.ScheduleInfo; si != nil {
		var err error
		if in.Start, err = parseTime("scheduleInfo.startDateTime", si.StartDateTime); err != nil {
			return in, err
		}
		if e := si.Expiration; e != nil {
			in.ExpirationType = e.Type
			if e.Duration != nil {
				in.Duration = *e.Duration
			}
			if in.End, err = parseTime("scheduleInfo.expiration.endDateTime", e.EndDateTime); err != nil {
				return in, err
			}
		}
	}
	return in, nil
}

func pimCaller(r *http.Request) (armroles.Caller, *identity.Caller) {
	c, _ := identity.FromContext(r.Context())
	return armroles.Caller{ObjectID: c.ObjectID, MFA: slices.Contains(c.AMR, "mfa")}, c
}

func (a *API) putPIMRequest(level string, validate bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		scope, err := a.pimScope(r)
		if err != nil {
			return err
		}
		in, err := a.pimInput(w, r, level, scope)
		if err != nil {
			return err
		}
		caller, c := pimCaller(r)
		if strings.HasPrefix(in.RequestType, "Admin") {
			if err := a.authorizeAt(r, assignRight, scope); err != nil {
				return err
			}
		} else {
			rec := route.RecordOf(r.Context())
			rec.Scope = scope
			rec.Decision = &route.Decision{Allowed: strings.EqualFold(in.PrincipalID, c.ObjectID)}
		}
		if validate {
			q, err := a.pim.Validate(r.Context(), caller, in)
			if err != nil {
				return err
			}
			httpx.WriteJSON(w, http.StatusOK, a.requestOut(r.Context(), q))
			return nil
		}
		q, err := a.pim.Submit(r.Context(), caller, in)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusCreated, a.requestOut(r.Context(), q))
		return nil
	}
}

// pimFilter parses a PIM list's $filter.
var (
	filterAsTarget    = regexp.MustCompile(`(?i)^asTarget\(\)$`)
	filterAsRequestor = regexp.MustCompile(`(?i)^(asRequestor|asCreatedBy)\(\)$`)
	filterAsApprover  = regexp.MustCompile(`(?i)^asApprover\(\)$`)
	filterAssignedTo  = regexp.MustCompile(`(?i)^assignedTo\('([^']*)'\)$`)
	filterRoleDef     = regexp.MustCompile(`(?i)^roleDefinitionId\s+eq\s+'([^']*)'$`)
)

type pimQuery struct {
	armroles.Filter
	approver bool
}

func (a *API) pimFilter(r *http.Request) (pimQuery, error) {
	var q pimQuery
	terms, err := odata.Terms(r.URL.Query().Get("$filter"))
	if err != nil {
		return q, err
	}
	assignedTo := func(id string) error {
		// An object id, as in Azure: not any string a caller makes up for
		// the directory to look up.
		if !guid.MatchString(id) {
			return fault.Errorf(fault.Invalid, "InvalidFilterInQueryString", "assignedTo('%.64s') names no object id", id)
		}
		groups, err := a.dir.GroupsOf(r.Context(), id)
		q.AssignedTo = append([]string{id}, groups...)
		return err
	}
	c, _ := identity.FromContext(r.Context())
	for _, t := range terms {
		switch {
		case filterAtScope.MatchString(t):
			q.AtScope = true
		case filterPrincipal.MatchString(t):
			q.Principal = filterPrincipal.FindStringSubmatch(t)[1]
		case filterAsTarget.MatchString(t):
			err = assignedTo(c.ObjectID)
		case filterAssignedTo.MatchString(t):
			err = assignedTo(filterAssignedTo.FindStringSubmatch(t)[1])
		case filterAsRequestor.MatchString(t):
			q.Requestor = c.ObjectID
		case filterAsApprover.MatchString(t):
			q.approver = true
		case filterRoleDef.MatchString(t):
			q.Role = filterRoleDef.FindStringSubmatch(t)[1]
		default:
			return q, fault.Errorf(fault.Invalid, "InvalidFilterInQueryString",
				"unsupported $filter %q: use atScope(), asTarget(), asRequestor(), assignedTo('{id}'), principalId eq '{id}' or roleDefinitionId eq '{id}'", t)
		}
		if err != nil {
			return q, err
		}
	}
	return q, nil
}

// pimVisible returns whether the caller may see a row of principal, made
// by requestor, at scope: its own (or its groups'), its request, or any at
// a scope where it may read role assignments.
func (a *API) pimVisible(r *http.Request) (func(scope, principal, requestor string) bool, error) {
	c, _ := identity.FromContext(r.Context())
	permits, err := a.rbac.Permits(r.Context(), c, readAssignments)
	if err != nil {
		return nil, err
	}
	groups, err := a.dir.GroupsOf(r.Context(), c.ObjectID)
	if err != nil {
		return nil, err
	}
	mine := append([]string{c.ObjectID}, groups...)
	return func(scope, principal, requestor string) bool {
		return slices.Contains(mine, principal) || strings.EqualFold(requestor, c.ObjectID) || permits(scope)
	}, nil
}

func (a *API) listPIMRequests(level string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		scope, err := a.pimScope(r)
		if err != nil {
			return err
		}
		q, err := a.pimFilter(r)
		if err != nil {
			return err
		}
		visible, err := a.pimVisible(r)
		if err != nil {
			return err
		}
		list, err := a.pim.Requests(r.Context(), level, scope, q.Filter)
		if err != nil {
			return err
		}
		c, _ := identity.FromContext(r.Context())
		out := []pimRequestOut{}
		for _, x := range list {
			if q.approver && !slices.Contains(x.Approvers, c.ObjectID) {
				continue
			}
			if visible(x.Scope, x.PrincipalID, x.RequestorID) || slices.Contains(x.Approvers, c.ObjectID) {
				out = append(out, a.requestOut(r.Context(), x))
			}
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
		return nil
	}
}

func (a *API) getPIMRequest(level string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		scope, err := a.pimScope(r)
		if err != nil {
			return err
		}
		x, err := a.pim.GetRequest(r.Context(), armroles.ObjectID(scope, level, "ScheduleRequests", r.PathValue("name")))
		if err != nil {
			return err
		}
		visible, err := a.pimVisible(r)
		if err != nil {
			return err
		}
		c, _ := identity.FromContext(r.Context())
		if x.Level != level || !visible(x.Scope, x.PrincipalID, x.RequestorID) && !slices.Contains(x.Approvers, c.ObjectID) {
			return fault.Errorf(fault.NotFound, "ResourceNotFound", "The request '%s' could not be found.", r.PathValue("name"))
		}
		httpx.WriteJSON(w, http.StatusOK, a.requestOut(r.Context(), x))
		return nil
	}
}

func (a *API) cancelPIMRequest(level string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		scope, err := a.pimScope(r)
		if err != nil {
			return err
		}
		c, _ := identity.FromContext(r.Context())
		admin := a.can(r, assignRight, scope)
		if err := a.pim.Cancel(r.Context(), armroles.ObjectID(scope, level, "ScheduleRequests", r.PathValue("name")), c.ObjectID, admin); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
}

// --- schedules and instances ---

func (a *API) listPIMSchedules(level string, instances bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		scope, err := a.pimScope(r)
		if err != nil {
			return err
		}
		q, err := a.pimFilter(r)
		if err != nil {
			return err
		}
		visible, err := a.pimVisible(r)
		if err != nil {
			return err
		}
		list, err := a.pim.Schedules(r.Context(), level, scope, q.Filter, instances)
		if err != nil {
			return err
		}
		out := []pimScheduleOut{}
		for _, x := range list {
			if visible(x.Scope, x.PrincipalID, "") {
				out = append(out, a.scheduleOut(r.Context(), x, instances, scope))
			}
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
		return nil
	}
}

func (a *API) getPIMSchedule(level string, instance bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		scope, err := a.pimScope(r)
		if err != nil {
			return err
		}
		x, err := a.pim.GetSchedule(r.Context(), level, scope, r.PathValue("name"))
		if err != nil {
			return err
		}
		visible, err := a.pimVisible(r)
		if err != nil {
			return err
		}
		if !visible(x.Scope, x.PrincipalID, "") || instance && !x.Live(time.Now()) && x.Start.After(time.Now()) {
			return fault.Errorf(fault.NotFound, "ResourceNotFound", "The schedule '%s' could not be found.", r.PathValue("name"))
		}
		httpx.WriteJSON(w, http.StatusOK, a.scheduleOut(r.Context(), x, instance, scope))
		return nil
	}
}

// --- policies ---

type pimPolicyProps struct {
	Scope                 string            `json:"scope"`
	DisplayName           string            `json:"displayName"`
	Description           string            `json:"description"`
	IsOrganizationDefault bool              `json:"isOrganizationDefault"`
	LastModifiedBy        *pimRef           `json:"lastModifiedBy"`
	LastModifiedDateTime  *string           `json:"lastModifiedDateTime"`
	Rules                 []json.RawMessage `json:"rules"`
	EffectiveRules        []json.RawMessage `json:"effectiveRules"`
	PolicyProperties      struct {
		Scope pimRef `json:"scope"`
	} `json:"policyProperties"`
}

type pimPolicyOut struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Properties pimPolicyProps `json:"properties"`
}

func (a *API) policyOut(p *armroles.Policy) pimPolicyOut {
	o := pimPolicyOut{ID: p.ID, Name: p.Name, Type: "Microsoft.Authorization/RoleManagementPolicies"}
	o.Properties.Scope, o.Properties.DisplayName, o.Properties.Description = p.Scope, "Default", "Default role management policy"
	o.Properties.Rules, o.Properties.EffectiveRules = p.Rules, p.Rules
	o.Properties.LastModifiedDateTime = optTime(p.Modified)
	if p.ModifiedBy != "" {
		o.Properties.LastModifiedBy = &pimRef{ID: p.ModifiedBy, DisplayName: p.ModifiedByName, Type: "User"}
	}
	o.Properties.PolicyProperties.Scope = pimRef{ID: p.Scope, DisplayName: p.Scope[strings.LastIndex(p.Scope, "/")+1:], Type: scopeType(p.Scope)}
	return o
}

func (a *API) listPolicies(w http.ResponseWriter, r *http.Request) error {
	scope, err := a.pimScope(r)
	if err != nil {
		return err
	}
	list, err := a.filteredPolicies(r, scope)
	if err != nil {
		return err
	}
	out := []pimPolicyOut{}
	for _, p := range list {
		out = append(out, a.policyOut(p))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

// filteredPolicies lists the scope's policies, narrowed by the request's
// roleDefinitionId filter when it has one; policies and their assignments
// are listed from the same rows.
func (a *API) filteredPolicies(r *http.Request, scope string) ([]*armroles.Policy, error) {
	q, err := a.pimFilter(r)
	if err != nil {
		return nil, err
	}
	list, err := a.pim.Policies(r.Context(), scope)
	if err != nil || q.Role == "" {
		return list, err
	}
	role := q.Role[strings.LastIndex(q.Role, "/")+1:]
	var out []*armroles.Policy
	for _, p := range list {
		if strings.EqualFold(p.RoleID, role) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (a *API) getPolicy(w http.ResponseWriter, r *http.Request) error {
	scope, err := a.pimScope(r)
	if err != nil {
		return err
	}
	p, err := a.pim.PolicyByName(r.Context(), scope, r.PathValue("name"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.policyOut(p))
	return nil
}

func (a *API) patchPolicy(w http.ResponseWriter, r *http.Request) error {
	scope, err := a.pimScope(r)
	if err != nil {
		return err
	}
	var body struct {
		Properties struct {
			Rules []json.RawMessage `json:"rules"`
		} `json:"properties"`
	}
	if err := httpx.ReadJSON(w, r, &body); err != nil {
		return err
	}
	c, _ := identity.FromContext(r.Context())
	p, err := a.pim.PatchPolicy(r.Context(), scope, r.PathValue("name"), body.Properties.Rules, c.ObjectID, c.Name)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.policyOut(p))
	return nil
}

type pimPolicyAssignmentOut struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		Scope                      string            `json:"scope"`
		RoleDefinitionID           string            `json:"roleDefinitionId"`
		PolicyID                   string            `json:"policyId"`
		EffectiveRules             []json.RawMessage `json:"effectiveRules"`
		PolicyAssignmentProperties struct {
			Scope          pimRef `json:"scope"`
			RoleDefinition pimRef `json:"roleDefinition"`
			Policy         struct {
				ID                   string  `json:"id"`
				LastModifiedBy       *pimRef `json:"lastModifiedBy"`
				LastModifiedDateTime *string `json:"lastModifiedDateTime"`
			} `json:"policy"`
		} `json:"policyAssignmentProperties"`
	} `json:"properties"`
}

func (a *API) policyAssignmentOut(p *armroles.Policy) pimPolicyAssignmentOut {
	var o pimPolicyAssignmentOut
	o.ID = p.Scope + "/providers/Microsoft.Authorization/roleManagementPolicyAssignments/" + p.AssignmentName()
	o.Name, o.Type = p.AssignmentName(), "Microsoft.Authorization/RoleManagementPolicyAssignment"
	pr := &o.Properties
	pr.Scope, pr.RoleDefinitionID, pr.PolicyID, pr.EffectiveRules = p.Scope, a.definitionID(p.RoleID), p.ID, p.Rules
	pp := &pr.PolicyAssignmentProperties
	pp.Scope = pimRef{ID: p.Scope, DisplayName: p.Scope[strings.LastIndex(p.Scope, "/")+1:], Type: scopeType(p.Scope)}
	pp.RoleDefinition = pimRef{ID: a.definitionID(p.RoleID), Type: "BuiltInRole"}
	if role, ok := armrbac.RoleByID(p.RoleID); ok {
		pp.RoleDefinition.DisplayName = role.Name
	}
	pp.Policy.ID, pp.Policy.LastModifiedDateTime = p.ID, optTime(p.Modified)
	if p.ModifiedBy != "" {
		pp.Policy.LastModifiedBy = &pimRef{ID: p.ModifiedBy, DisplayName: p.ModifiedByName, Type: "User"}
	}
	return o
}

func (a *API) listPolicyAssignments(w http.ResponseWriter, r *http.Request) error {
	scope, err := a.pimScope(r)
	if err != nil {
		return err
	}
	list, err := a.filteredPolicies(r, scope)
	if err != nil {
		return err
	}
	out := []pimPolicyAssignmentOut{}
	for _, p := range list {
		out = append(out, a.policyAssignmentOut(p))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (a *API) getPolicyAssignment(w http.ResponseWriter, r *http.Request) error {
	scope, err := a.pimScope(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	policy, role, ok := strings.Cut(name, "_")
	if ok {
		if p, err := a.pim.PolicyByName(r.Context(), scope, policy); err == nil && strings.EqualFold(p.RoleID, role) {
			httpx.WriteJSON(w, http.StatusOK, a.policyAssignmentOut(p))
			return nil
		}
	}
	return fault.Errorf(fault.NotFound, "RoleManagementPolicyAssignmentNotFound", "The role management policy assignment '%s' could not be found.", name)
}

// --- approvals (2021-01-01-preview) ---

type pimReviewer struct {
	PrincipalID       string `json:"principalId"`
	PrincipalType     string `json:"principalType"`
	PrincipalName     string `json:"principalName"`
	UserPrincipalName string `json:"userPrincipalName,omitempty"`
}

type pimStageOut struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		DisplayName      string       `json:"displayName"`
		Status           string       `json:"status"`
		AssignedToMe     bool         `json:"assignedToMe"`
		ReviewedBy       *pimReviewer `json:"reviewedBy"`
		ReviewedDateTime *string      `json:"reviewedDateTime"`
		ReviewResult     string       `json:"reviewResult"`
		Justification    string       `json:"justification"`
	} `json:"properties"`
}

type pimApprovalOut struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		Stages []pimStageOut `json:"stages"`
		Steps  []pimStageOut `json:"steps"`
	} `json:"properties"`
}

func (a *API) approvalOut(q armroles.Request, me string) pimApprovalOut {
	var o pimApprovalOut
	o.ID = q.Scope + "/providers/Microsoft.Authorization/roleAssignmentApprovals/" + q.ApprovalID
	o.Name, o.Type = q.ApprovalID, "Microsoft.Authorization/roleAssignmentApprovals"
	s := pimStageOut{ID: o.ID + "/stages/" + q.ApprovalStageID, Name: q.ApprovalStageID, Type: "Microsoft.Authorization/roleAssignmentApprovals/stages"}
	sp := &s.Properties
	sp.DisplayName, sp.AssignedToMe, sp.ReviewResult, sp.Justification = "Approval stage 1", slices.Contains(q.Approvers, me), "NotReviewed", q.ReviewJustification
	switch q.Status {
	case armroles.StatusPendingApproval:
		sp.Status = "InProgress"
	default:
		sp.Status = "Completed"
	}
	if q.ReviewedBy != "" {
		sp.ReviewResult, sp.ReviewedDateTime = q.ReviewResult, optTime(q.Reviewed)
		typ := "user"
		if q.ReviewerType != "user" {
			typ = "servicePrincipal"
		}
		sp.ReviewedBy = &pimReviewer{PrincipalID: q.ReviewedBy, PrincipalType: typ, PrincipalName: q.ReviewerName}
	}
	o.Properties.Stages, o.Properties.Steps = []pimStageOut{s}, []pimStageOut{s}
	return o
}

// approvalFor finds an approval the caller may see: as approver,
// requester, target, or reader of role assignments at its scope.
func (a *API) approvalFor(r *http.Request) (armroles.Request, error) {
	q, err := a.pim.Approval(r.Context(), r.PathValue("id"))
	if err != nil {
		return q, err
	}
	visible, err := a.pimVisible(r)
	if err != nil {
		return q, err
	}
	c, _ := identity.FromContext(r.Context())
	if !visible(q.Scope, q.PrincipalID, q.RequestorID) && !slices.Contains(q.Approvers, c.ObjectID) {
		return q, fault.Errorf(fault.NotFound, "ResourceNotFound", "The approval '%s' could not be found.", r.PathValue("id"))
	}
	return q, nil
}

func (a *API) listApprovals(w http.ResponseWriter, r *http.Request) error {
	q, err := a.pimFilter(r)
	if err != nil {
		return err
	}
	list, err := a.pim.Approvals(r.Context())
	if err != nil {
		return err
	}
	visible, err := a.pimVisible(r)
	if err != nil {
		return err
	}
	c, _ := identity.FromContext(r.Context())
	out := []pimApprovalOut{}
	for _, x := range list {
		approver := slices.Contains(x.Approvers, c.ObjectID)
		if (q.approver && !approver) || (q.Requestor != "" && x.RequestorID != q.Requestor) ||
			(q.AssignedTo != nil && !slices.Contains(q.AssignedTo, x.PrincipalID)) || (!approver && !visible(x.Scope, x.PrincipalID, x.RequestorID)) {
			continue
		}
		out = append(out, a.approvalOut(x, c.ObjectID))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (a *API) getApproval(w http.ResponseWriter, r *http.Request) error {
	q, err := a.approvalFor(r)
	if err != nil {
		return err
	}
	c, _ := identity.FromContext(r.Context())
	httpx.WriteJSON(w, http.StatusOK, a.approvalOut(q, c.ObjectID))
	return nil
}

func (a *API) listStages(w http.ResponseWriter, r *http.Request) error {
	q, err := a.approvalFor(r)
	if err != nil {
		return err
	}
	c, _ := identity.FromContext(r.Context())
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": a.approvalOut(q, c.ObjectID).Properties.Stages})
	return nil
}

func (a *API) getStage(w http.ResponseWriter, r *http.Request) error {
	q, err := a.approvalFor(r)
	if err != nil {
		return err
	}
	if !strings.EqualFold(r.PathValue("stage"), q.ApprovalStageID) {
		return fault.Errorf(fault.NotFound, "ResourceNotFound", "The approval stage '%s' could not be found.", r.PathValue("stage"))
	}
	c, _ := identity.FromContext(r.Context())
	httpx.WriteJSON(w, http.StatusOK, a.approvalOut(q, c.ObjectID).Properties.Stages[0])
	return nil
}

func (a *API) decideStage(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		ReviewResult  string `json:"reviewResult"`
		Justification string `json:"justification"`
		Properties    *struct {
			ReviewResult  string `json:"reviewResult"`
			Justification string `json:"justification"`
		} `json:"properties"`
	}
	if err := httpx.ReadJSON(w, r, &body); err != nil {
		return err
	}
	if body.Properties != nil {
		body.ReviewResult, body.Justification = body.Properties.ReviewResult, body.Properties.Justification
	}
	var approve bool
	switch strings.ToLower(body.ReviewResult) {
	case "approve", "approved":
		approve = true
	case "deny", "denied":
	default:
		return fault.Invalidf("reviewResult %q is not Approve or Deny", body.ReviewResult)
	}
	c, _ := identity.FromContext(r.Context())
	q, err := a.pim.Decide(r.Context(), r.PathValue("id"), r.PathValue("stage"), c.ObjectID, approve, body.Justification)
	rec := route.RecordOf(r.Context())
	rec.Decision = &route.Decision{Allowed: err == nil || fault.KindOf(err) != fault.Forbidden}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.approvalOut(q, c.ObjectID).Properties.Stages[0])
	return nil
}
