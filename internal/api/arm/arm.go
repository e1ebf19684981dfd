// Package arm serves Keyward's Azure Resource Manager surface: the
// subscription, resource groups, Managed HSMs (with deleted HSMs), managed
// identities and their federated credentials, storage accounts, diagnostic
// settings, and control-plane role assignments. Every request is
// authorized by control-plane RBAC (internal/armrbac) on the resource's
// scope; shapes and status codes follow ARM and the armkeyvault SDK.
package arm

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/armrbac"
	"github.com/keyward/keyward/internal/controlplane"
	"github.com/keyward/keyward/internal/diagnostics"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/pim/armroles"
)

// API serves the ARM endpoints of one subscription.
type API struct {
	cp           *controlplane.Service
	rbac         *armrbac.Service
	dir          *identity.Directory
	diag         *diagnostics.Service
	pim          *armroles.Service
	audit        AuditSearcher
	subscription string
	// hsmURI returns the data-plane URL of an HSM name.
	hsmURI func(name string) string
	// managementURL is the resource manager's configured URL, without a
	// trailing slash: operation links are built from it, never from the
	// request's Host header.
	managementURL string
	log           *slog.Logger
	ops           *route.Table
	authz         *route.Table // under {scope}/providers/Microsoft.Authorization/
}

// Deps are what the ARM API serves from.
type Deps struct {
	ControlPlane  *controlplane.Service
	RBAC          *armrbac.Service
	Directory     *identity.Directory
	Diagnostics   *diagnostics.Service
	PIM           *armroles.Service // PIM for Azure roles
	Audit         AuditSearcher     // the journal, searched for the console (nil: none)
	Subscription  string
	HSMURI        func(name string) string
	ManagementURL string
	Log           *slog.Logger
}

// New returns the ARM API.
func New(d Deps) *API {
	a := &API{cp: d.ControlPlane, rbac: d.RBAC, dir: d.Directory, diag: d.Diagnostics, pim: d.PIM, audit: d.Audit, subscription: d.Subscription,
		hsmURI: d.HSMURI, managementURL: strings.TrimSuffix(d.ManagementURL, "/"), log: d.Log}
	a.ops, a.authz = a.operations(), a.authorizationOperations()
	return a
}

const provider = "/providers/Microsoft.KeyVault/managedHSMs"

// canonical spells ARM's path segments one way: ARM paths are
// case-insensitive and clients differ ("resourcegroups").
var canonical = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{"subscriptions", "resourceGroups", "providers", "Microsoft.KeyVault", "managedHSMs", "locations",
		"deletedManagedHSMs", "purge", "Microsoft.Authorization", "roleAssignments", "roleDefinitions", "Microsoft.Storage",
		"storageAccounts", "Microsoft.Insights", "diagnosticSettings", "Microsoft.ManagedIdentity", "userAssignedIdentities",
		"federatedIdentityCredentials", "keywardAgentSecret", "Microsoft.Resources", "managedHsmOperationResults"} {
		m[strings.ToLower(s)] = s
	}
	return m
}()

// Canonicalize rewrites the fixed words of an ARM path in their usual case.
func Canonicalize(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if c, ok := canonical[strings.ToLower(s)]; ok {
			segs[i] = c
		}
	}
	return strings.Join(segs, "/")
}

// pathScope is the resource the request path names.
func pathScope(r *http.Request) string { return r.URL.Path }

// agentSecretAction is the right to mint an identity agent's secret. The
// secret acts as the identity, with every grant the identity holds, so it
// needs what granting those would: roleAssignments/write over the
// identity's resource (Owner, User Access Administrator), not
// Contributor's "*", which excludes Microsoft.Authorization writes.
const agentSecretAction = "Microsoft.Authorization/roleAssignments/write"

// resourceScope is the resource an action path (…/{name}/keywardAgentSecret) acts on.
func resourceScope(r *http.Request) string {
	return r.URL.Path[:strings.LastIndex(r.URL.Path, "/")]
}

// subScope is the subscription (deleted HSMs are subscription-level).
func subScope(r *http.Request) string { return "/subscriptions/" + r.PathValue("sub") }

var apiVersion = regexp.MustCompile(`^(20(1[4-9]|2[0-9]))-(0[1-9]|1[0-2])-([0-2][0-9]|3[01])(-preview)?$`)

