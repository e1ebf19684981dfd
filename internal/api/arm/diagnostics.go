package arm

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/controlplane"
	"github.com/keyward/keyward/internal/diagnostics"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
)

const storageProvider = "/providers/Microsoft.Storage/storageAccounts"

// StorageAccount is the ARM resource of a registered account. Its
// credential is write-only.
type StorageAccount struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Kind       string            `json:"kind"`
	SKU        map[string]string `json:"sku"`
	Properties struct {
		PrimaryEndpoints  map[string]string `json:"primaryEndpoints"`
		ProvisioningState string            `json:"provisioningState"`
		CredentialKind    string            `json:"keywardCredentialKind"`
	} `json:"properties"`
	Identity *accountIdentity `json:"identity"`
}

type accountIdentity struct {
	Type        string `json:"type"`
	PrincipalID string `json:"principalId"`
	TenantID    string `json:"tenantId"`
}

type accountRequest struct {
	Properties struct {
		PrimaryEndpoints struct {
			Blob string `json:"blob"`
		} `json:"primaryEndpoints"`
		// KeywardCredential is how the server reaches a storage account it
		// did not create: its shared key or a SAS token.
		KeywardCredential struct {
			AccountKey string `json:"accountKey"`
			SASToken   string `json:"sasToken"`
		} `json:"keywardCredential"`
	} `json:"properties"`
}

func (a *API) accountResource(acct diagnostics.Account) StorageAccount {
	rg := acct.ResourceGroup
	r := StorageAccount{ID: "/subscriptions/" + a.subscription + "/resourceGroups/" + rg + storageProvider + "/" + acct.Name,
		Name: acct.Name, Type: "Microsoft.Storage/storageAccounts", Location: "local", Kind: "StorageV2",
		SKU: map[string]string{"name": "Standard_LRS", "tier": "Standard"}}
	r.Properties.PrimaryEndpoints = map[string]string{"blob": acct.BlobEndpoint}
	r.Properties.ProvisioningState, r.Properties.CredentialKind = "Succeeded", acct.CredentialKind
	if acct.IdentityPrincipalID != "" {
		r.Identity = &accountIdentity{Type: "SystemAssigned", PrincipalID: acct.IdentityPrincipalID, TenantID: a.dir.TenantID()}
	}
	return r
}

// patchAccount gives an account a system-assigned identity
// (identity.type SystemAssigned), as az storage account update --assign-identity.
func (a *API) patchAccount(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Identity *struct {
			Type string `json:"type"`
		} `json:"identity"`
	}
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	acct, err := a.diag.Account(r.Context(), r.PathValue("rg"), r.PathValue("account"))
	if err != nil {
		return err
	}
	if req.Identity != nil && strings.EqualFold(req.Identity.Type, "SystemAssigned") && acct.IdentityPrincipalID == "" {
		if acct, err = a.diag.AssignIdentity(r.Context(), acct.ResourceGroup, acct.Name); err != nil {
			return err
		}
	}
	httpx.WriteJSON(w, http.StatusOK, a.accountResource(acct))
	return nil
}

// accountAgentSecret gives `keyward identity agent --ids ACCOUNT` a
// short-lived secret of the account's system-assigned identity, as the
// user-assigned identities' keywardAgentSecret does.
func (a *API) accountAgentSecret(w http.ResponseWriter, r *http.Request) error {
	acct, err := a.diag.Account(r.Context(), r.PathValue("rg"), r.PathValue("account"))
	if err != nil {
		return err
	}
	if acct.IdentityPrincipalID == "" {
		return fault.Invalidf("the storage account %s has no system-assigned identity: run 'keyward storage account update --assign-identity'", acct.Name)
	}
	p, err := a.dir.Get(r.Context(), acct.IdentityPrincipalID)
	if err != nil {
		return err
	}
	secret, cred, err := a.dir.ReplaceSecretFor(r.Context(), p.ID, "identity agent", controlplane.AgentSecretLife)
	if err != nil {
		return err
	}
	a.writeAgentSecret(w, p.AppID, p.ID, secret, cred.Expires)
	return nil
}

