package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// My access: the user's eligible and active access (group memberships
// through PIM for Groups, and Azure roles through PIM), Activate and
// Deactivate, and the user's own requests.

const (
	pimGroups  = "/v1.0/identityGovernance/privilegedAccess/group/"
	armAuthz   = "/providers/Microsoft.Authorization/"
	pimVersion = "api-version=2020-10-01"
)

// graphList is Graph's collection envelope.
type graphList[T any] struct {
	Value []T `json:"value"`
}

// schedule is a PIM for Groups schedule or instance, as Graph sends it.
type schedule struct {
	ID             string `json:"id"`
	GroupID        string `json:"groupId"`
	PrincipalID    string `json:"principalId"`
	AccessID       string `json:"accessId"`
	AssignmentType string `json:"assignmentType"`
	StartDateTime  string `json:"startDateTime"`
	EndDateTime    string `json:"endDateTime"`
	ScheduleInfo   *struct {
		Expiration struct {
			EndDateTime string `json:"endDateTime"`
		} `json:"expiration"`
	} `json:"scheduleInfo"`
}

// request is a PIM for Groups assignment request.
type request struct {
	ID            string `json:"id"`
	GroupID       string `json:"groupId"`
	PrincipalID   string `json:"principalId"`
	Action        string `json:"action"`
	Status        string `json:"status"`
	Justification string `json:"justification"`
	Created       string `json:"createdDateTime"`
	ApprovalID    string `json:"approvalId"`
	TicketInfo    struct {
		TicketNumber string `json:"ticketNumber"`
	} `json:"ticketInfo"`
	ScheduleInfo *struct {
		Expiration struct {
			Duration    string `json:"duration"`
			EndDateTime string `json:"endDateTime"`
		} `json:"expiration"`
	} `json:"scheduleInfo"`
}

// armRole is an Azure role eligibility or assignment instance.
type armRole struct {
	Name       string `json:"name"`
	Properties struct {
		Scope                     string `json:"scope"`
		RoleDefinitionID          string `json:"roleDefinitionId"`
		PrincipalID               string `json:"principalId"`
		AssignmentType            string `json:"assignmentType"`
		EndDateTime               string `json:"endDateTime"`
		RoleEligibilityScheduleID string `json:"roleEligibilityScheduleId"`
		ExpandedProperties        struct {
			RoleDefinition struct {
				DisplayName string `json:"displayName"`
			} `json:"roleDefinition"`
		} `json:"expandedProperties"`
	} `json:"properties"`
}

// accessRow is one line of My access.
type accessRow struct {
	Kind      string // "group" or "role"
	Name      string // the group's or role's name
	Target    string // group id, or role definition id
	Scope     string // roles: the scope
	Eligible  string // the eligibility's id (roles: linked on activation)
	Until     time.Time
	Activated bool // an activation (not a standing assignment)
	Pending   bool
	CanAct    bool
	// Policy is what activating it needs, and Hours the durations it
	// allows (hours, as the form's values).
	Policy policyView
	Hours  []string
}

type accessData struct {
	Eligible, Active []accessRow
	Requests         []requestRow
	Problems         []string
}

type requestRow struct {
	ID, Kind, Target, Scope, Action, Status, Justification, Ticket, Duration string
	Created                                                                  time.Time
}

