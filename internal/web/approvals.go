package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Approvals: the requests waiting for the signed-in user's decision, and
// Approve or Deny with a justification. Whether the user may decide is
// the API's to say: an approver's own request is not hers to approve.

const approvalsVersion = "api-version=2021-01-01-preview"

type approvalRow struct {
	Kind, ID, ApprovalID string
	Requester, Target    string
	Justification        string
	Ticket, Duration     string
	Created              time.Time
}

func (c *Console) approvals(w http.ResponseWriter, r *http.Request) {
	a := c.apiFor(r)
	var rows []approvalRow
	var problems []string
	var groups graphList[request]
	if err := a.graph("GET", pimGroups+"assignmentScheduleRequests/filterByCurrentUser(on='approver')?$filter="+
		url.QueryEscape("status eq 'PendingApproval'"), nil, &groups); err != nil {
		problems = append(problems, describe("group requests", err))
	}
	var roles graphList[struct {
		Name       string `json:"name"`
		Properties struct {
			PrincipalID      string `json:"principalId"`
			RoleDefinitionID string `json:"roleDefinitionId"`
			Scope            string `json:"scope"`
			Status           string `json:"status"`
			ApprovalID       string `json:"approvalId"`
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
	if err := a.arm("GET", armAuthz+"roleAssignmentScheduleRequests?$filter=asApprover()&"+pimVersion, nil, &roles); err != nil {
		problems = append(problems, describe("role requests", err))
	}
	var ids []string
	for _, q := range groups.Value {
		ids = append(ids, q.PrincipalID, q.GroupID)
	}
	for _, q := range roles.Value {
		ids = append(ids, q.Properties.PrincipalID)
	}
	names := a.names(ids)
	for _, q := range groups.Value {
		row := approvalRow{Kind: "group", ID: q.ID, ApprovalID: q.ApprovalID, Requester: names.of(q.PrincipalID),
			Target: "member of " + names.of(q.GroupID), Justification: q.Justification, Ticket: q.TicketInfo.TicketNumber, Created: parseTime(q.Created)}
		if row.ApprovalID == "" {
			row.ApprovalID = q.ID
		}
		if q.ScheduleInfo != nil {
			row.Duration = q.ScheduleInfo.Expiration.Duration
		}
		rows = append(rows, row)
	}
	for _, q := range roles.Value {
		p := q.Properties
		if p.Status != "PendingApproval" {
			continue
		}
		id := p.ApprovalID
		id = id[strings.LastIndex(id, "/")+1:]
		rows = append(rows, approvalRow{Kind: "role", ID: q.Name, ApprovalID: id, Requester: names.of(p.PrincipalID),
			Target:        roleName(p.ExpandedProperties.RoleDefinition.DisplayName, p.RoleDefinitionID) + " at " + p.Scope,
			Justification: p.Justification, Ticket: p.TicketInfo.TicketNumber, Duration: p.ScheduleInfo.Expiration.Duration, Created: parseTime(p.CreatedOn)})
	}
	slices.SortFunc(rows, func(x, y approvalRow) int { return x.Created.Compare(y.Created) })
	c.render(w, r, http.StatusOK, "approvals", page{Title: "Approvals", Nav: "approvals",
		Data: struct {
			Rows     []approvalRow
			Problems []string
		}{rows, problems}})
}

// decide approves or denies: it finds the approval's step that waits for
// the user and PATCHes it, as the Entra admin center does.
func (c *Console) decide(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	result := map[string]string{"approve": "Approve", "deny": "Deny"}[f.Get("decision")]
	justification := strings.TrimSpace(f.Get("justification"))
	if result == "" || justification == "" || len(justification) > 500 {
		c.refused(w, r, "approvals", "Choose Approve or Deny, and say why (at most 500 characters).")
		return
	}
	id := f.Get("approval")
	if id == "" || strings.ContainsAny(id, "/?#") {
		c.refused(w, r, "approvals", "No such request.")
		return
	}
	a := c.apiFor(r)
	body := map[string]string{"reviewResult": result, "justification": justification}
	var err error
	switch f.Get("kind") {
	case "group":
		var ap struct {
			Steps []struct {
				ID           string `json:"id"`
				Status       string `json:"status"`
				AssignedToMe bool   `json:"assignedToMe"`
			} `json:"steps"`
		}
		base := pimGroups + "assignmentApprovals/" + url.PathEscape(id)
		if err = a.graph("GET", base+"/steps", nil, &struct {
			Value any `json:"value"`
		}{&ap.Steps}); err == nil {
			step := ""
			for _, s := range ap.Steps {
				if s.Status == "InProgress" {
					step = s.ID
				}
			}
			if step == "" {
				c.refused(w, r, "approvals", "That request has no step waiting for your decision.")
				return
			}
			err = a.graph("PATCH", base+"/steps/"+url.PathEscape(step), body, nil)
		}
	case "role":
		var ap graphList[struct {
			Name       string `json:"name"`
			Properties struct {
				Status       string `json:"status"`
				AssignedToMe bool   `json:"assignedToMe"`
			} `json:"properties"`
		}]
		base := armAuthz + "roleAssignmentApprovals/" + url.PathEscape(id)
		if err = a.arm("GET", base+"/stages?"+approvalsVersion, nil, &ap); err == nil {
			stage := ""
			for _, s := range ap.Value {
				if s.Properties.Status == "InProgress" {
					stage = s.Name
				}
			}
			if stage == "" {
				c.refused(w, r, "approvals", "That request has no stage waiting for your decision.")
				return
			}
			err = a.arm("PATCH", base+"/stages/"+url.PathEscape(stage)+"?"+approvalsVersion, map[string]any{"properties": body}, nil)
		}
	default:
		c.refused(w, r, "approvals", "No such request.")
		return
	}
	if err != nil {
		c.apiRefused(w, r, "approvals", "Decision refused", err)
		return
	}
	c.done(w, r, "approvals", map[string]string{"Approve": "approved", "Deny": "denied"}[result])
}