// validate checks the body on its own; the account's name is the
// service's to check.
func (req *accountRequest) validate() error {
	p := req.Properties
	u, err := url.Parse(p.PrimaryEndpoints.Blob)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fault.Invalidf("properties.primaryEndpoints.blob must be an http(s) URL")
	}
	if (p.KeywardCredential.AccountKey == "") == (p.KeywardCredential.SASToken == "") {
		return fault.Invalidf("give properties.keywardCredential.accountKey or .sasToken, one of them")
	}
	return nil
}

func (a *API) putAccount(w http.ResponseWriter, r *http.Request) error {
	var req accountRequest
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	p := req.Properties
	g, err := a.cp.Group(r.Context(), r.PathValue("rg"))
	if err != nil {
		return err
	}
	acct, err := a.diag.RegisterAccount(r.Context(), diagnostics.Account{Name: r.PathValue("account"), ResourceGroup: g.Name,
		BlobEndpoint: strings.TrimSuffix(p.PrimaryEndpoints.Blob, "/")}, p.KeywardCredential.AccountKey, p.KeywardCredential.SASToken)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.accountResource(acct))
	return nil
}

func (a *API) getAccount(w http.ResponseWriter, r *http.Request) error {
	acct, err := a.diag.Account(r.Context(), r.PathValue("rg"), r.PathValue("account"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.accountResource(acct))
	return nil
}

func (a *API) listAccounts(w http.ResponseWriter, r *http.Request) error {
	accts, err := a.diag.ListAccounts(r.Context())
	if err != nil {
		return err
	}
	var res []StorageAccount
	for _, acct := range accts {
		if rg := r.PathValue("rg"); rg == "" || strings.EqualFold(rg, acct.ResourceGroup) {
			res = append(res, a.accountResource(acct))
		}
	}
	return writeVisible(a, w, r, "Microsoft.Storage/storageAccounts/read", res, func(s StorageAccount) string { return s.ID })
}

func (a *API) deleteAccount(w http.ResponseWriter, r *http.Request) error {
	if err := a.diag.DeleteAccount(r.Context(), r.PathValue("rg"), r.PathValue("account")); err != nil {
		return err
	}
	if err := a.rbac.Forget(r.Context(), r.URL.Path); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// DiagnosticSetting is the ARM resource.
type DiagnosticSetting struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		StorageAccountID string   `json:"storageAccountId"`
		Logs             []logOut `json:"logs"`
		Metrics          []any    `json:"metrics"`
	} `json:"properties"`
}

// logOut is a log setting as Azure answers it (the REST spec's
// DiagnosticSettings_Get example): categoryGroup null when the category
// is named, and the retention policy (days 0: kept, as Keyward keeps
// audit logs until their storage deletes them).
type logOut struct {
	Category        string  `json:"category"`
	CategoryGroup   *string `json:"categoryGroup"`
	Enabled         bool    `json:"enabled"`
	RetentionPolicy struct {
		Enabled bool `json:"enabled"`
		Days    int  `json:"days"`
	} `json:"retentionPolicy"`
}

type logSetting struct {
	Category      string `json:"category,omitempty"`
	CategoryGroup string `json:"categoryGroup,omitempty"`
	Enabled       bool   `json:"enabled"`
}

func (a *API) settingResource(r *http.Request, d diagnostics.Setting) DiagnosticSetting {
	hsmID := "/subscriptions/" + a.subscription + "/resourceGroups/" + r.PathValue("rg") + provider + "/" + d.HSM
	s := DiagnosticSetting{ID: hsmID + "/providers/microsoft.insights/diagnosticSettings/" + d.Name, Name: d.Name,
		Type: "Microsoft.Insights/diagnosticSettings"}
	acct, err := a.diag.GetAccount(r.Context(), d.StorageAccount)
	rg := "keyward"
	if err == nil {
		rg = acct.ResourceGroup
	}
	s.Properties.StorageAccountID = "/subscriptions/" + a.subscription + "/resourceGroups/" + rg + storageProvider + "/" + d.StorageAccount
	s.Properties.Logs = []logOut{{Category: audit.Category, Enabled: d.Enabled}}
	s.Properties.Metrics = []any{}
	return s
}

// settingRequest is the body of a diagnostic setting PUT.
type settingRequest struct {
	Properties struct {
		StorageAccountID string       `json:"storageAccountId"`
		Logs             []logSetting `json:"logs"`
	} `json:"properties"`
}

