package arm

import (
	"net/http"
	"strings"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
)

// operations is the resource manager's table. Each row is named by Azure's
// action, as the activity log names it; Action is the right checked on
// Scope's resource before the handler runs ("" for lists, which show only
// what the caller may read).
func (a *API) operations() *route.Table {
	const (
		sub      = "/subscriptions/{sub}"
		rg       = sub + "/resourceGroups/{rg}"
		hsm      = rg + provider + "/{name}"
		deleted  = sub + "/providers/Microsoft.KeyVault/locations/{location}/deletedManagedHSMs"
		account  = rg + storageProvider + "/{account}"
		settings = hsm + "/providers/Microsoft.Insights/diagnosticSettings"
		identity = rg + identityProvider + "/{name}"
		fic      = identity + "/federatedIdentityCredentials"
	)
	get, put, patch, del, post := http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodPost
	op := func(method, pattern, action string, scope func(*http.Request) string, h func(http.ResponseWriter, *http.Request) error) route.Op {
		return route.Op{Name: action, Method: method, Pattern: pattern, Action: action, Scope: scope, Handle: h}
	}
	// list is a row whose handler filters by the right to read each item.
	list := func(pattern, name string, h func(http.ResponseWriter, *http.Request) error) route.Op {
		return route.Op{Name: name, Method: get, Pattern: pattern, Handle: h}
	}
	return route.NewTable(
		list("/subscriptions", "Microsoft.Resources/subscriptions/read", a.listSubscriptions),
		op(get, sub, "Microsoft.Resources/subscriptions/read", pathScope, a.getSubscription),
		list(sub+"/resourceGroups", "Microsoft.Resources/subscriptions/resourceGroups/read", a.listGroups),
		op(get, rg, "Microsoft.Resources/subscriptions/resourceGroups/read", pathScope, a.getGroup),
		op(put, rg, "Microsoft.Resources/subscriptions/resourceGroups/write", pathScope, a.putGroup),
		op(del, rg, "Microsoft.Resources/subscriptions/resourceGroups/delete", pathScope, a.deleteGroup),

		list(sub+provider, "Microsoft.KeyVault/managedHSMs/read", a.list),
		list(rg+provider, "Microsoft.KeyVault/managedHSMs/read", a.list),
		op(get, hsm, "Microsoft.KeyVault/managedHSMs/read", pathScope, a.get),
		op(put, hsm, "Microsoft.KeyVault/managedHSMs/write", pathScope, a.put),
		op(patch, hsm, "Microsoft.KeyVault/managedHSMs/write", pathScope, a.patch),
		op(del, hsm, "Microsoft.KeyVault/managedHSMs/delete", pathScope, a.remove),
		list(sub+"/providers/Microsoft.KeyVault/deletedManagedHSMs", "Microsoft.KeyVault/deletedManagedHsms/read", a.listDeleted),
		op(get, deleted+"/{name}", "Microsoft.KeyVault/locations/deletedManagedHsms/read", subScope, a.getDeleted),
		op(post, deleted+"/{name}/purge", "Microsoft.KeyVault/locations/deletedManagedHsms/purge/action", subScope, a.purge),
		list(sub+"/providers/Microsoft.KeyVault/locations/{location}/managedHsmOperationResults/{op}",
			"Microsoft.KeyVault/locations/managedHsmOperationResults/read", a.operationResult),

		list(sub+storageProvider, "Microsoft.Storage/storageAccounts/read", a.listAccounts),
		list(rg+storageProvider, "Microsoft.Storage/storageAccounts/read", a.listAccounts),
		op(get, account, "Microsoft.Storage/storageAccounts/read", pathScope, a.getAccount),
		op(get, account+auditEventsPath, "Microsoft.Storage/storageAccounts/read", accountScope, a.auditEvents),
		op(put, account, "Microsoft.Storage/storageAccounts/write", pathScope, a.putAccount),
		op(patch, account, "Microsoft.Storage/storageAccounts/write", pathScope, a.patchAccount),
		op(del, account, "Microsoft.Storage/storageAccounts/delete", pathScope, a.deleteAccount),
		op(post, account+"/keywardAgentSecret", agentSecretAction, resourceScope, a.accountAgentSecret),
		op(get, settings, "Microsoft.Insights/diagnosticSettings/read", pathScope, a.listSettings),
		op(get, settings+"/{setting}", "Microsoft.Insights/diagnosticSettings/read", pathScope, a.getSetting),
		op(put, settings+"/{setting}", "Microsoft.Insights/diagnosticSettings/write", pathScope, a.putSetting),
		op(del, settings+"/{setting}", "Microsoft.Insights/diagnosticSettings/delete", pathScope, a.deleteSetting),

		list(sub+identityProvider, "Microsoft.ManagedIdentity/userAssignedIdentities/read", a.listIdentities),
		list(rg+identityProvider, "Microsoft.ManagedIdentity/userAssignedIdentities/read", a.listIdentities),
		op(get, identity, "Microsoft.ManagedIdentity/userAssignedIdentities/read", pathScope, a.getIdentity),
		op(put, identity, "Microsoft.ManagedIdentity/userAssignedIdentities/write", pathScope, a.putIdentity),
		op(del, identity, "Microsoft.ManagedIdentity/userAssignedIdentities/delete", pathScope, a.deleteIdentity),
		op(post, identity+"/keywardAgentSecret", agentSecretAction, resourceScope, a.agentSecret),
		op(get, fic, "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read", pathScope, a.listFederated),
		// A federated credential lets its issuer sign in as the identity, as
		// a minted secret does: writing one needs the same right (Azure lets
		// a Contributor do it; Keyward does not).
		op(put, fic+"/{fic}", agentSecretAction, pathScope, a.putFederated),
		op(del, fic+"/{fic}", "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete", pathScope, a.deleteFederated),
	)
}

