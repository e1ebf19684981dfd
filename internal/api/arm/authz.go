package arm

import (
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/odata"
	"github.com/keyward/keyward/internal/api/wire"
	"github.com/keyward/keyward/internal/armrbac"
	"github.com/keyward/keyward/internal/fault"
)

const authzSegment = "/providers/Microsoft.Authorization/"

func (a *API) definitionID(id string) string {
	return a.subscriptionID() + "/providers/Microsoft.Authorization/roleDefinitions/" + id
}

func (a *API) assignmentOut(x armrbac.Assignment) wire.ARMRoleAssignment {
	var o wire.ARMRoleAssignment
	o.ID, o.Name, o.Type = x.ID, x.Name, "Microsoft.Authorization/roleAssignments"
	o.Properties.RoleDefinitionID, o.Properties.PrincipalID, o.Properties.PrincipalType = a.definitionID(x.RoleID), x.PrincipalID, x.PrincipalType
	o.Properties.Scope, o.Properties.CreatedOn = x.Scope, x.Created.Format(time.RFC3339)
	return o
}

func (a *API) definitionOut(r *armrbac.Role) wire.RoleDefinition {
	var o wire.RoleDefinition
	o.ID, o.Name, o.Type = a.definitionID(r.ID), r.ID, "Microsoft.Authorization/roleDefinitions"
	na := r.NotActions
	if na == nil {
		na = []string{}
	}
	o.Properties.RoleName, o.Properties.Description, o.Properties.Type = r.Name, r.Description, "BuiltInRole"
	o.Properties.Permissions = []wire.Permission{{Actions: r.Actions, NotActions: na, DataActions: []string{}, NotDataActions: []string{}}}
	o.Properties.AssignableScopes = []string{"/"}
	return o
}

// assignmentRequest is the body of a role assignment PUT.
type assignmentRequest wire.ARMRoleAssignmentCreate

// validate checks the body on its own; armrbac.Assign checks the role,
// the principal and the scope.
func (req *assignmentRequest) validate() error {
	p := req.Properties
	if p.RoleDefinitionID == "" || p.PrincipalID == "" {
		return fault.Invalidf("properties.roleDefinitionId and properties.principalId are required")
	}
	return nil
}

// The $filter terms of control-plane role lists that az sends.
var (
	filterAtScope   = regexp.MustCompile(`(?i)^atScope\(\)$`)
	filterPrincipal = regexp.MustCompile(`(?i)^principalId\s+eq\s+'([^']*)'$`)
	filterRoleName  = regexp.MustCompile(`(?i)^roleName\s+eq\s+'((?:[^']|'')*)'$`)
	filterRoleType  = regexp.MustCompile(`(?i)^type\s+eq\s+'(BuiltInRole|CustomRole)'$`)
)

// assignmentFilter parses a role assignment list's $filter: atScope()
// and principalId eq '{id}', as ARM takes them; anything else is refused
// rather than ignored, so a filter never silently widens a list.
func assignmentFilter(filter string) (atScope bool, principal string, err error) {
	terms, err := odata.Terms(filter)
	if err != nil {
		return false, "", err
	}
	for _, t := range terms {
		switch {
		case filterAtScope.MatchString(t):
			atScope = true
		case filterPrincipal.MatchString(t):
			principal = filterPrincipal.FindStringSubmatch(t)[1]
		default:
			return false, "", fault.Errorf(fault.Invalid, "InvalidFilterInQueryString", "unsupported $filter %q: use atScope() and/or principalId eq '{id}'", t)
		}
	}
	return atScope, principal, nil
}

// definitionFilter parses a role definition list's $filter: roleName eq
// '{name}' and type eq 'BuiltInRole'|'CustomRole'.
func definitionFilter(filter string) (name string, customOnly bool, err error) {
	terms, err := odata.Terms(filter)
	if err != nil {
		return "", false, err
	}
	for _, t := range terms {
		switch {
		case filterRoleName.MatchString(t):
			name = odata.Unquote(filterRoleName.FindStringSubmatch(t)[1])
		case filterRoleType.MatchString(t):
			customOnly = strings.EqualFold(filterRoleType.FindStringSubmatch(t)[1], "CustomRole")
		default:
			return "", false, fault.Errorf(fault.Invalid, "InvalidFilterInQueryString", "unsupported $filter %q: use roleName eq '{name}' and/or type eq 'CustomRole'", t)
		}
	}
	return name, customOnly, nil
}

// authzScope is the scope an authorization path names: what stands before
// /providers/Microsoft.Authorization/, the subscription when nothing does.
func (a *API) authzScope(r *http.Request) string {
	if sc := r.PathValue("scope"); sc != "" {
		return sc
	}
	return a.subscriptionID()
}

func (a *API) listDefinitions(w http.ResponseWriter, r *http.Request) error {
	out := map[string][]wire.RoleDefinition{"value": {}}
	want, custom, err := definitionFilter(r.URL.Query().Get("$filter"))
	if err != nil {
		return err
	}
	for _, role := range armrbac.BuiltInRoles() {
		if custom {
			break // every control-plane role here is built in
		}
		if want == "" || strings.EqualFold(role.Name, want) {
			out["value"] = append(out["value"], a.definitionOut(&role))
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getDefinition(w http.ResponseWriter, r *http.Request) error {
	role, ok := armrbac.RoleByID(r.PathValue("id"))
	if !ok {
		return fault.Errorf(fault.NotFound, "RoleDefinitionDoesNotExist", "The role definition '%s' does not exist.", r.PathValue("id"))
	}
	httpx.WriteJSON(w, http.StatusOK, a.definitionOut(role))
	return nil
}

func (a *API) listAssignments(w http.ResponseWriter, r *http.Request) error {
	atScope, principal, err := assignmentFilter(r.URL.Query().Get("$filter"))
	if err != nil {
		return err
	}
	as, err := a.rbac.List(r.Context(), a.authzScope(r), atScope, principal)
	if err != nil {
		return err
	}
	out := map[string][]wire.ARMRoleAssignment{"value": {}}
	for _, x := range as {
		out["value"] = append(out["value"], a.assignmentOut(x))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getAssignment(w http.ResponseWriter, r *http.Request) error {
	x, err := a.rbac.Get(r.Context(), armrbac.AssignmentID(a.authzScope(r), r.PathValue("name")))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.assignmentOut(x))
	return nil
}

func (a *API) putAssignment(w http.ResponseWriter, r *http.Request) error {
	var req assignmentRequest
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	p := req.Properties
	x, err := a.rbac.Assign(r.Context(), armrbac.Assignment{Name: r.PathValue("name"), Scope: a.authzScope(r), RoleID: p.RoleDefinitionID,
		PrincipalID: p.PrincipalID, PrincipalType: p.PrincipalType})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, a.assignmentOut(x))
	return nil
}

func (a *API) deleteAssignment(w http.ResponseWriter, r *http.Request) error {
	x, err := a.rbac.Delete(r.Context(), armrbac.AssignmentID(a.authzScope(r), r.PathValue("name")))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.assignmentOut(x))
	return nil
}
