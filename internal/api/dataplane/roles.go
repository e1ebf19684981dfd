package dataplane

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/keyward/keyward/internal/api/odata"
	"github.com/keyward/keyward/internal/api/wire"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/rbac"
)

// Wire models of the Managed HSM RBAC API.

const (
	roleDefinitionPrefix = "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/"
	assignmentType       = "Microsoft.Authorization/roleAssignments"
	definitionType       = "Microsoft.Authorization/roleDefinitions"
	authorizationSegment = "/providers/microsoft.authorization/"
)

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// assignmentID is the id Azure gives an assignment: its scope, then the
// provider path ("/" contributes nothing before "/providers").
func assignmentID(scope, name string) string {
	return strings.TrimSuffix(scope, "/") + "/providers/Microsoft.Authorization/roleAssignments/" + name
}

func assignmentOut(a rbac.Assignment) wire.RoleAssignment {
	return wire.RoleAssignment{ID: assignmentID(a.Scope, a.ID), Name: a.ID, Type: assignmentType,
		Properties: wire.RoleAssignmentProperties{Scope: a.Scope, RoleDefinitionID: roleDefinitionPrefix + a.RoleID, PrincipalID: a.PrincipalID}}
}

func definitionOut(r rbac.Role) wire.RoleDefinition {
	t := "CustomRole"
	if r.BuiltIn {
		t = "AKVBuiltInRole"
	}
	out := wire.RoleDefinition{ID: roleDefinitionPrefix + r.ID, Name: r.ID, Type: definitionType,
		Properties: wire.RoleDefinitionProperties{RoleName: r.Name, Description: r.Description, Type: t,
			Permissions: []wire.Permission{}, AssignableScopes: r.AssignableScopes}}
	for _, p := range r.Permissions {
		out.Properties.Permissions = append(out.Properties.Permissions, wire.Permission{Actions: nonNil(p.Actions),
			NotActions: nonNil(p.NotActions), DataActions: actionStrings(p.DataActions), NotDataActions: actionStrings(p.NotDataActions)})
	}
	return out
}

func actionStrings(as []rbac.Action) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, string(a))
	}
	return out
}

// roleDefinitionGUID takes the GUID out of a role definition id given in
// any of the forms clients send: the full id, with a leading "/", or bare.
func roleDefinitionGUID(id string) string {
	if i := strings.LastIndex(strings.ToLower(id), "/roledefinitions/"); i >= 0 {
		return id[i+len("/roleDefinitions/"):]
	}
	return id
}

// splitScope cuts "{scope}/providers/Microsoft.Authorization/..." into the
// scope and the path from "providers" on. ok is false for other paths.
func splitScope(path string) (scope, rest string, ok bool) {
	i := strings.Index(strings.ToLower(path), authorizationSegment)
	if i < 0 {
		return "", "", false
	}
	scope = path[:i]
	if scope == "" {
		scope = "/"
	}
	return scope, path[i+1:], true
}

func roleOperations() []operation {
	assignScope := func(c *call) string { return c.scope }
	ops := []operation{
		op("RoleAssignmentList", http.MethodGet, path("providers", "Microsoft.Authorization", "roleAssignments"), rbac.RoleAssignmentsRead, assignScope, (*API).listAssignments),
		op("RoleAssignmentGet", http.MethodGet, path("providers", "Microsoft.Authorization", "roleAssignments", "{name}"), rbac.RoleAssignmentsRead, assignScope, (*API).getAssignment),
		op("RoleAssignmentCreate", http.MethodPut, path("providers", "Microsoft.Authorization", "roleAssignments", "{name}"), rbac.RoleAssignmentsWrite, assignScope, (*API).createAssignment),
		op("RoleAssignmentDelete", http.MethodDelete, path("providers", "Microsoft.Authorization", "roleAssignments", "{name}"), rbac.RoleAssignmentsDelete, assignScope, (*API).deleteAssignment),
		op("RoleDefinitionList", http.MethodGet, path("providers", "Microsoft.Authorization", "roleDefinitions"), rbac.RoleDefinitionsRead, hsmScope, (*API).listDefinitions),
		op("RoleDefinitionGet", http.MethodGet, path("providers", "Microsoft.Authorization", "roleDefinitions", "{name}"), rbac.RoleDefinitionsRead, hsmScope, (*API).getDefinition),
		op("RoleDefinitionCreate", http.MethodPut, path("providers", "Microsoft.Authorization", "roleDefinitions", "{name}"), rbac.RoleDefinitionsWrite, hsmScope, (*API).putDefinition),
		op("RoleDefinitionDelete", http.MethodDelete, path("providers", "Microsoft.Authorization", "roleDefinitions", "{name}"), rbac.RoleDefinitionsDelete, hsmScope, (*API).deleteDefinition),
	}
	for i := range ops {
		ops[i].beforeActivation = true
	}
	return ops
}

var (
	filterAtScope   = regexp.MustCompile(`(?i)^atScope\(\)$`)
	filterBelow     = regexp.MustCompile(`(?i)^atScopeAndBelow\(\)$`)
	filterPrincipal = regexp.MustCompile(`(?i)^principalId\s+eq\s+'([^']*)'$`)
	filterRoleName  = regexp.MustCompile(`(?i)^roleName\s+eq\s+'((?:[^']|'')*)'$`)
)

