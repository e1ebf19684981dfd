package arm

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
)

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
		SoftDeleteRetentionInDays *int     `json:"softDeleteRetentionInDays"`
		EnablePurgeProtection     bool     `json:"enablePurgeProtection"`
		CreateMode                string   `json:"createMode"`
	} `json:"properties"`
}

func (a *API) hsmID(h *domain.HSM) string {
	return a.subscriptionID() + "/resourceGroups/" + h.ResourceGroup + provider + "/" + h.Name
}

func (a *API) resource(h *domain.HSM) ManagedHSM {
	status := map[string][2]string{
		domain.StateActive:      {"Active", "The HSM is activated."},
		domain.StateProvisioned: {"NotActivated", "Download the security domain to activate the HSM, or upload one to recover it."},
		domain.StateRecovery:    {"NotActivated", "The HSM is waiting for a security domain upload."},
	}[h.State]
	tags := h.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	return ManagedHSM{
		ID: a.hsmID(h), Name: h.Name, Type: "Microsoft.KeyVault/managedHSMs", Location: orLocal(h.Location),
		SKU: SKU{Family: "B", Name: "Standard_B1"}, Tags: tags,
		Properties: Properties{TenantID: a.dir.TenantID(), InitialAdminObjectIDs: h.Admins, HSMURI: a.hsmURI(h.Name) + "/",
			EnableSoftDelete: true, SoftDeleteRetentionInDays: h.RetentionDays, EnablePurgeProtection: h.PurgeProtection,
			ProvisioningState: "Succeeded", StatusMessage: "The Managed HSM is provisioned and ready to use.",
			SecurityDomainProperties: securityDomain{ActivationStatus: status[0], ActivationStatusMessage: status[1]},
			PublicNetworkAccess:      "Enabled"},
	}
}

func orLocal(l string) string {
	if l == "" {
		return "local"
	}
	return l
}

func (a *API) list(w http.ResponseWriter, r *http.Request) error {
	hsms, err := a.cp.HSMs.List(r.Context())
	if err != nil {
		return err
	}
	var res []ManagedHSM
	rg := r.PathValue("rg")
	for _, h := range hsms {
		if h.Deleted.IsZero() && (rg == "" || strings.EqualFold(h.ResourceGroup, rg)) {
			res = append(res, a.resource(h))
		}
	}
	return writeVisible(a, w, r, "Microsoft.KeyVault/managedHSMs/read", res, func(m ManagedHSM) string { return m.ID })
}