func (a *API) check(r *http.Request) error {
	v := r.URL.Query().Get("api-version")
	if v == "" {
		return fault.Errorf(fault.Invalid, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
	}
	if !apiVersion.MatchString(v) {
		return fault.Errorf(fault.Invalid, "InvalidApiVersionParameter", "The api-version '%s' is invalid. The supported versions are dates such as '2024-11-01'.", v)
	}
	if sub := r.PathValue("sub"); sub != "" && !strings.EqualFold(sub, a.subscription) {
		return fault.Errorf(fault.NotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", sub)
	}
	if _, ok := identity.FromContext(r.Context()); !ok {
		return armrbac.ErrDenied
	}
	return nil
}

// can reports whether the caller may do action on scope (for filtering lists).
func (a *API) can(r *http.Request, action, scope string) bool {
	c, _ := identity.FromContext(r.Context())
	ok, err := a.rbac.Decide(r.Context(), c, action, scope)
	return err == nil && ok
}

// writeVisible answers a list with the items whose resource id the caller
// may perform action on (ARM lists show only what one may read).
func writeVisible[T any](a *API, w http.ResponseWriter, r *http.Request, action string, items []T, id func(T) string) error {
	c, _ := identity.FromContext(r.Context())
	permits, err := a.rbac.Permits(r.Context(), c, action)
	if err != nil {
		return err
	}
	out := []T{}
	for _, it := range items {
		if permits(id(it)) {
			out = append(out, it)
		}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string][]T{"value": out})
	return nil
}

// putStatus is ARM's answer to a PUT: 201 when it created the resource,
// 200 when it updated one.
func putStatus(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}

func (a *API) subscriptionID() string { return "/subscriptions/" + a.subscription }

// Scopes knows which scopes exist, for control-plane role assignments:
// the subscription, its resource groups, and resources of the kinds
// Keyward has.
type Scopes struct {
	ControlPlane *controlplane.Service
	Diagnostics  *diagnostics.Service
	Subscription string
}

// Exists reports whether scope names the subscription, a resource group,
// or a resource of a kind Keyward has.
func (a Scopes) Exists(ctx context.Context, scope string) bool {
	segs := strings.Split(strings.Trim(Canonicalize(scope), "/"), "/")
	if len(segs) < 2 || segs[0] != "subscriptions" || !strings.EqualFold(segs[1], a.Subscription) {
		return false
	}
	if len(segs) == 2 {
		return true
	}
	if len(segs) < 4 || segs[2] != "resourceGroups" {
		return false
	}
	if _, err := a.ControlPlane.Group(ctx, segs[3]); err != nil {
		return false
	}
	if len(segs) == 4 {
		return true
	}
	if len(segs) != 8 || segs[4] != "providers" {
		return false
	}
	switch segs[5] + "/" + segs[6] {
	case "Microsoft.KeyVault/managedHSMs":
		h, err := a.ControlPlane.HSMs.Get(ctx, segs[7])
		return err == nil && h.Deleted.IsZero() && strings.EqualFold(h.ResourceGroup, segs[3])
	case "Microsoft.ManagedIdentity/userAssignedIdentities":
		_, err := a.ControlPlane.Identity(ctx, segs[3], segs[7])
		return err == nil
	case "Microsoft.Storage/storageAccounts":
		_, err := a.Diagnostics.Account(ctx, segs[3], segs[7])
		return err == nil
	}
	return false
}

type subscription struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	DisplayName    string `json:"displayName"`
	State          string `json:"state"`
	TenantID       string `json:"tenantId"`
}

func (a *API) subscriptionBody() subscription {
	return subscription{ID: a.subscriptionID(), SubscriptionID: a.subscription, DisplayName: "Keyward", State: "Enabled", TenantID: a.dir.TenantID()}
}

// listSubscriptions shows the subscription to every principal of the
// tenant, as a sign-in needs it.
func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request) error {
	httpx.WriteJSON(w, http.StatusOK, map[string][]subscription{"value": {a.subscriptionBody()}})
	return nil
}

func (a *API) getSubscription(w http.ResponseWriter, r *http.Request) error {
	httpx.WriteJSON(w, http.StatusOK, a.subscriptionBody())
	return nil
}
