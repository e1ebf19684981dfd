package arm

import (
	"net/http"
	"time"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/controlplane"
	"github.com/keyward/keyward/internal/identity"
)

const identityProvider = "/providers/Microsoft.ManagedIdentity/userAssignedIdentities"

// ManagedIdentity is the ARM resource.
type ManagedIdentity struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags"`
	Properties struct {
		TenantID    string `json:"tenantId"`
		PrincipalID string `json:"principalId"`
		ClientID    string `json:"clientId"`
	} `json:"properties"`
}

func (a *API) identityResource(id controlplane.Identity) ManagedIdentity {
	out := ManagedIdentity{ID: a.subscriptionID() + "/resourceGroups/" + id.ResourceGroup + identityProvider + "/" + id.Name,
		Name: id.Name, Type: "Microsoft.ManagedIdentity/userAssignedIdentities", Location: orLocal(id.Location), Tags: id.Tags}
	if out.Tags == nil {
		out.Tags = map[string]string{}
	}
	out.Properties.TenantID, out.Properties.PrincipalID, out.Properties.ClientID = a.dir.TenantID(), id.PrincipalID, id.ClientID
	return out
}

func (a *API) putIdentity(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Location string            `json:"location"`
		Tags     map[string]string `json:"tags"`
	}
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	id, created, err := a.cp.PutIdentity(r.Context(), controlplane.Identity{Name: r.PathValue("name"), ResourceGroup: r.PathValue("rg"),
		Location: req.Location, Tags: req.Tags})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, putStatus(created), a.identityResource(id))
	return nil
}

func (a *API) getIdentity(w http.ResponseWriter, r *http.Request) error {
	id, err := a.cp.Identity(r.Context(), r.PathValue("rg"), r.PathValue("name"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.identityResource(id))
	return nil
}

func (a *API) listIdentities(w http.ResponseWriter, r *http.Request) error {
	ids, err := a.cp.Identities(r.Context(), r.PathValue("rg"))
	if err != nil {
		return err
	}
	var res []ManagedIdentity
	for _, id := range ids {
		res = append(res, a.identityResource(id))
	}
	return writeVisible(a, w, r, "Microsoft.ManagedIdentity/userAssignedIdentities/read", res, func(m ManagedIdentity) string { return m.ID })
}

func (a *API) deleteIdentity(w http.ResponseWriter, r *http.Request) error {
	if err := a.cp.DeleteIdentity(r.Context(), r.PathValue("rg"), r.PathValue("name")); err != nil {
		return err
	}
	if err := a.rbac.Forget(r.Context(), r.URL.Path); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// agentSecret gives `keyward identity agent` a short-lived secret of the
// identity; the agent keeps it in memory and the workload never sees it.
func (a *API) agentSecret(w http.ResponseWriter, r *http.Request) error {
	id, secret, expires, err := a.cp.AgentSecret(r.Context(), r.PathValue("rg"), r.PathValue("name"))
	if err != nil {
		return err
	}
	a.writeAgentSecret(w, id.ClientID, id.PrincipalID, secret, expires)
	return nil
}

// writeAgentSecret is the answer of keywardAgentSecret, for a user- or
// system-assigned identity alike.
func (a *API) writeAgentSecret(w http.ResponseWriter, clientID, principalID, secret string, expires time.Time) {
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"clientId": clientID, "principalId": principalID,
		"tenantId": a.dir.TenantID(), "secret": secret, "expires": expires.UTC().Format(time.RFC3339)})
}

// FederatedCredential is the ARM resource.
type FederatedCredential struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		Issuer    string   `json:"issuer"`
		Subject   string   `json:"subject"`
		Audiences []string `json:"audiences"`
	} `json:"properties"`
}

func (a *API) federatedResource(id controlplane.Identity, fc identity.FederatedCredential) FederatedCredential {
	var out FederatedCredential
	out.ID = a.subscriptionID() + "/resourceGroups/" + id.ResourceGroup + identityProvider + "/" + id.Name + "/federatedIdentityCredentials/" + fc.Name
	out.Name, out.Type = fc.Name, "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
	out.Properties.Issuer, out.Properties.Subject, out.Properties.Audiences = fc.Issuer, fc.Subject, fc.Audiences
	return out
}

func (a *API) putFederated(w http.ResponseWriter, r *http.Request) error {
	id, err := a.cp.Identity(r.Context(), r.PathValue("rg"), r.PathValue("name"))
	if err != nil {
		return err
	}
	var req struct {
		Properties struct {
			Issuer    string   `json:"issuer"`
			Subject   string   `json:"subject"`
			Audiences []string `json:"audiences"`
		} `json:"properties"`
	}
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	p := req.Properties
	fc, err := a.dir.PutFederatedCredential(r.Context(), identity.FederatedCredential{PrincipalID: id.PrincipalID, Name: r.PathValue("fic"),
		Issuer: p.Issuer, Subject: p.Subject, Audiences: p.Audiences})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.federatedResource(id, fc))
	return nil
}

func (a *API) listFederated(w http.ResponseWriter, r *http.Request) error {
	id, err := a.cp.Identity(r.Context(), r.PathValue("rg"), r.PathValue("name"))
	if err != nil {
		return err
	}
	fcs, err := a.dir.FederatedCredentials(r.Context(), id.PrincipalID)
	if err != nil {
		return err
	}
	out := map[string][]FederatedCredential{"value": {}}
	for _, fc := range fcs {
		out["value"] = append(out["value"], a.federatedResource(id, fc))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) deleteFederated(w http.ResponseWriter, r *http.Request) error {
	id, err := a.cp.Identity(r.Context(), r.PathValue("rg"), r.PathValue("name"))
	if err != nil {
		return err
	}
	if err := a.dir.DeleteFederatedCredential(r.Context(), id.PrincipalID, r.PathValue("fic")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
