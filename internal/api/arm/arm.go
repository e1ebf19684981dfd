// Package arm serves the part of Azure Resource Manager that Keyward has so
// far: the subscription list that a sign-in reads, and Managed HSM
// resources (create, show, list, delete). Until control-plane roles exist,
// only a directory Global Administrator may change them.
package arm

import (
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/controlplane"
	"github.com/keyward/keyward/internal/diagnostics"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
)

// API serves the ARM endpoints of one subscription.
type API struct {
	cp           *controlplane.Service
	dir          *identity.Directory
	subscription string
	// hsmURI returns the data-plane URL of an HSM name.
	hsmURI func(name string) string
	log    *slog.Logger
	diag   *diagnostics.Service
}

// New returns the ARM API.
func New(cp *controlplane.Service, dir *identity.Directory, subscription string, hsmURI func(string) string, log *slog.Logger) *API {
	return &API{cp: cp, dir: dir, subscription: subscription, hsmURI: hsmURI, log: log}
}

const provider = "/providers/Microsoft.KeyVault/managedHSMs"

// Register adds the endpoints to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.Handle("GET /subscriptions", a.handle(false, a.listSubscriptions))
	mux.Handle("GET /subscriptions/{sub}"+provider, a.handle(false, a.list))
	mux.Handle("GET /subscriptions/{sub}/resourceGroups/{rg}"+provider, a.handle(false, a.list))
	mux.Handle("GET /subscriptions/{sub}/resourceGroups/{rg}"+provider+"/{name}", a.handle(false, a.get))
	mux.Handle("PUT /subscriptions/{sub}/resourceGroups/{rg}"+provider+"/{name}", a.handle(true, a.put))
	mux.Handle("DELETE /subscriptions/{sub}/resourceGroups/{rg}"+provider+"/{name}", a.handle(true, a.remove))
}

// ErrAuthorizationFailed is ARM's refusal.
var ErrAuthorizationFailed = fault.New(fault.Forbidden, "AuthorizationFailed", "The client does not have authorization to perform this action.")

func (a *API) handle(write bool, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := a.check(r, write)
		if err == nil {
			err = h(w, r)
		}
		if err != nil {
			httpx.WriteError(w, r, a.log, err)
		}
	})
}

func (a *API) check(r *http.Request, write bool) error {
	if r.URL.Query().Get("api-version") == "" {
		return fault.Errorf(fault.Invalid, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
	}
	if sub := r.PathValue("sub"); sub != "" && !strings.EqualFold(sub, a.subscription) {
		return fault.Errorf(fault.NotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", sub)
	}
	c, ok := identity.FromContext(r.Context())
	if !ok {
		return ErrAuthorizationFailed
	}
	if !write {
		return nil
	}
	admin, err := a.dir.HasRole(r.Context(), c.ObjectID, identity.GlobalAdministrator)
	if err != nil {
		return err
	}
	if !admin {
		return ErrAuthorizationFailed.With("The client '%s' does not have authorization to perform action 'Microsoft.KeyVault/managedHSMs/write'.", c.ObjectID)
	}
	return nil
}

type subscription struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	DisplayName    string `json:"displayName"`
	State          string `json:"state"`
	TenantID       string `json:"tenantId"`
}

func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request) error {
	httpx.WriteJSON(w, http.StatusOK, map[string][]subscription{"value": {{
		ID: "/subscriptions/" + a.subscription, SubscriptionID: a.subscription, DisplayName: "Keyward",
		State: "Enabled", TenantID: a.dir.TenantID(),
	}}})
	return nil
}

// ManagedHSM is the ARM resource.
type ManagedHSM struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	SKU        SKU               `json:"sku"`
	Tags       map[string]string `json:"tags"`
	Properties Properties        `json:"properties"`
}

// SKU is the pricing tier; Keyward has one.
type SKU struct {
	Family string `json:"family"`
	Name   string `json:"name"`
}

// Properties of a Managed HSM.
type Properties struct {
	TenantID                  string         `json:"tenantId"`
	InitialAdminObjectIDs     []string       `json:"initialAdminObjectIds"`
	HSMURI                    string         `json:"hsmUri"`
	EnableSoftDelete          bool           `json:"enableSoftDelete"`
	SoftDeleteRetentionInDays int            `json:"softDeleteRetentionInDays"`
	EnablePurgeProtection     bool           `json:"enablePurgeProtection"`
	ProvisioningState         string         `json:"provisioningState"`
	StatusMessage             string         `json:"statusMessage"`
	SecurityDomainProperties  securityDomain `json:"securityDomainProperties"`
	PublicNetworkAccess       string         `json:"publicNetworkAccess"`
}

