package graph

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/pim"
)

// SetPIM serves PIM for Groups from p.
func (a *API) SetPIM(p *pim.Service) { a.pim = p }

const pimBase = "/v1.0/identityGovernance/privilegedAccess/group/"

// pimOperations are PIM for Groups (Graph v1.0) and the group policies.
// The handlers decide who may: administrators (Global or Privileged Role
// Administrator) for eligibilities, assignments and policies; anyone for
// their own activations; approvers for approvals.
func (a *API) pimOperations() []route.Op {
	op := func(name, method, pattern string, h handler) route.Op {
		return route.Op{Name: name, Method: method, Pattern: pattern, Handle: a.withPIM(h)}
	}
	var ops []route.Op
	for _, c := range []struct{ coll, kind, perm string }{
		{"eligibilityScheduleRequests", pim.Eligibility, "eligibilitySchedules"},
		{"assignmentScheduleRequests", pim.Assignment, "assignmentSchedules"},
	} {
		perm := "microsoft.directory/privilegedAccess/group/" + c.perm
		ops = append(ops,
			op(perm+"/create", http.MethodPost, pimBase+c.coll, a.pimSubmit(c.kind)),
			op(perm+"/read", http.MethodGet, pimBase+c.coll, a.pimListRequests(c.kind, "")),
			op(perm+"/read", http.MethodGet, pimBase+c.coll+"/{id}", a.pimGetRequest(c.kind)),
			op(perm+"/cancel", http.MethodPost, pimBase+c.coll+"/{id}/cancel", a.pimCancel(c.kind)),
			op(perm+"/cancel", http.MethodPost, pimBase+c.coll+"/{id}/microsoft.graph.cancel", a.pimCancel(c.kind)))
	}
	for _, c := range []struct {
		coll, kind string
		instances  bool
	}{
		{"eligibilitySchedules", pim.Eligibility, false}, {"eligibilityScheduleInstances", pim.Eligibility, true},
		{"assignmentSchedules", pim.Assignment, false}, {"assignmentScheduleInstances", pim.Assignment, true},
	} {
		perm := "microsoft.directory/privilegedAccess/group/" + c.coll + "/read"
		ops = append(ops,
			op(perm, http.MethodGet, pimBase+c.coll, a.pimListSchedules(c.kind, c.instances, "")),
			op(perm, http.MethodGet, pimBase+c.coll+"/{id}", a.pimGetSchedule(c.kind, c.instances)))
	}
	ap := "microsoft.directory/privilegedAccess/group/assignmentApprovals/"
	for _, steps := range []string{"steps", "stages"} {
		ops = append(ops,
			op(ap+"read", http.MethodGet, pimBase+"assignmentApprovals/{id}/"+steps, a.pimSteps),
			op(ap+"read", http.MethodGet, pimBase+"assignmentApprovals/{id}/"+steps+"/{step}", a.pimStep),
			op(ap+"update", http.MethodPatch, pimBase+"assignmentApprovals/{id}/"+steps+"/{step}", a.pimDecide))
	}
	ops = append(ops, op(ap+"read", http.MethodGet, pimBase+"assignmentApprovals/{id}", a.pimApproval))
	pol := "microsoft.directory/roleManagementPolicies/"
	ops = append(ops,
		op(pol+"standard/read", http.MethodGet, "/v1.0/policies/roleManagementPolicies", a.pimPolicies),
		op(pol+"standard/read", http.MethodGet, "/v1.0/policies/roleManagementPolicies/{id}", a.pimPolicy),
		op(pol+"standard/read", http.MethodGet, "/v1.0/policies/roleManagementPolicies/{id}/rules", a.pimRules),
		op(pol+"standard/read", http.MethodGet, "/v1.0/policies/roleManagementPolicies/{id}/rules/{rule}", a.pimRule),
		op(pol+"basic/update", http.MethodPatch, "/v1.0/policies/roleManagementPolicies/{id}/rules/{rule}", a.pimPatchRule),
		op(pol+"standard/read", http.MethodGet, "/v1.0/policies/roleManagementPolicyAssignments", a.pimPolicyAssignments),
		op(pol+"standard/read", http.MethodGet, "/v1.0/policies/roleManagementPolicyAssignments/{id}", a.pimPolicyAssignment))
	return ops
}

// errNoPIM answers when the server runs without PIM.
func (a *API) withPIM(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if a.pim == nil {
			return fault.Errorf(fault.NotFound, "NotFound", "privileged access is not enabled")
		}
		return h(w, r)
	}
}