// assignmentFilter parses the $filter of a role assignment list.
func assignmentFilter(scope, filter string) (rbac.Filter, error) {
	f := rbac.Filter{Scope: scope}
	terms, err := odata.Terms(filter)
	if err != nil {
		return f, err
	}
	for _, t := range terms {
		switch {
		case filterAtScope.MatchString(t):
			f.AtScope = true
		case filterPrincipal.MatchString(t):
			f.PrincipalID = filterPrincipal.FindStringSubmatch(t)[1]
		default:
			return f, fault.Invalidf("unsupported $filter %q: use atScope() and/or principalId eq '{id}'", t)
		}
	}
	return f, nil
}

// definitionFilter parses the $filter of a role definition list into the
// role name it asks for ("" for all).
func definitionFilter(filter string) (string, error) {
	var name string
	terms, err := odata.Terms(filter)
	if err != nil {
		return "", err
	}
	for _, t := range terms {
		switch {
		case filterBelow.MatchString(t):
		case filterRoleName.MatchString(t):
			name = odata.Unquote(filterRoleName.FindStringSubmatch(t)[1])
		default:
			return "", fault.Invalidf("unsupported $filter %q: use atScopeAndBelow() and/or roleName eq '{name}'", t)
		}
	}
	return name, nil
}

func (a *API) listAssignments(c *call) error {
	f, err := assignmentFilter(c.scope, c.r.URL.Query().Get("$filter"))
	if err != nil {
		return err
	}
	as, err := a.rbac.Assignments(c.ctx, c.hsm, f)
	if err != nil {
		return err
	}
	out := listResult[wire.RoleAssignment]{Value: []wire.RoleAssignment{}}
	for _, x := range as {
		out.Value = append(out.Value, assignmentOut(x))
	}
	return c.ok(out)
}

func (a *API) getAssignment(c *call) error {
	x, err := a.rbac.Assignment(c.ctx, c.hsm, c.name)
	if err != nil {
		return err
	}
	return c.ok(assignmentOut(x))
}

func (a *API) createAssignment(c *call) error {
	var req wire.RoleAssignmentCreate
	if err := c.readJSON(&req); err != nil {
		return err
	}
	if req.Properties == nil || req.Properties.RoleDefinitionID == "" || req.Properties.PrincipalID == "" {
		return fault.Invalidf("properties.roleDefinitionId and properties.principalId are required")
	}
	var creator string
	if caller, ok := identity.FromContext(c.ctx); ok {
		creator = caller.ObjectID
	}
	x, err := a.rbac.Assign(c.ctx, c.hsm, rbac.Assignment{ID: c.name, Scope: c.scope, CreatedBy: creator,
		RoleID: roleDefinitionGUID(req.Properties.RoleDefinitionID), PrincipalID: req.Properties.PrincipalID})
	if err != nil {
		return err
	}
	return c.status(http.StatusCreated, assignmentOut(x))
}

func (a *API) deleteAssignment(c *call) error {
	x, err := a.rbac.Unassign(c.ctx, c.hsm, c.name)
	if err != nil {
		return err
	}
	return c.ok(assignmentOut(x))
}

func (a *API) listDefinitions(c *call) error {
	name, err := definitionFilter(c.r.URL.Query().Get("$filter"))
	if err != nil {
		return err
	}
	roles, err := a.rbac.Roles(c.ctx, c.hsm)
	if err != nil {
		return err
	}
	out := listResult[wire.RoleDefinition]{Value: []wire.RoleDefinition{}}
	for _, r := range roles {
		if name == "" || strings.EqualFold(r.Name, name) {
			out.Value = append(out.Value, definitionOut(r))
		}
	}
	return c.ok(out)
}

func (a *API) getDefinition(c *call) error {
	r, err := a.rbac.Role(c.ctx, c.hsm, c.name)
	if err != nil {
		return err
	}
	return c.ok(definitionOut(r))
}

func (a *API) putDefinition(c *call) error {
	var req wire.RoleDefinitionCreate
	if err := c.readJSON(&req); err != nil {
		return err
	}
	if req.Properties == nil {
		return fault.Invalidf("properties is required")
	}
	p := req.Properties
	if p.Type != "" && !strings.EqualFold(p.Type, "CustomRole") {
		return fault.Invalidf("properties.type must be CustomRole")
	}
	role := rbac.Role{Name: p.RoleName, Description: p.Description, AssignableScopes: p.AssignableScopes}
	for _, w := range p.Permissions {
		role.Permissions = append(role.Permissions, rbac.Permission{Actions: w.Actions, NotActions: w.NotActions,
			DataActions: toActions(w.DataActions), NotDataActions: toActions(w.NotDataActions)})
	}
	r, err := a.rbac.PutRole(c.ctx, c.hsm, c.name, role)
	if err != nil {
		return err
	}
	return c.status(http.StatusCreated, definitionOut(r))
}

func toActions(ss []string) []rbac.Action {
	out := make([]rbac.Action, 0, len(ss))
	for _, s := range ss {
		out = append(out, rbac.Action(s))
	}
	return out
}

func (a *API) deleteDefinition(c *call) error {
	r, err := a.rbac.DeleteRole(c.ctx, c.hsm, c.name)
	if err != nil {
		return err
	}
	return c.ok(definitionOut(r))
}
