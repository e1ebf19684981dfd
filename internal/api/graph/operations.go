package graph

import (
	"net/http"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
)

type handler func(w http.ResponseWriter, r *http.Request) error

// globalAdministratorRoleID is Entra's template id of the Global
// Administrator directory role, named in audit records of directory writes.
const globalAdministratorRoleID = "62e90394-69f5-4237-9190-012177145e10"

// operations is the directory's table, named by Entra's directory
// permissions. Reads are open to every principal of the tenant; writes
// (rows with an Action) need the Global Administrator role.
func (a *API) operations() *route.Table {
	read := func(name, method, pattern string, h handler) route.Op {
		return route.Op{Name: name, Method: method, Pattern: pattern, Handle: h}
	}
	write := func(name, method, pattern string, h handler) route.Op {
		return route.Op{Name: name, Method: method, Pattern: pattern, Action: name, Handle: h}
	}
	var ops []route.Op
	for _, c := range []struct{ coll, kind, perm string }{
		{"users", store.KindUser, "users"}, {"groups", store.KindGroup, "groups"},
		{"servicePrincipals", store.KindServicePrincipal, "servicePrincipals"},
	} {
		base, perm := "/v1.0/"+c.coll, "microsoft.directory/"+c.perm
		ops = append(ops,
			read(perm+"/standard/read", http.MethodGet, base, a.list(c.kind)),
			write(perm+"/create", http.MethodPost, base, a.create(c.kind)),
			read(perm+"/standard/read", http.MethodGet, base+"/{id}", a.get(c.kind)),
			write(perm+"/delete", http.MethodDelete, base+"/{id}", a.remove(c.kind)))
	}
	ops = append(ops,
		read("microsoft.directory/groups/members/read", http.MethodGet, "/v1.0/groups/{id}/members", a.members),
		write("microsoft.directory/groups/members/update", http.MethodPost, "/v1.0/groups/{id}/members/$ref", a.addMember),
		write("microsoft.directory/groups/members/update", http.MethodDelete, "/v1.0/groups/{id}/members/{member}/$ref", a.removeMember),
		read("microsoft.directory/groups/members/read", http.MethodPost, "/v1.0/directoryObjects/{id}/checkMemberGroups", a.checkMemberGroups),
		read("microsoft.directory/directoryObjects/read", http.MethodPost, "/v1.0/directoryObjects/getByIds", a.getByIDs),
		write("microsoft.directory/servicePrincipals/credentials/update", http.MethodPost, "/v1.0/servicePrincipals/{id}/addPassword", a.addPassword),
		write("microsoft.directory/servicePrincipals/credentials/update", http.MethodPost, "/v1.0/servicePrincipals/{id}/removePassword", a.removePassword),
		write("microsoft.directory/servicePrincipals/credentials/update", http.MethodPatch, "/v1.0/servicePrincipals/{id}", a.patchServicePrincipal),
		read("microsoft.directory/servicePrincipals/credentials/read", http.MethodGet, "/v1.0/servicePrincipals/{id}/keyCredentials", a.keyCredentials),
		// Keyward has no application objects apart from service principals,
		// so an application's id here is its service principal's object id
		// or appId.
		read("microsoft.directory/applications/standard/read", http.MethodGet, "/v1.0/applications/{id}", a.getApplication),
		write("microsoft.directory/applications/basic/update", http.MethodPatch, "/v1.0/applications/{id}", a.patchApplication),
		read("microsoft.directory/applications/credentials/read", http.MethodGet, "/v1.0/applications/{id}/federatedIdentityCredentials", a.listFederated),
		write("microsoft.directory/applications/credentials/update", http.MethodPost, "/v1.0/applications/{id}/federatedIdentityCredentials", a.createFederated),
		write("microsoft.directory/applications/credentials/update", http.MethodDelete, "/v1.0/applications/{id}/federatedIdentityCredentials/{name}", a.deleteFederated),
		// A user's TOTP authenticator. The /me rows act on the signed-in
		// user only, so they need no directory role; enrollment and
		// confirmation are Keyward extensions (Graph enrolls interactively).
		read("microsoft.directory/users/standard/read", http.MethodGet, "/v1.0/me", a.getMe),
		read("microsoft.directory/users/authenticationMethods/standard/read", http.MethodGet, "/v1.0/me/authentication/softwareOathMethods", a.myOathMethods),
		read("microsoft.directory/users/authenticationMethods/self/update", http.MethodPost, "/v1.0/me/authentication/softwareOathMethods", a.enrollOath),
		read("microsoft.directory/users/authenticationMethods/self/update", http.MethodPost, "/v1.0/me/authentication/softwareOathMethods/{methodId}/confirm", a.confirmOath),
		read("microsoft.directory/users/authenticationMethods/standard/read", http.MethodGet, "/v1.0/users/{id}/authentication/softwareOathMethods", a.userOathMethods),
		write("microsoft.directory/users/authenticationMethods/update", http.MethodDelete, "/v1.0/users/{id}/authentication/softwareOathMethods/{methodId}", a.resetOath),
		read("microsoft.directory/users/invalidateAllRefreshTokens/self", http.MethodPost, "/v1.0/me/revokeSignInSessions", a.revokeSessions),
		write("microsoft.directory/users/invalidateAllRefreshTokens", http.MethodPost, "/v1.0/users/{id}/revokeSignInSessions", a.revokeSessions),
	)
	ops = append(ops, a.pimOperations()...)
	ops = append(ops, a.pimAlertOperations()...)
	ops = append(ops, a.directoryRoleOperations()...)
	return route.NewTable(ops...)
}

// Operations lists the directory's operations, for docs and tests.
func (a *API) Operations() []route.Op { return a.ops.Ops() }

// Match finds the operation of a request for path.
func (a *API) Match(method, path string) (*route.Op, []route.Param) { return a.ops.Match(method, path) }

// Serve runs a matched operation: reads for any principal, writes for
// Global Administrators (the decision goes to the audit record), and
// renders errors in Graph's envelope.
func (a *API) Serve(w http.ResponseWriter, r *http.Request, op *route.Op) {
	if err := a.serve(w, r, op); err != nil {
		httpx.WriteError(w, r, a.log, err)
	}
}

func (a *API) serve(w http.ResponseWriter, r *http.Request, op *route.Op) error {
	c, ok := identity.FromContext(r.Context())
	if !ok {
		return ErrForbidden
	}
	if op.Action != "" {
		isAdmin, err := a.dir.HasRole(r.Context(), c.ObjectID, identity.GlobalAdministrator)
		if err != nil {
			return err
		}
		rec := route.RecordOf(r.Context())
		rec.Action, rec.Scope = op.Action, "/"
		rec.Decision = &route.Decision{Allowed: isAdmin}
		if !isAdmin {
			return ErrForbidden
		}
		rec.Decision.RoleID = globalAdministratorRoleID
	}
	return op.Handle(w, r)
}