// pimCaller is the caller as PIM sees it; Admin is decided and recorded
// in the audit record when needed.
func (a *API) pimCaller(r *http.Request, needAdmin bool) (pim.Caller, error) {
	c, ok := identity.FromContext(r.Context())
	if !ok {
		return pim.Caller{}, ErrForbidden
	}
	pc := pim.Caller{ObjectID: c.ObjectID, Kind: c.Kind, AMR: c.AMR}
	ga, err := a.dir.HasRole(r.Context(), c.ObjectID, identity.GlobalAdministrator)
	if err != nil {
		return pc, err
	}
	pra, err := a.dir.HasRole(r.Context(), c.ObjectID, identity.PrivilegedRoleAdministrator)
	if err != nil {
		return pc, err
	}
	pc.Admin = ga || pra
	if needAdmin {
		rec := route.RecordOf(r.Context())
		rec.Action, rec.Scope = route.RecordOf(r.Context()).Operation, "/"
		rec.Decision = &route.Decision{Allowed: pc.Admin}
		if ga {
			rec.Decision.RoleID = globalAdministratorRoleID
		} else if pra {
			rec.Decision.RoleID = privilegedRoleAdministratorRoleID
		}
	}
	return pc, nil
}

// privilegedRoleAdministratorRoleID is Entra's template id of the role.
const privilegedRoleAdministratorRoleID = "e8611ab8-c189-46e8-94e1-60213ab1f814"

// ---- wire shapes ----

type gExpiration struct {
	Type        string  `json:"type"`
	Duration    *string `json:"duration"`
	EndDateTime *string `json:"endDateTime"`
}

type gScheduleInfo struct {
	StartDateTime *string      `json:"startDateTime"`
	Expiration    *gExpiration `json:"expiration"`
	Recurrence    any          `json:"recurrence"`
}

type gTicket struct {
	TicketNumber *string `json:"ticketNumber"`
	TicketSystem *string `json:"ticketSystem"`
}

type gRequestIn struct {
	AccessID         string         `json:"accessId"`
	Action           string         `json:"action"`
	GroupID          string         `json:"groupId"`
	PrincipalID      string         `json:"principalId"`
	Justification    string         `json:"justification"`
	ScheduleInfo     *gScheduleInfo `json:"scheduleInfo"`
	TicketInfo       *gTicket       `json:"ticketInfo"`
	IsValidationOnly bool           `json:"isValidationOnly"`
	TargetScheduleID string         `json:"targetScheduleId"`
}

type gIdentity struct {
	User *struct {
		ID          string `json:"id"`
		DisplayName any    `json:"displayName"`
	} `json:"user"`
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func gTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format("2006-01-02T15:04:05Z")
	return &s
}

func gSchedule(si pim.ScheduleInfo, end time.Time) gScheduleInfo {
	exp := &gExpiration{Type: si.Expiration, Duration: strp(si.Duration), EndDateTime: gTime(end)}
	if si.Expiration == pim.AfterDuration || si.Duration != "" {
		exp.Type = pim.AfterDuration
	}
	return gScheduleInfo{StartDateTime: gTime(si.Start), Expiration: exp}
}

func requestJSON(req *pim.Request) map[string]any {
	var end time.Time
	if req.Schedule.Duration != "" {
		if d, err := pim.ParseDuration(req.Schedule.Duration); err == nil {
			end = req.Schedule.Start.Add(d)
		}
	} else {
		end = req.Schedule.End
	}
	typ := "#microsoft.graph.privilegedAccessGroupAssignmentScheduleRequest"
	if req.Kind == pim.Eligibility {
		typ = "#microsoft.graph.privilegedAccessGroupEligibilityScheduleRequest"
	}
	created := gIdentity{}
	created.User = &struct {
		ID          string `json:"id"`
		DisplayName any    `json:"displayName"`
	}{ID: req.RequestorID}
	m := map[string]any{
		"@odata.type": typ, "id": req.ID, "status": req.Status, "action": req.Action, "accessId": req.Target.AccessID,
		"groupId": req.Target.GroupID, "principalId": req.PrincipalID, "justification": req.Justification,
		"createdDateTime": gTime(req.Created), "completedDateTime": gTime(req.Completed), "approvalId": strp(req.ApprovalID),
		"targetScheduleId": strp(req.TargetScheduleID), "isValidationOnly": false, "customData": nil, "createdBy": created,
		"ticketInfo": map[string]any{"ticketNumber": strp(req.Ticket.Number), "ticketSystem": strp(req.Ticket.System)},
	}
	if req.Action == pim.AdminAssign || req.Action == pim.SelfActivate {
		m["scheduleInfo"] = gSchedule(req.Schedule, end)
	} else {
		m["scheduleInfo"] = nil
	}
	return m
}

