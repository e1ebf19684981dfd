package arm

import (
	"net/http"
	"strings"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/controlplane"
	"github.com/keyward/keyward/internal/fault"
)

// ResourceGroup is the ARM resource.
type ResourceGroup struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags"`
	Properties struct {
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

func (a *API) group(g controlplane.ResourceGroup) ResourceGroup {
	out := ResourceGroup{ID: a.subscriptionID() + "/resourceGroups/" + g.Name, Name: g.Name, Type: "Microsoft.Resources/resourceGroups",
		Location: g.Location, Tags: g.Tags}
	if out.Tags == nil {
		out.Tags = map[string]string{}
	}
	out.Properties.ProvisioningState = "Succeeded"
	return out
}

func (a *API) putGroup(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Location string            `json:"location"`
		Tags     map[string]string `json:"tags"`
	}
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	g, created, err := a.cp.PutGroup(r.Context(), controlplane.ResourceGroup{Name: r.PathValue("rg"), Location: req.Location, Tags: req.Tags})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, putStatus(created), a.group(g))
	return nil
}

func (a *API) getGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := a.cp.Group(r.Context(), r.PathValue("rg"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.group(g))
	return nil
}

func (a *API) listGroups(w http.ResponseWriter, r *http.Request) error {
	gs, err := a.cp.Groups(r.Context())
	if err != nil {
		return err
	}
	var res []ResourceGroup
	for _, g := range gs {
		res = append(res, a.group(g))
	}
	return writeVisible(a, w, r, "Microsoft.Resources/subscriptions/resourceGroups/read", res, func(g ResourceGroup) string { return g.ID })
}

// deleteGroup removes an empty group. Storage accounts count too: an
// account left behind would come back into a new group of the same name.
func (a *API) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	rg := r.PathValue("rg")
	if _, err := a.cp.Group(r.Context(), rg); err != nil {
		return err
	}
	if a.diag != nil {
		accts, err := a.diag.ListAccounts(r.Context())
		if err != nil {
			return err
		}
		for _, acct := range accts {
			if strings.EqualFold(acct.ResourceGroup, rg) {
				return fault.Errorf(fault.Conflict, "ResourceGroupNotEmpty", "Resource group '%s' still holds storage account %s.", rg, acct.Name)
			}
		}
	}
	if err := a.cp.DeleteGroup(r.Context(), rg); err != nil {
		return err
	}
	if err := a.rbac.Forget(r.Context(), strings.TrimSuffix(r.URL.Path, "/")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