// authorizationOperations are the rows under any scope's
// /providers/Microsoft.Authorization/: role definitions and assignments
// exist at every scope.
func (a *API) authorizationOperations() *route.Table {
	op := func(method, pattern, action string, h func(http.ResponseWriter, *http.Request) error) route.Op {
		return route.Op{Name: action, Method: method, Pattern: pattern, Action: action, Scope: a.authzScope, Handle: h}
	}
	return route.NewTable(append([]route.Op{
		// Role definitions are the built-ins, documented publicly: every
		// signed-in principal reads them (az and the PIM commands resolve a
		// role's name so), as Azure lets any caller list them.
		public(op(http.MethodGet, "roleDefinitions", "Microsoft.Authorization/roleDefinitions/read", a.listDefinitions)),
		public(op(http.MethodGet, "roleDefinitions/{id}", "Microsoft.Authorization/roleDefinitions/read", a.getDefinition)),
		op(http.MethodGet, "roleAssignments", "Microsoft.Authorization/roleAssignments/read", a.listAssignments),
		op(http.MethodGet, "roleAssignments/{name}", "Microsoft.Authorization/roleAssignments/read", a.getAssignment),
		op(http.MethodPut, "roleAssignments/{name}", "Microsoft.Authorization/roleAssignments/write", a.putAssignment),
		op(http.MethodDelete, "roleAssignments/{name}", "Microsoft.Authorization/roleAssignments/delete", a.deleteAssignment),
	}, a.pimOperations()...)...)
}

// public makes a row need no right beyond a sign-in.
func public(op route.Op) route.Op {
	op.Action = ""
	return op
}

// Operations lists the resource manager's operations, for docs and tests.
func (a *API) Operations() []route.Op {
	return append(a.ops.Ops(), a.authz.Ops()...)
}

// Match finds the operation of a request for path, which the front door has
// cleaned and canonicalized. A path under {scope}/providers/Microsoft.Authorization/
// binds the scope as the "scope" parameter.
func (a *API) Match(method, path string) (*route.Op, []route.Param) {
	i := strings.Index(strings.ToLower(path), strings.ToLower(authzSegment))
	if i < 0 {
		return a.ops.Match(method, path)
	}
	op, params := a.authz.Match(method, path[i+len(authzSegment):])
	if op == nil {
		return nil, nil
	}
	return op, append(params, route.Param{Name: "scope", Value: strings.TrimSuffix(path[:i], "/")})
}

// Serve runs a matched operation: it checks the api-version and the
// subscription, authorizes the operation's action on its scope (recording
// the decision for the audit record), runs the handler and renders errors
// in ARM's envelope.
func (a *API) Serve(w http.ResponseWriter, r *http.Request, op *route.Op) {
	if err := a.serve(w, r, op); err != nil {
		httpx.WriteError(w, r, a.log, err)
	}
}

func (a *API) serve(w http.ResponseWriter, r *http.Request, op *route.Op) error {
	if err := a.check(r); err != nil {
		return err
	}
	if op.Action != "" {
		scope := op.Scope(r)
		if !strings.HasPrefix(strings.ToLower(scope), strings.ToLower(a.subscriptionID())) {
			return fault.Errorf(fault.NotFound, "SubscriptionNotFound", "The scope '%s' is not in this subscription.", scope)
		}
		c, _ := identity.FromContext(r.Context())
		g, err := a.rbac.Authorized(r.Context(), c, op.Action, scope)
		rec := route.RecordOf(r.Context())
		rec.Action, rec.Scope = op.Action, scope
		rec.Decision = &route.Decision{Allowed: g.Allowed, AssignmentID: g.AssignmentID, RoleID: g.RoleID}
		if err != nil {
			return err
		}
	}
	return op.Handle(w, r)
}