func scheduleJSON(sc *pim.Schedule, instance bool) map[string]any {
	m := map[string]any{"id": sc.ID, "accessId": sc.Target.AccessID, "groupId": sc.Target.GroupID, "principalId": sc.PrincipalID,
		"memberType": "direct"}
	if instance {
		m["startDateTime"], m["endDateTime"] = gTime(sc.Start), gTime(sc.End)
		if sc.Kind == pim.Assignment {
			m["@odata.type"] = "#microsoft.graph.privilegedAccessGroupAssignmentScheduleInstance"
			m["assignmentScheduleId"], m["assignmentType"] = sc.ID, strings.ToLower(sc.AssignmentType)
		} else {
			m["@odata.type"] = "#microsoft.graph.privilegedAccessGroupEligibilityScheduleInstance"
			m["eligibilityScheduleId"] = sc.ID
		}
		return m
	}
	exp := pim.NoExpiration
	if !sc.End.IsZero() {
		exp = pim.AfterDateTime
	}
	m["createdDateTime"], m["modifiedDateTime"], m["createdUsing"], m["status"] = gTime(sc.Created), gTime(sc.Updated), sc.RequestID, sc.Status
	m["scheduleInfo"] = gScheduleInfo{StartDateTime: gTime(sc.Start), Expiration: &gExpiration{Type: exp, EndDateTime: gTime(sc.End)}}
	if sc.Kind == pim.Assignment {
		m["@odata.type"] = "#microsoft.graph.privilegedAccessGroupAssignmentSchedule"
		m["assignmentType"] = strings.ToLower(sc.AssignmentType)
	} else {
		m["@odata.type"] = "#microsoft.graph.privilegedAccessGroupEligibilitySchedule"
	}
	return m
}

func parseTime(field string, s *string) (time.Time, error) {
	if s == nil || *s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		return t, pim.ErrBadRequest.With("%s %q is not an ISO 8601 date and time.", field, *s)
	}
	return t, nil
}

// ---- requests ----

func (a *API) pimSubmit(kind string) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in gRequestIn
		if err := httpx.ReadJSON(w, r, &in); err != nil {
			return err
		}
		action := pim.ParseAction(in.Action)
		c, err := a.pimCaller(r, pim.IsAdmin(action))
		if err != nil {
			return err
		}
		ri := pim.RequestInput{Kind: kind, Target: pim.GroupTarget(in.GroupID, in.AccessID), PrincipalID: in.PrincipalID, Action: in.Action,
			Justification: in.Justification, ValidationOnly: in.IsValidationOnly}
		if in.TicketInfo != nil {
			if in.TicketInfo.TicketNumber != nil {
				ri.Ticket.Number = *in.TicketInfo.TicketNumber
			}
			if in.TicketInfo.TicketSystem != nil {
				ri.Ticket.System = *in.TicketInfo.TicketSystem
			}
		}
		if si := in.ScheduleInfo; si != nil {
			if si.Recurrence != nil {
				return pim.ErrBadRequest.With("Recurring schedules are not supported.")
			}
			if ri.Schedule.Start, err = parseTime("startDateTime", si.StartDateTime); err != nil {
				return err
			}
			if e := si.Expiration; e != nil {
				ri.Schedule.Expiration = e.Type
				if e.Duration != nil {
					ri.Schedule.Duration = *e.Duration
				}
				if ri.Schedule.End, err = parseTime("endDateTime", e.EndDateTime); err != nil {
					return err
				}
			}
		}
		req, err := a.pim.Submit(r.Context(), c, ri)
		if err != nil {
			return err
		}
		out := requestJSON(req)
		out["isValidationOnly"] = in.IsValidationOnly
		httpx.WriteJSON(w, http.StatusCreated, out)
		return nil
	}
}

var filterTerm = regexp.MustCompile(`^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$`)

// parseFilter reads "a eq 'x' and b eq 'y'".
func parseFilter(f string) (map[string]string, error) {
	out := map[string]string{}
	for _, term := range regexp.MustCompile(`(?i)\s+and\s+`).Split(f, -1) {
		m := filterTerm.FindStringSubmatch(term)
		if m == nil {
			return nil, fault.Errorf(fault.Invalid, "Request_UnsupportedQuery", "unsupported $filter %q: use <property> eq '<value>' joined by and", f)
		}
		out[strings.ToLower(m[1])] = strings.ReplaceAll(m[2], "''", "'")
	}
	return out, nil
}

var byCurrentUser = regexp.MustCompile(`(?i)^(?:microsoft\.graph\.)?filterByCurrentUser\(on='(\w+)'\)$`)

