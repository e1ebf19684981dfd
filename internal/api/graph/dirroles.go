package graph

import (
	"encoding/base64"
	"net/http"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
)

const dirRoleAssignments = "/v1.0/roleManagement/directory/roleAssignments"

// directoryRoleOperations grant and take away the directory roles Keyward
// knows (Global Administrator, Privileged Role Administrator) as Entra's
// unifiedRoleAssignment, tenant-wide only (directoryScopeId "/"). Changes
// need a Global Administrator; reads are open, as the other directory
// reads are.
func (a *API) directoryRoleOperations() []route.Op {
	perm := "microsoft.directory/roleAssignments/"
	return []route.Op{
		{Name: perm + "standard/read", Method: http.MethodGet, Pattern: dirRoleAssignments, Handle: a.listRoleAssignments},
		{Name: perm + "allProperties/allTasks", Method: http.MethodPost, Pattern: dirRoleAssignments, Action: perm + "allProperties/allTasks", Handle: a.createRoleAssignment},
		{Name: perm + "standard/read", Method: http.MethodGet, Pattern: dirRoleAssignments + "/{id}", Handle: a.getRoleAssignment},
		{Name: perm + "allProperties/allTasks", Method: http.MethodDelete, Pattern: dirRoleAssignments + "/{id}", Action: perm + "allProperties/allTasks", Handle: a.deleteRoleAssignment},
	}
}

// dotnetGUID is a GUID's bytes in .NET's order, which Entra's role
// assignment ids encode.
func dotnetGUID(u uuid.UUID) []byte {
	b := u[:]
	return []byte{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]}
}

func fromDotnetGUID(b []byte) uuid.UUID {
	var u uuid.UUID
	copy(u[:], []byte{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]})
	copy(u[8:], b[8:])
	return u
}

// roleAssignmentID is Entra's id of a tenant-wide role assignment: the
// role template's and the principal's GUIDs in base64url, then "-1".
func roleAssignmentID(templateID, principalID string) string {
	t, err1 := uuid.Parse(templateID)
	p, err2 := uuid.Parse(principalID)
	if err1 != nil || err2 != nil {
		return templateID + "_" + principalID
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(dotnetGUID(t)) + enc.EncodeToString(dotnetGUID(p)) + "-1"
}

func parseRoleAssignmentID(id string) (templateID, principalID string, ok bool) {
	s, found := strings.CutSuffix(id, "-1")
	if !found || len(s) != 44 {
		return "", "", false
	}
	t, err1 := base64.RawURLEncoding.DecodeString(s[:22])
	p, err2 := base64.RawURLEncoding.DecodeString(s[22:])
	if err1 != nil || err2 != nil || len(t) != 16 || len(p) != 16 {
		return "", "", false
	}
	return fromDotnetGUID(t).String(), fromDotnetGUID(p).String(), true
}

func roleAssignmentJSON(templateID, principalID string) map[string]any {
	return map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleAssignment", "id": roleAssignmentID(templateID, principalID),
		"roleDefinitionId": templateID, "principalId": principalID, "directoryScopeId": "/", "appScopeId": nil}
}

// ErrNoRoleAssignment: there is no such directory role assignment.
var ErrNoRoleAssignment = fault.New(fault.NotFound, "Request_ResourceNotFound", "The role assignment does not exist.")

