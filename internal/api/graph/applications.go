package graph

import (
	"net/http"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
)

// Applications, as far as Keyward has them: an application is its service
// principal (found by object id or app id), and what can be set on it is
// whether it is a public client — its publicClient.redirectUris, for the
// authorization-code flow, and isFallbackPublicClient, for the
// device-code flow — as Entra's app registration sets them.

// Application is Graph's application, in the part Keyward keeps.
type Application struct {
	ID                     string        `json:"id"`
	AppID                  string        `json:"appId"`
	DisplayName            string        `json:"displayName"`
	IsFallbackPublicClient bool          `json:"isFallbackPublicClient"`
	PublicClient           *PublicClient `json:"publicClient"`
	SignInAudience         string        `json:"signInAudience"`
}

// PublicClient is Graph's publicClientApplication.
type PublicClient struct {
	RedirectURIs []string `json:"redirectUris"`
}

func (a *API) getApplication(w http.ResponseWriter, r *http.Request) error {
	p, err := a.application(r)
	if err != nil {
		return err
	}
	s, err := a.dir.PublicClientOf(r.Context(), p.ID)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, applicationOf(p, s))
	return nil
}

func applicationOf(p *identity.Principal, s identity.PublicClientSettings) Application {
	return Application{ID: p.ID, AppID: p.AppID, DisplayName: p.DisplayName, IsFallbackPublicClient: s.AllowPublicClientFlows,
		PublicClient: &PublicClient{RedirectURIs: s.RedirectURIs}, SignInAudience: "AzureADMyOrg"}
}

// patchApplication sets publicClient and isFallbackPublicClient; 204.
func (a *API) patchApplication(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		PublicClient           *PublicClient `json:"publicClient"`
		IsFallbackPublicClient *bool         `json:"isFallbackPublicClient"`
	}
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	if req.PublicClient == nil && req.IsFallbackPublicClient == nil {
		return fault.Invalidf("only publicClient and isFallbackPublicClient can be updated")
	}
	p, err := a.application(r)
	if err != nil {
		return err
	}
	s, err := a.dir.PublicClientOf(r.Context(), p.ID)
	if err != nil {
		return err
	}
	if req.PublicClient != nil {
		s.RedirectURIs = req.PublicClient.RedirectURIs
	}
	if req.IsFallbackPublicClient != nil {
		s.AllowPublicClientFlows = *req.IsFallbackPublicClient
	}
	if err := a.dir.SetPublicClient(r.Context(), p.ID, s); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