type securityDomain struct {
	ActivationStatus        string `json:"activationStatus"`
	ActivationStatusMessage string `json:"activationStatusMessage"`
}

// createRequest is the PUT body.
type createRequest struct {
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags"`
	Properties struct {
		TenantID                  string   `json:"tenantId"`
		InitialAdminObjectIDs     []string `json:"initialAdminObjectIds"`
		SoftDeleteRetentionInDays int      `json:"softDeleteRetentionInDays"`
		EnablePurgeProtection     bool     `json:"enablePurgeProtection"`
	} `json:"properties"`
}

func (a *API) resource(h *domain.HSM) ManagedHSM {
	status := map[string][2]string{
		domain.StateActive:      {"Active", "The HSM is activated."},
		domain.StateProvisioned: {"NotActivated", "Download the security domain to activate the HSM, or upload one to recover it."},
		domain.StateRecovery:    {"NotActivated", "The HSM is waiting for a security domain upload."},
	}[h.State]
	rg := h.ResourceGroup
	if rg == "" {
		rg = "keyward"
	}
	return ManagedHSM{
		ID:   "/subscriptions/" + a.subscription + "/resourceGroups/" + rg + provider + "/" + h.Name,
		Name: h.Name, Type: "Microsoft.KeyVault/managedHSMs", Location: "local", SKU: SKU{Family: "B", Name: "Standard_B1"},
		Tags: map[string]string{},
		Properties: Properties{TenantID: a.dir.TenantID(), InitialAdminObjectIDs: h.Admins, HSMURI: a.hsmURI(h.Name) + "/",
			EnableSoftDelete: true, SoftDeleteRetentionInDays: h.RetentionDays, EnablePurgeProtection: h.PurgeProtection,
			ProvisioningState: "Succeeded", StatusMessage: "The Managed HSM is provisioned and ready to use.",
			SecurityDomainProperties: securityDomain{ActivationStatus: status[0], ActivationStatusMessage: status[1]},
			PublicNetworkAccess:      "Enabled"},
	}
}

func (a *API) list(w http.ResponseWriter, r *http.Request) error {
	hsms, err := a.cp.HSMs.List(r.Context())
	if err != nil {
		return err
	}
	out := map[string][]ManagedHSM{"value": {}}
	rg := r.PathValue("rg")
	for _, h := range hsms {
		res := a.resource(h)
		if rg == "" || strings.Contains(strings.ToLower(res.ID), "/resourcegroups/"+strings.ToLower(rg)+"/") {
			out["value"] = append(out["value"], res)
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// lookup finds the HSM of the path, in its resource group.
func (a *API) lookup(r *http.Request) (*domain.HSM, error) {
	h, err := a.cp.HSMs.Get(r.Context(), r.PathValue("name"))
	if errors.Is(err, domain.ErrHSMNotFound) || err == nil && h.ResourceGroup != "" && !strings.EqualFold(h.ResourceGroup, r.PathValue("rg")) {
		return nil, fault.Errorf(fault.NotFound, "ResourceNotFound", "The Resource 'Microsoft.KeyVault/managedHSMs/%s' under resource group '%s' was not found.",
			r.PathValue("name"), r.PathValue("rg"))
	}
	return h, err
}

func (a *API) get(w http.ResponseWriter, r *http.Request) error {
	h, err := a.lookup(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.resource(h))
	return nil
}

var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (a *API) put(w http.ResponseWriter, r *http.Request) error {
	var req createRequest
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	p := req.Properties
	if p.TenantID != "" && !strings.EqualFold(p.TenantID, a.dir.TenantID()) {
		return fault.Invalidf("properties.tenantId must be this directory's tenant, %s", a.dir.TenantID())
	}
	if len(p.InitialAdminObjectIDs) == 0 {
		return fault.Invalidf("properties.initialAdminObjectIds needs at least one object id")
	}
	for _, id := range p.InitialAdminObjectIDs {
		if !guid.MatchString(id) {
			return fault.Invalidf("initial administrator %q is not an object id", id)
		}
		if _, err := a.dir.Get(r.Context(), id); err != nil {
			return fault.Errorf(fault.Invalid, "PrincipalNotFound", "initial administrator %s does not exist in the directory", id)
		}
	}
	h, err := a.cp.Create(r.Context(), domain.CreateParams{Name: r.PathValue("name"), Admins: p.InitialAdminObjectIDs,
		RetentionDays: p.SoftDeleteRetentionInDays, PurgeProtection: p.EnablePurgeProtection, ResourceGroup: r.PathValue("rg")})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, a.resource(h))
	return nil
}

func (a *API) remove(w http.ResponseWriter, r *http.Request) error {
	h, err := a.lookup(r)
	if err != nil {
		return err
	}
	if err := a.cp.Delete(r.Context(), h.Name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