func (c *Console) access(w http.ResponseWriter, r *http.Request) {
	a := c.apiFor(r)
	var d accessData
	problem := func(what string, err error) { d.Problems = append(d.Problems, describe(what, err)) }
	var elig, inForce graphList[schedule]
	var reqs graphList[request]
	if err := a.graph("GET", pimGroups+"eligibilitySchedules/filterByCurrentUser(on='principal')", nil, &elig); err != nil {
		problem("your eligible group memberships", err)
	}
	if err := a.graph("GET", pimGroups+"assignmentScheduleInstances/filterByCurrentUser(on='principal')", nil, &inForce); err != nil {
		problem("your active group memberships", err)
	}
	if err := a.graph("GET", pimGroups+"assignmentScheduleRequests/filterByCurrentUser(on='principal')", nil, &reqs); err != nil {
		problem("your requests", err)
	}
	var ids []string
	for _, s := range elig.Value {
		ids = append(ids, s.GroupID)
	}
	for _, s := range inForce.Value {
		ids = append(ids, s.GroupID)
	}
	for _, q := range reqs.Value {
		ids = append(ids, q.GroupID)
	}
	names := a.names(ids)
	pending := map[string]bool{}
	for _, q := range reqs.Value {
		if q.Status == "PendingApproval" || q.Status == "PendingProvisioning" {
			pending[q.GroupID] = true
		}
	}
	active := map[string]bool{}
	for _, s := range inForce.Value {
		if s.AccessID != "member" {
			continue
		}
		end := parseTime(s.EndDateTime)
		d.Active = append(d.Active, accessRow{Kind: "group", Name: names.of(s.GroupID), Target: s.GroupID, Until: end,
			Activated: s.AssignmentType == "activated", CanAct: s.AssignmentType == "activated"})
		active[s.GroupID] = true
	}
	for _, s := range elig.Value {
		if s.AccessID != "member" {
			continue
		}
		row := accessRow{Kind: "group", Name: names.of(s.GroupID), Target: s.GroupID, Eligible: s.ID, Pending: pending[s.GroupID]}
		if s.ScheduleInfo != nil {
			row.Until = parseTime(s.ScheduleInfo.Expiration.EndDateTime)
		}
		row.CanAct = !row.Pending && !active[s.GroupID]
		d.Eligible = append(d.Eligible, row)
	}
	for _, q := range reqs.Value {
		row := requestRow{ID: q.ID, Kind: "group", Target: names.of(q.GroupID), Action: q.Action, Status: q.Status,
			Justification: q.Justification, Ticket: q.TicketInfo.TicketNumber, Created: parseTime(q.Created)}
		if q.ScheduleInfo != nil {
			row.Duration = q.ScheduleInfo.Expiration.Duration
		}
		d.Requests = append(d.Requests, row)
	}
	c.roleAccess(a, &d)
	for i := range d.Eligible {
		e := &d.Eligible[i]
		var rules []rule
		var err error
		if e.Kind == "group" {
			_, rules, err = a.groupPolicy(e.Target)
		} else {
			rules, err = a.rolePolicy(e.Scope, e.Target)
		}
		if err == nil {
			e.Policy.apply(rules)
		}
		e.Hours = allowedHours(e.Policy.MaxDuration)
	}
	slices.SortFunc(d.Requests, func(x, y requestRow) int { return y.Created.Compare(x.Created) })
	if len(d.Requests) > 20 {
		d.Requests = d.Requests[:20]
	}
	c.render(w, r, http.StatusOK, "access", page{Title: "My access", Nav: "access", Data: d})
}

// roleAccess adds the user's Azure role eligibilities and activations.
func (c *Console) roleAccess(a *api, d *accessData) {
	var elig, inForce graphList[armRole]
	sub := "/subscriptions/" + c.cfg.Subscription
	if err := a.arm("GET", sub+armAuthz+"roleEligibilityScheduleInstances?$filter=asTarget()&"+pimVersion, nil, &elig); err != nil {
		d.Problems = append(d.Problems, describe("your eligible roles", err))
		return
	}
	if err := a.arm("GET", sub+armAuthz+"roleAssignmentScheduleInstances?$filter=asTarget()&"+pimVersion, nil, &inForce); err != nil {
		d.Problems = append(d.Problems, describe("your active roles", err))
		return
	}
	var reqs graphList[struct {
		Name       string `json:"name"`
		Properties struct {
			Scope            string `json:"scope"`
			RoleDefinitionID string `json:"roleDefinitionId"`
			RequestType      string `json:"requestType"`
			Status           string `json:"status"`
			Justification    string `json:"justification"`
			CreatedOn        string `json:"createdOn"`
			TicketInfo       struct {
				TicketNumber string `json:"ticketNumber"`
			} `json:"ticketInfo"`
			ScheduleInfo struct {
				Expiration struct {
					Duration string `json:"duration"`
				} `json:"expiration"`
			} `json:"scheduleInfo"`
			ExpandedProperties struct {
				RoleDefinition struct {
					DisplayName string `json:"displayName"`
				} `json:"roleDefinition"`
			} `json:"expandedProperties"`
		} `json:"properties"`
	}]
	if err := a.arm("GET", armAuthz+"roleAssignmentScheduleRequests?$filter=asRequestor()&"+pimVersion, nil, &reqs); err != nil {
		d.Problems = append(d.Problems, describe("your role requests", err))
	}
	for _, q := range reqs.Value {
		p := q.Properties
		d.Requests = append(d.Requests, requestRow{ID: q.Name, Kind: "role", Scope: p.Scope,
			Target: roleName(p.ExpandedProperties.RoleDefinition.DisplayName, p.RoleDefinitionID) + " at " + p.Scope, Action: p.RequestType,
			Status: p.Status, Justification: p.Justification, Ticket: p.TicketInfo.TicketNumber, Duration: p.ScheduleInfo.Expiration.Duration,
			Created: parseTime(p.CreatedOn)})
	}
	active := map[string]bool{}
	for _, x := range inForce.Value {
		p := x.Properties
		if p.AssignmentType != "Activated" {
			continue
		}
		d.Active = append(d.Active, accessRow{Kind: "role", Name: roleName(p.ExpandedProperties.RoleDefinition.DisplayName, p.RoleDefinitionID),
			Target: p.RoleDefinitionID, Scope: p.Scope, Until: parseTime(p.EndDateTime), Activated: true, CanAct: true})
		active[strings.ToLower(p.RoleDefinitionID+"|"+p.Scope)] = true
	}
	for _, x := range elig.Value {
		p := x.Properties
		d.Eligible = append(d.Eligible, accessRow{Kind: "role", Name: roleName(p.ExpandedProperties.RoleDefinition.DisplayName, p.RoleDefinitionID),
			Target: p.RoleDefinitionID, Scope: p.Scope, Eligible: p.RoleEligibilityScheduleID, Until: parseTime(p.EndDateTime),
			CanAct: !active[strings.ToLower(p.RoleDefinitionID+"|"+p.Scope)]})
	}
}