func (a *API) createRoleAssignment(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		RoleDefinitionID string  `json:"roleDefinitionId"`
		PrincipalID      string  `json:"principalId"`
		DirectoryScopeID *string `json:"directoryScopeId"`
		AppScopeID       *string `json:"appScopeId"`
	}
	if err := httpx.ReadJSON(w, r, &in); err != nil {
		return err
	}
	role := identity.DirectoryRoleByTemplate(in.RoleDefinitionID)
	if role == "" {
		return fault.Errorf(fault.Invalid, "Request_BadRequest", "roleDefinitionId %q is not a directory role Keyward assigns (Global Administrator %s, Privileged Role Administrator %s)",
			in.RoleDefinitionID, identity.DirectoryRoleTemplates[identity.GlobalAdministrator], identity.DirectoryRoleTemplates[identity.PrivilegedRoleAdministrator])
	}
	if in.DirectoryScopeID == nil || *in.DirectoryScopeID != "/" || (in.AppScopeID != nil && *in.AppScopeID != "") {
		return fault.Errorf(fault.Invalid, "Request_BadRequest", "only tenant-wide assignments are supported: directoryScopeId must be \"/\"")
	}
	p, err := a.dir.Get(r.Context(), in.PrincipalID)
	if err != nil {
		return err
	}
	if p.Kind == store.KindGroup {
		return fault.Errorf(fault.Invalid, "Request_BadRequest", "directory roles are assigned to users and service principals, not groups")
	}
	changed, err := a.dir.SetRole(r.Context(), p.ID, role, true)
	if err != nil {
		return err
	}
	if !changed {
		return fault.Errorf(fault.Conflict, "Request_BadRequest", "A conflicting object with one or more of the specified property values is present in the directory.")
	}
	httpx.WriteJSON(w, http.StatusCreated, roleAssignmentJSON(identity.DirectoryRoleTemplates[role], p.ID))
	return nil
}

func (a *API) listRoleAssignments(w http.ResponseWriter, r *http.Request) error {
	f := map[string]string{}
	if q := r.URL.Query().Get("$filter"); q != "" {
		var err error
		if f, err = parseFilter(q); err != nil {
			return err
		}
		for k := range f {
			if k != "principalid" && k != "roledefinitionid" && k != "directoryscopeid" {
				return fault.Errorf(fault.Invalid, "Request_UnsupportedQuery", "$filter supports principalId, roleDefinitionId and directoryScopeId, not %s", k)
			}
		}
	}
	if s, ok := f["directoryscopeid"]; ok && s != "/" {
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": []any{}})
		return nil
	}
	out := []map[string]any{}
	for _, kind := range []string{store.KindUser, store.KindServicePrincipal, store.KindManagedIdentity} {
		if id := f["principalid"]; id != "" {
			p, err := a.dir.Get(r.Context(), id)
			if err != nil || p.Kind != kind {
				continue
			}
			out = append(out, a.assignmentsOf(p, f["roledefinitionid"])...)
			continue
		}
		ps, err := a.dir.List(r.Context(), kind)
		if err != nil {
			return err
		}
		for _, p := range ps {
			out = append(out, a.assignmentsOf(p, f["roledefinitionid"])...)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i]["id"].(string) < out[j]["id"].(string) })
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (a *API) assignmentsOf(p *identity.Principal, roleDefinitionID string) []map[string]any {
	var out []map[string]any
	for _, role := range p.DirectoryRoles {
		t, ok := identity.DirectoryRoleTemplates[role]
		if ok && (roleDefinitionID == "" || strings.EqualFold(roleDefinitionID, t)) {
			out = append(out, roleAssignmentJSON(t, p.ID))
		}
	}
	return out
}

func (a *API) roleAssignment(r *http.Request) (role, principalID string, err error) {
	t, pid, ok := parseRoleAssignmentID(r.PathValue("id"))
	if !ok {
		return "", "", ErrNoRoleAssignment
	}
	role = identity.DirectoryRoleByTemplate(t)
	has, err := a.dir.HasRole(r.Context(), pid, role)
	if err != nil {
		return "", "", err
	}
	if role == "" || !has {
		return "", "", ErrNoRoleAssignment
	}
	return role, pid, nil
}

func (a *API) getRoleAssignment(w http.ResponseWriter, r *http.Request) error {
	role, pid, err := a.roleAssignment(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, roleAssignmentJSON(identity.DirectoryRoleTemplates[role], pid))
	return nil
}

func (a *API) deleteRoleAssignment(w http.ResponseWriter, r *http.Request) error {
	role, pid, err := a.roleAssignment(r)
	if err != nil {
		return err
	}
	if _, err := a.dir.SetRole(r.Context(), pid, role, false); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