// destination is a diagnostic setting's storage account, by its full id.
type destination struct {
	ID, ResourceGroup, Account string
}

// validate checks the body on its own: the destination is the full id of a
// storage account of subscription sub, and the logs are AuditEvent's.
func (req *settingRequest) validate(sub string) (destination, bool, error) {
	p := req.Properties
	segs := strings.Split(strings.Trim(Canonicalize(p.StorageAccountID), "/"), "/")
	if len(segs) != 8 || segs[0] != "subscriptions" || segs[2] != "resourceGroups" || segs[4] != "providers" ||
		segs[5] != "Microsoft.Storage" || segs[6] != "storageAccounts" || segs[3] == "" || segs[7] == "" {
		return destination{}, false, fault.Invalidf("properties.storageAccountId must be a storage account resource id; other destinations are not supported")
	}
	if !strings.EqualFold(segs[1], sub) {
		return destination{}, false, fault.Invalidf("properties.storageAccountId must name a storage account of subscription %s", sub)
	}
	enabled := false
	for _, l := range p.Logs {
		switch {
		case strings.EqualFold(l.Category, audit.Category), strings.EqualFold(l.CategoryGroup, "audit"), strings.EqualFold(l.CategoryGroup, "allLogs"):
			enabled = enabled || l.Enabled
		default:
			return destination{}, false, fault.Invalidf("unknown log category %q: a Managed HSM has AuditEvent only", l.Category+l.CategoryGroup)
		}
	}
	return destination{ID: "/" + strings.Join(segs, "/"), ResourceGroup: segs[3], Account: segs[7]}, enabled, nil
}

// putSetting sends the HSM's logs to a storage account named by its full
// id. The caller must be able to read that account (Azure's linked
// authorization): without it, an HSM's owner could write into any group's
// account with that account's credential.
func (a *API) putSetting(w http.ResponseWriter, r *http.Request) error {
	h, err := a.lookup(r)
	if err != nil {
		return err
	}
	var req settingRequest
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	dest, enabled, err := req.validate(a.subscription)
	if err != nil {
		return err
	}
	const linked = "Microsoft.Storage/storageAccounts/read"
	if !a.can(r, linked, dest.ID) {
		c, _ := identity.FromContext(r.Context())
		return fault.Errorf(fault.Forbidden, "LinkedAuthorizationFailed", "The client '%s' has permission to perform action 'Microsoft.Insights/diagnosticSettings/write' on scope '%s', however it does not have permission to perform action '%s' on the linked scope '%s'.",
			c.ObjectID, a.hsmID(h), linked, dest.ID)
	}
	acct, err := a.diag.Account(r.Context(), dest.ResourceGroup, dest.Account)
	if errors.Is(err, diagnostics.ErrAccountNotFound) {
		return fault.Invalidf("properties.storageAccountId names no registered storage account (%s)", dest.ID)
	}
	if err != nil {
		return err
	}
	d, err := a.diag.PutSetting(r.Context(), diagnostics.Setting{HSM: h.Name, Name: r.PathValue("setting"), StorageAccount: acct.Name, Enabled: enabled})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.settingResource(r, d))
	return nil
}

func (a *API) getSetting(w http.ResponseWriter, r *http.Request) error {
	h, err := a.lookup(r)
	if err != nil {
		return err
	}
	d, err := a.diag.GetSetting(r.Context(), h.Name, r.PathValue("setting"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.settingResource(r, d))
	return nil
}

func (a *API) listSettings(w http.ResponseWriter, r *http.Request) error {
	h, err := a.lookup(r)
	if err != nil {
		return err
	}
	ds, err := a.diag.ListSettings(r.Context(), h.Name)
	if err != nil {
		return err
	}
	out := map[string][]DiagnosticSetting{"value": {}}
	for _, d := range ds {
		out["value"] = append(out["value"], a.settingResource(r, d))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) deleteSetting(w http.ResponseWriter, r *http.Request) error {
	h, err := a.lookup(r)
	if err != nil {
		return err
	}
	if err := a.diag.DeleteSetting(r.Context(), h.Name, r.PathValue("setting")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