// pimFilter reads $filter on groupId, principalId, status (and the
// current-user function's on), and returns the match for a row.
func pimFilter(r *http.Request, on string, requireOne bool) (func(groupID, principalID, status string) bool, error) {
	f, err := parseFilter(r.URL.Query().Get("$filter"))
	if r.URL.Query().Get("$filter") == "" {
		f, err = map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	for k := range f {
		if k != "groupid" && k != "principalid" && k != "status" {
			return nil, fault.Errorf(fault.Invalid, "Request_UnsupportedQuery", "$filter supports groupId, principalId and status, not %s", k)
		}
	}
	if requireOne && on == "" && f["groupid"] == "" && f["principalid"] == "" {
		return nil, fault.Errorf(fault.Invalid, "Request_UnsupportedQuery", "a $filter on groupId or principalId is required")
	}
	return func(g, p, st string) bool {
		return (f["groupid"] == "" || strings.EqualFold(f["groupid"], g)) && (f["principalid"] == "" || strings.EqualFold(f["principalid"], p)) &&
			(f["status"] == "" || strings.EqualFold(f["status"], st))
	}, nil
}

func (a *API) pimListRequests(kind, on string) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := a.pimCaller(r, false)
		if err != nil {
			return err
		}
		match, err := pimFilter(r, on, true)
		if err != nil {
			return err
		}
		groups, err := a.dir.GroupsOf(r.Context(), c.ObjectID)
		if err != nil {
			return err
		}
		var failed error
		reqs, err := a.pim.Requests(r.Context(), kind, func(q *pim.Request) bool {
			if !match(q.Target.GroupID, q.PrincipalID, q.Status) || q.Target.Kind != pim.KindGroup {
				return false
			}
			switch strings.ToLower(on) {
			case "principal":
				return strings.EqualFold(q.PrincipalID, c.ObjectID) || slices.Contains(groups, q.PrincipalID)
			case "createdby":
				return strings.EqualFold(q.RequestorID, c.ObjectID)
			case "approver":
				ok, err := a.pim.CanApprove(r.Context(), c.ObjectID, q)
				if err != nil {
					failed = err
				}
				return ok && q.Status == pim.StatusPendingApproval
			}
			return c.Admin || strings.EqualFold(q.PrincipalID, c.ObjectID) || strings.EqualFold(q.RequestorID, c.ObjectID)
		})
		if err == nil {
			err = failed
		}
		if err != nil {
			return err
		}
		out := struct {
			Value []map[string]any `json:"value"`
		}{Value: []map[string]any{}}
		for _, q := range reqs {
			out.Value = append(out.Value, requestJSON(q))
		}
		httpx.WriteJSON(w, http.StatusOK, out)
		return nil
	}
}

func (a *API) pimGetRequest(kind string) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		if m := byCurrentUser.FindStringSubmatch(id); m != nil {
			on := strings.ToLower(m[1])
			if on != "principal" && on != "createdby" && on != "approver" {
				return fault.Errorf(fault.Invalid, "Request_UnsupportedQuery", "on must be principal, createdBy or approver")
			}
			return a.pimListRequests(kind, on)(w, r)
		}
		c, err := a.pimCaller(r, false)
		if err != nil {
			return err
		}
		req, err := a.pim.Request(r.Context(), kind, id)
		if err != nil {
			return err
		}
		if !c.Admin && !strings.EqualFold(req.PrincipalID, c.ObjectID) && !strings.EqualFold(req.RequestorID, c.ObjectID) {
			if ok, err := a.pim.CanApprove(r.Context(), c.ObjectID, req); err != nil || !ok {
				return pim.ErrRequestNotFound
			}
		}
		httpx.WriteJSON(w, http.StatusOK, requestJSON(req))
		return nil
	}
}

func (a *API) pimCancel(kind string) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := a.pimCaller(r, false)
		if err != nil {
			return err
		}
		if _, err := a.pim.Cancel(r.Context(), c, kind, r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// ---- schedules ----

func (a *API) pimListSchedules(kind string, instances bool, on string) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := a.pimCaller(r, false)
		if err != nil {
			return err
		}
		match, err := pimFilter(r, on, false)
		if err != nil {
			return err
		}
		groups, err := a.dir.GroupsOf(r.Context(), c.ObjectID)
		if err != nil {
			return err
		}
		keep := func(sc *pim.Schedule) bool {
			if sc.Target.Kind != pim.KindGroup || !match(sc.Target.GroupID, sc.PrincipalID, sc.Status) {
				return false
			}
			mine := strings.EqualFold(sc.PrincipalID, c.ObjectID) || slices.Contains(groups, sc.PrincipalID)
			if on != "" {
				return mine
			}
			return c.Admin || mine
		}
		list := a.pim.Schedules
		if instances {
			list = a.pim.Instances
		}
		scheds, err := list(r.Context(), kind, keep)
		if err != nil {
			return err
		}
		out := struct {
			Value []map[string]any `json:"value"`
		}{Value: []map[string]any{}}
		for _, sc := range scheds {
			out.Value = append(out.Value, scheduleJSON(sc, instances))
		}
		httpx.WriteJSON(w, http.StatusOK, out)
		return nil
	}
}