// lookup finds the live HSM of the path, in its resource group.
func (a *API) lookup(r *http.Request) (*domain.HSM, error) {
	h, err := a.cp.HSMs.Get(r.Context(), r.PathValue("name"))
	if errors.Is(err, domain.ErrHSMNotFound) || err == nil && (!h.Deleted.IsZero() || !strings.EqualFold(h.ResourceGroup, r.PathValue("rg"))) {
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

// validate checks what the PUT body says on its own and returns the
// retention in days; whether the administrators exist is the directory's
// to say.
func (req *createRequest) validate(tenant string) (int, error) {
	p := req.Properties
	if p.TenantID != "" && !strings.EqualFold(p.TenantID, tenant) {
		return 0, fault.Invalidf("properties.tenantId must be this directory's tenant, %s", tenant)
	}
	if len(p.InitialAdminObjectIDs) == 0 {
		return 0, fault.Invalidf("properties.initialAdminObjectIds needs at least one object id")
	}
	for _, id := range p.InitialAdminObjectIDs {
		if !guid.MatchString(id) {
			return 0, fault.Invalidf("initial administrator %q is not an object id", id)
		}
	}
	days := 90
	if p.SoftDeleteRetentionInDays != nil {
		days = *p.SoftDeleteRetentionInDays
	}
	if days < 7 || days > 90 {
		return 0, fault.Invalidf("softDeleteRetentionInDays must be between 7 and 90, got %d", days)
	}
	return days, nil
}

// patchRequest is the PATCH body.
type patchRequest struct {
	Tags map[string]string `json:"tags"`
}

// put creates an HSM (or recovers a deleted one with createMode recover, or
// updates an existing one's tags). It answers 200 with provisioningState
// Succeeded: the creation is complete when the call returns, which the
// armkeyvault poller takes as a finished long-running operation.
//
// HSM names are global and case-insensitive, as Azure's: a name held in
// another resource group, or spelled with other case, is a conflict, and a
// deleted HSM is recovered only through its own group's path.
func (a *API) put(w http.ResponseWriter, r *http.Request) error {
	var req createRequest
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	name, rg := r.PathValue("name"), r.PathValue("rg")
	g, err := a.cp.Group(r.Context(), rg)
	if err != nil {
		return err
	}
	recovering := strings.EqualFold(req.Properties.CreateMode, "recover")
	if existing, err := a.cp.HSMs.Get(r.Context(), name); err == nil {
		switch {
		case !strings.EqualFold(existing.ResourceGroup, rg) && recovering:
			return fault.Errorf(fault.NotFound, "ResourceNotFound", "The deleted managed HSM %s was not found in resource group '%s'.", name, rg)
		case !strings.EqualFold(existing.ResourceGroup, rg):
			return fault.Errorf(fault.Conflict, "ConflictError", "The name %s is already in use: managed HSM names are global.", name)
		case existing.Name != name:
			return fault.Errorf(fault.Conflict, "ConflictError", "A managed HSM named %s exists: names differ by more than case; use %s.", existing.Name, existing.Name)
		case !existing.Deleted.IsZero() && recovering:
			if err := a.cp.HSMs.Recover(r.Context(), existing.Name); err != nil {
				return err
			}
		case !existing.Deleted.IsZero():
			return fault.Errorf(fault.Conflict, "ConflictError", "A deleted managed HSM named %s exists: recover it (createMode recover) or purge it first.", name)
		default:
			if err := a.cp.HSMs.SetTags(r.Context(), existing.Name, req.Tags); err != nil {
				return err
			}
		}
		h, err := a.cp.HSMs.Get(r.Context(), existing.Name)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, a.resource(h))
		return nil
	} else if !errors.Is(err, domain.ErrHSMNotFound) {
		return err
	}
	if recovering {
		return fault.Errorf(fault.NotFound, "ResourceNotFound", "The deleted managed HSM %s was not found in resource group '%s'.", name, rg)
	}
	days, err := req.validate(a.dir.TenantID())
	if err != nil {
		return err
	}
	for _, id := range req.Properties.InitialAdminObjectIDs {
		if _, err := a.dir.Get(r.Context(), id); err != nil {
			return fault.Errorf(fault.Invalid, "PrincipalNotFound", "initial administrator %s does not exist in the directory", id)
		}
	}
	p := req.Properties
	h, err := a.cp.Create(r.Context(), domain.CreateParams{Name: name, Admins: p.InitialAdminObjectIDs, RetentionDays: days,
		PurgeProtection: p.EnablePurgeProtection, ResourceGroup: g.Name, Location: orLocal(req.Location), Tags: req.Tags})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.resource(h))
	return nil
}

// patch updates tags.
func (a *API) patch(w http.ResponseWriter, r *http.Request) error {
	h, err := a.lookup(r)
	if err != nil {
		return err
	}
	var req patchRequest
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	if req.Tags != nil {
		if err := a.cp.HSMs.SetTags(r.Context(), h.Name, req.Tags); err != nil {
			return err
		}
	}
	if h, err = a.cp.HSMs.Get(r.Context(), h.Name); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.resource(h))
	return nil
}

// remove soft-deletes an HSM: it keeps its name and content for its
// retention period, until recovered or purged.
func (a *API) remove(w http.ResponseWriter, r *http.Request) error {
	h, err := a.lookup(r)
	if err != nil {
		return err
	}
	if err := a.cp.HSMs.SoftDelete(r.Context(), h.Name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// DeletedHSM is a soft-deleted HSM.
type DeletedHSM struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		MHSMID                 string            `json:"mhsmId"`
		Location               string            `json:"location"`
		DeletionDate           string            `json:"deletionDate"`
		ScheduledPurgeDate     string            `json:"scheduledPurgeDate"`
		PurgeProtectionEnabled bool              `json:"purgeProtectionEnabled"`
		Tags                   map[string]string `json:"tags"`
	} `json:"properties"`
}