func roleName(display, id string) string {
	if display != "" {
		return display
	}
	return id[strings.LastIndex(id, "/")+1:]
}

// durationChoices are the Activate form's durations, in hours.
var durationChoices = []string{"0.5", "1", "2", "4", "8"}

// allowedHours lists the choices no longer than max (an ISO 8601
// duration; none: all of them).
func allowedHours(max string) []string {
	m := isoDuration.FindStringSubmatch(max)
	if m == nil || max == "" {
		return durationChoices
	}
	n := func(i int) float64 { v, _ := strconv.Atoi(m[i]); return float64(v) }
	limit := n(1)*365*24 + n(2)*30*24 + n(3)*7*24 + n(4)*24 + n(5) + n(6)/60 + n(7)/3600
	var out []string
	for _, h := range durationChoices {
		if v, _ := strconv.ParseFloat(h, 64); v <= limit {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		out = durationChoices[:1]
	}
	return out
}

// activate is the Activate form: a group membership (selfActivate) or an
// Azure role (SelfActivate), for a duration, with a justification and a
// ticket.
func (c *Console) activate(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	hours := f.Get("hours")
	if !slices.Contains(durationChoices, hours) {
		c.refused(w, r, "access", "Choose a duration from the list.")
		return
	}
	duration := "PT" + map[string]string{"0.5": "30M", "1": "1H", "2": "2H", "4": "4H", "8": "8H"}[hours]
	a := c.apiFor(r)
	s := sessionOf(r)
	var err error
	switch f.Get("kind") {
	case "group":
		body := map[string]any{"accessId": "member", "principalId": s.User.ID, "groupId": f.Get("target"), "action": "selfActivate",
			"justification": f.Get("justification"),
			"scheduleInfo": map[string]any{"startDateTime": time.Now().UTC().Format(time.RFC3339),
				"expiration": map[string]any{"type": "afterDuration", "duration": duration}}}
		if t := f.Get("ticket"); t != "" {
			body["ticketInfo"] = map[string]string{"ticketNumber": t, "ticketSystem": "keyward console"}
		}
		var out request
		if err = a.graph("POST", pimGroups+"assignmentScheduleRequests", body, &out); err == nil {
			c.done(w, r, "access", activationOutcome(out.Status))
			return
		}
	case "role":
		props := map[string]any{"principalId": s.User.ID, "roleDefinitionId": f.Get("target"), "requestType": "SelfActivate",
			"linkedRoleEligibilityScheduleId": f.Get("eligible"), "justification": f.Get("justification"),
			"scheduleInfo": map[string]any{"startDateTime": time.Now().UTC().Format(time.RFC3339),
				"expiration": map[string]any{"type": "AfterDuration", "duration": duration}}}
		if t := f.Get("ticket"); t != "" {
			props["ticketInfo"] = map[string]string{"ticketNumber": t, "ticketSystem": "keyward console"}
		}
		var out struct {
			Properties struct{ Status string } `json:"properties"`
		}
		if err = a.arm("PUT", armScope(f.Get("scope"))+armAuthz+"roleAssignmentScheduleRequests/"+uuid.NewString()+"?"+pimVersion,
			map[string]any{"properties": props}, &out); err == nil {
			c.done(w, r, "access", activationOutcome(out.Properties.Status))
			return
		}
	default:
		c.refused(w, r, "access", "Nothing to activate.")
		return
	}
	c.activationRefused(w, r, err)
}

// activationRefused says why the API refused an activation: the policy's
// rules in words, and a new sign-in when MFA is what is missing.
func (c *Console) activationRefused(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := err.(*apiError)
	if !ok {
		c.apiRefused(w, r, "access", "Activation refused", err)
		return
	}
	lines, mfa := failedRules(e.Message)
	if len(lines) == 0 {
		c.apiRefused(w, r, "access", "Activation refused", err)
		return
	}
	c.render(w, r, e.Status, "message", page{Title: "Not activated", Data: messageData{Lines: lines, Link: c.base + "access",
		SignInAgain: mfa, Detail: e.Message}})
}

func activationOutcome(status string) string {
	if status == "PendingApproval" {
		return "pending"
	}
	return "activated"
}

// deactivate ends an activation now.
func (c *Console) deactivate(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	a := c.apiFor(r)
	s := sessionOf(r)
	var err error
	switch f.Get("kind") {
	case "group":
		err = a.graph("POST", pimGroups+"assignmentScheduleRequests", map[string]any{"accessId": "member", "principalId": s.User.ID,
			"groupId": f.Get("target"), "action": "selfDeactivate"}, nil)
	case "role":
		err = a.arm("PUT", armScope(f.Get("scope"))+armAuthz+"roleAssignmentScheduleRequests/"+uuid.NewString()+"?"+pimVersion,
			map[string]any{"properties": map[string]any{"principalId": s.User.ID, "roleDefinitionId": f.Get("target"), "requestType": "SelfDeactivate"}}, nil)
	default:
		c.refused(w, r, "access", "Nothing to deactivate.")
		return
	}
	if err != nil {
		c.apiRefused(w, r, "access", "Deactivation refused", err)
		return
	}
	c.done(w, r, "access", "deactivated")
}

// cancel withdraws a pending request of the user's.
func (c *Console) cancel(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	id := f.Get("id")
	if id == "" || strings.ContainsAny(id, "/?#") {
		c.refused(w, r, "access", "No such request.")
		return
	}
	a := c.apiFor(r)
	var err error
	switch f.Get("kind") {
	case "group":
		err = a.graph("POST", pimGroups+"assignmentScheduleRequests/"+url.PathEscape(id)+"/cancel", nil, nil)
	case "role":
		err = a.arm("POST", armScope(f.Get("scope"))+armAuthz+"roleAssignmentScheduleRequests/"+url.PathEscape(id)+"/cancel?"+pimVersion, nil, nil)
	default:
		c.refused(w, r, "access", "No such request.")
		return
	}
	if err != nil {
		c.apiRefused(w, r, "access", "Not cancelled", err)
		return
	}
	c.done(w, r, "access", "cancelled")
}

// armScope makes a scope from a form safe to put in a path: an ARM scope
// ("/subscriptions/…"), escaped segment by segment.
func armScope(s string) string {
	if !strings.HasPrefix(s, "/subscriptions/") {
		return "/subscriptions/-"
	}
	parts := strings.Split(strings.Trim(s, "/"), "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/" + strings.Join(parts, "/")
}

// refused answers a form the console itself refuses.
func (c *Console) refused(w http.ResponseWriter, r *http.Request, back, msg string) {
	c.message(w, r, http.StatusBadRequest, "Not done", msg, c.base+back)
}

// apiRefused shows what the API answered to a change.
func (c *Console) apiRefused(w http.ResponseWriter, r *http.Request, back, title string, err error) {
	status := http.StatusBadGateway
	if e, ok := err.(*apiError); ok {
		status = e.Status
	} else {
		c.cfg.Log.ErrorContext(r.Context(), "a console call failed", "err", err)
	}
	c.message(w, r, status, title, err.Error(), c.base+back)
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// directory names principals by id, from Graph's getByIds.
type directory map[string]dirObject

type dirObject struct{ Name, Type string }

func (d directory) of(id string) string {
	if o := d[strings.ToLower(id)]; o.Name != "" {
		return o.Name
	}
	return id
}

// isGroup tells whether id is a group's.
func (d directory) isGroup(id string) bool {
	return d[strings.ToLower(id)].Type == "#microsoft.graph.group"
}

// names looks ids up in the directory; an id it cannot name stays an id.
func (a *api) names(ids []string) directory {
	out := directory{}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		var res graphList[struct {
			Type              string `json:"@odata.type"`
			ID                string `json:"id"`
			DisplayName       string `json:"displayName"`
			UserPrincipalName string `json:"userPrincipalName"`
		}]
		if err := a.graph("POST", "/v1.0/directoryObjects/getByIds", map[string]any{"ids": ids[:n]}, &res); err != nil {
			return out
		}
		for _, o := range res.Value {
			name := o.DisplayName
			if o.UserPrincipalName != "" {
				name = o.UserPrincipalName
			}
			out[strings.ToLower(o.ID)] = dirObject{Name: name, Type: o.Type}
		}
		ids = ids[n:]
	}
	return out
}