func (a *API) pimGetSchedule(kind string, instance bool) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		if m := byCurrentUser.FindStringSubmatch(id); m != nil {
			if !strings.EqualFold(m[1], "principal") {
				return fault.Errorf(fault.Invalid, "Request_UnsupportedQuery", "on must be principal")
			}
			return a.pimListSchedules(kind, instance, "principal")(w, r)
		}
		c, err := a.pimCaller(r, false)
		if err != nil {
			return err
		}
		sc, err := a.pim.Schedule(r.Context(), id)
		if err != nil {
			return err
		}
		if sc.Kind != kind || (instance && !sc.InForce(time.Now())) || (!c.Admin && !strings.EqualFold(sc.PrincipalID, c.ObjectID)) {
			return pim.ErrScheduleNotFound
		}
		httpx.WriteJSON(w, http.StatusOK, scheduleJSON(sc, instance))
		return nil
	}
}

// ---- approvals ----

func stageJSON(st pim.Stage, mine bool) map[string]any {
	var by any
	if st.ReviewedBy != "" {
		by = map[string]any{"id": st.ReviewedBy, "displayName": nil}
	}
	return map[string]any{"id": st.ID, "displayName": st.DisplayName, "assignedToMe": mine, "justification": strp(st.Justification),
		"reviewedBy": by, "reviewedDateTime": gTime(st.Reviewed), "reviewResult": st.ReviewResult, "status": st.Status}
}

func (a *API) approvalStages(r *http.Request, c pim.Caller, ap *pim.Approval) ([]map[string]any, error) {
	out := []map[string]any{}
	for _, st := range ap.Stages {
		mine, err := a.pim.IsApprover(r.Context(), st, c.ObjectID)
		if err != nil {
			return nil, err
		}
		out = append(out, stageJSON(st, mine && !strings.EqualFold(c.ObjectID, ap.RequestorID) && st.Status == pim.StageInProgress))
	}
	return out, nil
}

func (a *API) loadApproval(r *http.Request) (pim.Caller, *pim.Approval, []map[string]any, error) {
	c, err := a.pimCaller(r, false)
	if err != nil {
		return c, nil, nil, err
	}
	ap, err := a.pim.Approval(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return c, nil, nil, err
	}
	stages, err := a.approvalStages(r, c, ap)
	return c, ap, stages, err
}

func (a *API) pimApproval(w http.ResponseWriter, r *http.Request) error {
	_, ap, stages, err := a.loadApproval(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"id": ap.ID, "steps": stages, "stages": stages})
	return nil
}