func (a *API) deleted(h *domain.HSM) DeletedHSM {
	var d DeletedHSM
	loc := orLocal(h.Location)
	d.ID = a.subscriptionID() + "/providers/Microsoft.KeyVault/locations/" + loc + "/deletedManagedHSMs/" + h.Name
	d.Name, d.Type = h.Name, "Microsoft.KeyVault/deletedManagedHSMs"
	p := &d.Properties
	p.MHSMID, p.Location, p.PurgeProtectionEnabled, p.Tags = a.hsmID(h), loc, h.PurgeProtection, h.Tags
	p.DeletionDate = h.Deleted.UTC().Format(time.RFC3339)
	p.ScheduledPurgeDate = h.Deleted.AddDate(0, 0, h.RetentionDays).UTC().Format(time.RFC3339)
	return d
}

// deletedHSM finds the deleted HSM of the path, at its location.
func (a *API) deletedHSM(r *http.Request) (*domain.HSM, error) {
	h, err := a.cp.HSMs.Get(r.Context(), r.PathValue("name"))
	if err == nil && (h.Deleted.IsZero() || !strings.EqualFold(orLocal(h.Location), r.PathValue("location"))) {
		err = domain.ErrHSMNotFound
	}
	if errors.Is(err, domain.ErrHSMNotFound) {
		return nil, fault.Errorf(fault.NotFound, "ResourceNotFound", "The deleted managed HSM %s was not found.", r.PathValue("name"))
	}
	return h, err
}

func (a *API) getDeleted(w http.ResponseWriter, r *http.Request) error {
	h, err := a.deletedHSM(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.deleted(h))
	return nil
}

func (a *API) listDeleted(w http.ResponseWriter, r *http.Request) error {
	hsms, err := a.cp.HSMs.List(r.Context())
	if err != nil {
		return err
	}
	out := map[string][]DeletedHSM{"value": {}}
	if a.can(r, "Microsoft.KeyVault/locations/deletedManagedHsms/read", a.subscriptionID()) {
		for _, h := range hsms {
			if !h.Deleted.IsZero() {
				out["value"] = append(out["value"], a.deleted(h))
			}
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// purge removes a deleted HSM for good, unless purge protection holds it
// until its scheduled purge date.
func (a *API) purge(w http.ResponseWriter, r *http.Request) error {
	h, err := a.deletedHSM(r)
	if err != nil {
		return err
	}
	if h.PurgeProtection && time.Now().Before(h.Deleted.AddDate(0, 0, h.RetentionDays)) {
		return fault.Errorf(fault.Conflict, "ConflictError", "Purge protection is on for %s: it can be purged after %s.", h.Name,
			h.Deleted.AddDate(0, 0, h.RetentionDays).UTC().Format(time.RFC3339))
	}
	if err := a.cp.Delete(r.Context(), h.Name); err != nil {
		return err
	}
	if a.diag != nil {
		a.diag.ForgetHSM(h.Name)
	}
	if err := a.rbac.Forget(r.Context(), a.hsmID(h)); err != nil {
		return err
	}
	// The purge is done; the poller still wants somewhere to ask.
	w.Header().Set("Azure-AsyncOperation", a.managementURL+a.subscriptionID()+"/providers/Microsoft.KeyVault/locations/"+
		r.PathValue("location")+"/managedHsmOperationResults/"+uuid.NewString()+"?api-version="+r.URL.Query().Get("api-version"))
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// operationResult answers the status of a long-running operation; every
// operation here completes before its first answer.
func (a *API) operationResult(w http.ResponseWriter, r *http.Request) error {
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"id": r.URL.Path, "name": r.PathValue("op"), "status": "Succeeded"})
	return nil
}