func (a *API) pimSteps(w http.ResponseWriter, r *http.Request) error {
	_, _, stages, err := a.loadApproval(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": stages})
	return nil
}

func (a *API) pimStep(w http.ResponseWriter, r *http.Request) error {
	_, _, stages, err := a.loadApproval(r)
	if err != nil {
		return err
	}
	for _, st := range stages {
		if strings.EqualFold(st["id"].(string), r.PathValue("step")) {
			httpx.WriteJSON(w, http.StatusOK, st)
			return nil
		}
	}
	return pim.ErrApprovalNotFound.With("The approval has no step %s.", r.PathValue("step"))
}

func (a *API) pimDecide(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		ReviewResult  string `json:"reviewResult"`
		Justification string `json:"justification"`
	}
	if err := httpx.ReadJSON(w, r, &in); err != nil {
		return err
	}
	c, err := a.pimCaller(r, false)
	if err != nil {
		return err
	}
	rec := route.RecordOf(r.Context())
	rec.Action, rec.Scope = rec.Operation, "/"
	if err := a.pim.Decide(r.Context(), c, r.PathValue("id"), r.PathValue("step"), in.ReviewResult, in.Justification); err != nil {
		if fault.KindOf(err) == fault.Forbidden {
			rec.Decision = &route.Decision{Allowed: false}
		}
		return err
	}
	rec.Decision = &route.Decision{Allowed: true}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- policies ----

// gRule is a rule in Graph's shape.
type gRule struct {
	ODataType                  string            `json:"@odata.type"`
	ID                         string            `json:"id"`
	Target                     *gRuleTarget      `json:"target,omitempty"`
	IsExpirationRequired       *bool             `json:"isExpirationRequired,omitempty"`
	MaximumDuration            *string           `json:"maximumDuration,omitempty"`
	EnabledRules               []string          `json:"enabledRules,omitempty"`
	Setting                    *gApprovalSetting `json:"setting,omitempty"`
	IsEnabled                  *bool             `json:"isEnabled,omitempty"`
	ClaimValue                 *string           `json:"claimValue,omitempty"`
	NotificationType           string            `json:"notificationType,omitempty"`
	RecipientType              string            `json:"recipientType,omitempty"`
	NotificationLevel          string            `json:"notificationLevel,omitempty"`
	NotificationRecipients     []string          `json:"notificationRecipients,omitempty"`
	IsDefaultRecipientsEnabled *bool             `json:"isDefaultRecipientsEnabled,omitempty"`
}

type gRuleTarget struct {
	Caller              string   `json:"caller"`
	Operations          []string `json:"operations"`
	Level               string   `json:"level"`
	InheritableSettings []string `json:"inheritableSettings"`
	EnforcedSettings    []string `json:"enforcedSettings"`
}

type gApprover struct {
	ODataType   string `json:"@odata.type"`
	UserID      string `json:"userId,omitempty"`
	GroupID     string `json:"groupId,omitempty"`
	Description string `json:"description,omitempty"`
}

type gStage struct {
	ApprovalStageTimeOutInDays      int         `json:"approvalStageTimeOutInDays"`
	IsApproverJustificationRequired bool        `json:"isApproverJustificationRequired"`
	EscalationTimeInMinutes         int         `json:"escalationTimeInMinutes"`
	IsEscalationEnabled             bool        `json:"isEscalationEnabled"`
	PrimaryApprovers                []gApprover `json:"primaryApprovers"`
	EscalationApprovers             []gApprover `json:"escalationApprovers"`
}

type gApprovalSetting struct {
	IsApprovalRequired               bool     `json:"isApprovalRequired"`
	IsApprovalRequiredForExtension   bool     `json:"isApprovalRequiredForExtension"`
	IsRequestorJustificationRequired bool     `json:"isRequestorJustificationRequired"`
	ApprovalMode                     string   `json:"approvalMode"`
	ApprovalStages                   []gStage `json:"approvalStages"`
}

func bp(b bool) *bool { return &b }

func toGraphRule(r pim.Rule) gRule {
	g := gRule{ODataType: "#microsoft.graph.unifiedRoleManagementPolicy" + strings.TrimPrefix(r.RuleType, "RoleManagementPolicy"), ID: r.ID,
		Target: &gRuleTarget{Caller: r.Target.Caller, Operations: []string{"all"}, Level: r.Target.Level, InheritableSettings: []string{}, EnforcedSettings: []string{}}}
	switch r.RuleType {
	case pim.ExpirationRule:
		g.IsExpirationRequired, g.MaximumDuration = bp(r.IsExpirationRequired), strp(r.MaximumDuration)
	case pim.EnablementRule:
		g.EnabledRules = append([]string{}, r.EnabledRules...)
		if g.EnabledRules == nil {
			g.EnabledRules = []string{}
		}
	case pim.ApprovalRule:
		s := r.Setting
		if s == nil {
			s = &pim.ApprovalSetting{}
		}
		gs := &gApprovalSetting{IsApprovalRequired: s.IsApprovalRequired, IsApprovalRequiredForExtension: s.IsApprovalRequiredForExtension,
			IsRequestorJustificationRequired: s.IsRequestorJustificationRequired, ApprovalMode: s.ApprovalMode, ApprovalStages: []gStage{}}
		conv := func(as []pim.Approver) []gApprover {
			out := []gApprover{}
			for _, a := range as {
				if a.UserType == "Group" {
					out = append(out, gApprover{ODataType: "#microsoft.graph.groupMembers", GroupID: a.ID, Description: a.Description})
				} else {
					out = append(out, gApprover{ODataType: "#microsoft.graph.singleUser", UserID: a.ID, Description: a.Description})
				}
			}
			return out
		}
		for _, st := range s.ApprovalStages {
			gs.ApprovalStages = append(gs.ApprovalStages, gStage{ApprovalStageTimeOutInDays: st.ApprovalStageTimeOutInDays,
				IsApproverJustificationRequired: st.IsApproverJustificationRequired, EscalationTimeInMinutes: st.EscalationTimeInMinutes,
				IsEscalationEnabled: st.IsEscalationEnabled, PrimaryApprovers: conv(st.PrimaryApprovers), EscalationApprovers: conv(st.EscalationApprovers)})
		}
		g.Setting = gs
	case pim.AuthenticationContextRule:
		g.IsEnabled, g.ClaimValue = bp(r.IsEnabled), &r.ClaimValue
	case pim.NotificationRule:
		g.NotificationType, g.RecipientType, g.NotificationLevel = r.NotificationType, r.RecipientType, r.NotificationLevel
		g.NotificationRecipients, g.IsDefaultRecipientsEnabled = append([]string{}, r.NotificationRecipients...), bp(r.IsDefaultRecipientsEnabled)
	}
	return g
}

// fromGraphRule merges a Graph rule body into the current rule cur.
func fromGraphRule(g gRule, cur pim.Rule) (pim.Rule, error) {
	r := cur
	if g.ODataType != "" && !strings.EqualFold(strings.TrimPrefix(g.ODataType, "#microsoft.graph.unifiedRoleManagementPolicy"), strings.TrimPrefix(cur.RuleType, "RoleManagementPolicy")) {
		return r, pim.ErrInvalidPolicy.With("The policy is invalid: rule %s is not of type %s.", cur.ID, g.ODataType)
	}
	if g.IsExpirationRequired != nil {
		r.IsExpirationRequired = *g.IsExpirationRequired
	}
	if g.MaximumDuration != nil {
		r.MaximumDuration = *g.MaximumDuration
	}
	if g.EnabledRules != nil || cur.RuleType == pim.EnablementRule {
		r.EnabledRules = append([]string{}, g.EnabledRules...)
	}
	if g.IsEnabled != nil {
		r.IsEnabled = *g.IsEnabled
	}
	if g.ClaimValue != nil {
		r.ClaimValue = *g.ClaimValue
	}
	if g.NotificationLevel != "" {
		r.NotificationLevel = g.NotificationLevel
	}
	if g.NotificationRecipients != nil {
		r.NotificationRecipients = g.NotificationRecipients
	}
	if g.IsDefaultRecipientsEnabled != nil {
		r.IsDefaultRecipientsEnabled = *g.IsDefaultRecipientsEnabled
	}
	if s := g.Setting; s != nil {
		ps := &pim.ApprovalSetting{IsApprovalRequired: s.IsApprovalRequired, IsApprovalRequiredForExtension: s.IsApprovalRequiredForExtension,
			IsRequestorJustificationRequired: s.IsRequestorJustificationRequired, ApprovalMode: s.ApprovalMode}
		conv := func(gs []gApprover) ([]pim.Approver, error) {
			out := []pim.Approver{}
			for _, a := range gs {
				switch strings.ToLower(strings.TrimPrefix(a.ODataType, "#microsoft.graph.")) {
				case "singleuser":
					out = append(out, pim.Approver{ID: a.UserID, UserType: "User", Description: a.Description})
				case "groupmembers":
					out = append(out, pim.Approver{ID: a.GroupID, UserType: "Group", Description: a.Description})
				default:
					return nil, pim.ErrInvalidPolicy.With("The policy is invalid: approvers of type %q are not supported (singleUser, groupMembers).", a.ODataType)
				}
			}
			return out, nil
		}
		for _, st := range s.ApprovalStages {
			pa, err := conv(st.PrimaryApprovers)
			if err != nil {
				return r, err
			}
			ea, err := conv(st.EscalationApprovers)
			if err != nil {
				return r, err
			}
			ps.ApprovalStages = append(ps.ApprovalStages, pim.ApprovalStage{ApprovalStageTimeOutInDays: st.ApprovalStageTimeOutInDays,
				IsApproverJustificationRequired: st.IsApproverJustificationRequired, EscalationTimeInMinutes: st.EscalationTimeInMinutes,
				IsEscalationEnabled: st.IsEscalationEnabled, PrimaryApprovers: pa, EscalationApprovers: ea})
		}
		r.Setting = ps
	}
	return r, nil
}

func policyJSON(p *pim.Policy, withRules bool) map[string]any {
	m := map[string]any{"id": p.ID, "displayName": "Group", "description": "Group", "isOrganizationDefault": false,
		"scopeId": p.Target.GroupID, "scopeType": "Group", "lastModifiedDateTime": gTime(p.LastModified), "lastModifiedBy": nil}
	if p.LastModifiedBy != "" {
		m["lastModifiedBy"] = map[string]any{"id": p.LastModifiedBy, "displayName": nil}
	}
	if withRules {
		rules := []gRule{}
		for _, r := range p.Rules {
			rules = append(rules, toGraphRule(r))
		}
		m["rules"], m["effectiveRules"] = rules, rules
	}
	return m
}

// groupScope reads the mandatory scopeId/scopeType filter of policy lists.
func (a *API) groupScope(r *http.Request) (string, string, error) {
	f, err := parseFilter(r.URL.Query().Get("$filter"))
	if err != nil || f["scopeid"] == "" || !strings.EqualFold(f["scopetype"], "Group") {
		return "", "", fault.Errorf(fault.Invalid, "Request_UnsupportedQuery",
			"$filter=scopeId eq '{groupId}' and scopeType eq 'Group' is required")
	}
	access := f["roledefinitionid"]
	if access != "" && access != "member" && access != "owner" {
		return "", "", fault.Errorf(fault.Invalid, "Request_UnsupportedQuery", "roleDefinitionId must be member or owner")
	}
	g, err := a.lookup(r, "group", f["scopeid"])
	if err != nil {
		return "", "", err
	}
	return g.ID, access, nil
}

func (a *API) pimPolicies(w http.ResponseWriter, r *http.Request) error {
	g, access, err := a.groupScope(r)
	if err != nil {
		return err
	}
	expand := strings.Contains(strings.ToLower(r.URL.Query().Get("$expand")), "rules")
	out := []map[string]any{}
	for _, acc := range []string{"member", "owner"} {
		if access != "" && acc != access {
			continue
		}
		p, err := a.pim.Policy(r.Context(), pim.GroupTarget(g, acc))
		if err != nil {
			return err
		}
		out = append(out, policyJSON(p, expand))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (a *API) policyOf(r *http.Request) (*pim.Policy, error) {
	t, ok := pim.GroupPolicyTarget(r.PathValue("id"))
	if !ok {
		return nil, pim.ErrPolicyNotFound
	}
	if err := a.pim.CheckTarget(r.Context(), t); err != nil {
		return nil, pim.ErrPolicyNotFound
	}
	return a.pim.Policy(r.Context(), t)
}

func (a *API) pimPolicy(w http.ResponseWriter, r *http.Request) error {
	p, err := a.policyOf(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, policyJSON(p, true))
	return nil
}

func (a *API) pimRules(w http.ResponseWriter, r *http.Request) error {
	p, err := a.policyOf(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": policyJSON(p, true)["rules"]})
	return nil
}

func (a *API) pimRule(w http.ResponseWriter, r *http.Request) error {
	p, err := a.policyOf(r)
	if err != nil {
		return err
	}
	rule := p.Rule(r.PathValue("rule"))
	if rule == nil {
		return pim.ErrPolicyNotFound.With("The policy has no rule %s.", r.PathValue("rule"))
	}
	httpx.WriteJSON(w, http.StatusOK, toGraphRule(*rule))
	return nil
}

func (a *API) pimPatchRule(w http.ResponseWriter, r *http.Request) error {
	var g gRule
	body, err := pimBody(w, r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, &g); err != nil {
		return pim.ErrInvalidPolicy.With("The policy is invalid: %v", err)
	}
	c, err := a.pimCaller(r, true)
	if err != nil {
		return err
	}
	if !c.Admin {
		return ErrForbidden
	}
	p, err := a.policyOf(r)
	if err != nil {
		return err
	}
	cur := p.Rule(r.PathValue("rule"))
	if cur == nil {
		return pim.ErrPolicyNotFound.With("The policy has no rule %s.", r.PathValue("rule"))
	}
	if g.ID != "" && !strings.EqualFold(g.ID, cur.ID) {
		return pim.ErrInvalidPolicy.With("The policy is invalid: the body's id %s is not the rule %s.", g.ID, cur.ID)
	}
	rule, err := fromGraphRule(g, *cur)
	if err != nil {
		return err
	}
	if _, err := a.pim.PatchRules(r.Context(), p.Target, []pim.Rule{rule}, c.ObjectID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func pimBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	var raw json.RawMessage
	if err := httpx.ReadJSON(w, r, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

func policyAssignmentJSON(p *pim.Policy) map[string]any {
	return map[string]any{"id": p.ID + "_" + p.Target.AccessID, "policyId": p.ID, "scopeId": p.Target.GroupID, "scopeType": "Group",
		"roleDefinitionId": p.Target.AccessID}
}

func (a *API) pimPolicyAssignments(w http.ResponseWriter, r *http.Request) error {
	g, access, err := a.groupScope(r)
	if err != nil {
		return err
	}
	expand := strings.Contains(strings.ToLower(r.URL.Query().Get("$expand")), "policy")
	out := []map[string]any{}
	for _, acc := range []string{"member", "owner"} {
		if access != "" && acc != access {
			continue
		}
		p, err := a.pim.Policy(r.Context(), pim.GroupTarget(g, acc))
		if err != nil {
			return err
		}
		m := policyAssignmentJSON(p)
		if expand {
			m["policy"] = policyJSON(p, true)
		}
		out = append(out, m)
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (a *API) pimPolicyAssignment(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	i := strings.LastIndex(id, "_")
	if i < 0 {
		return pim.ErrPolicyNotFound
	}
	t, ok := pim.GroupPolicyTarget(id[:i])
	if !ok || t.AccessID != id[i+1:] {
		return pim.ErrPolicyNotFound
	}
	if err := a.pim.CheckTarget(r.Context(), t); err != nil {
		return pim.ErrPolicyNotFound
	}
	p, err := a.pim.Policy(r.Context(), t)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, policyAssignmentJSON(p))
	return nil
}
