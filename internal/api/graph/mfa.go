package graph

import (
	"net/http"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
)

// SoftwareOathMethod is Graph's softwareOathAuthenticationMethod. SecretKey
// and OtpauthURI (a Keyward extension) are shown once, on enrollment; the
// confirmed flag is a Keyward extension too.
type SoftwareOathMethod struct {
	ODataType       string `json:"@odata.type"`
	ID              string `json:"id"`
	SecretKey       string `json:"secretKey,omitempty"`
	OtpauthURI      string `json:"otpauthUri,omitempty"`
	Confirmed       bool   `json:"confirmed"`
	CreatedDateTime string `json:"createdDateTime,omitempty"`
}

const oathType = "#microsoft.graph.softwareOathAuthenticationMethod"

// me returns the signed-in user.
func (a *API) me(r *http.Request) (string, error) {
	c, ok := identity.FromContext(r.Context())
	if !ok || c.Kind != store.KindUser {
		return "", fault.Invalidf("only a signed-in user has authentication methods: /me is a user")
	}
	return c.ObjectID, nil
}

// getMe is Graph's GET /me: the signed-in user. An application's token
// has no user, and Graph refuses it so.
func (a *API) getMe(w http.ResponseWriter, r *http.Request) error {
	c, ok := identity.FromContext(r.Context())
	if !ok || c.Kind != store.KindUser {
		return fault.Errorf(fault.Invalid, "BadRequest", "/me request is only valid with delegated authentication flow.")
	}
	p, err := a.dir.Get(r.Context(), c.ObjectID)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.entity(r, p))
	return nil
}

func (a *API) oathMethods(w http.ResponseWriter, r *http.Request, id string) error {
	out := []SoftwareOathMethod{}
	m, err := a.dir.Authenticator(r.Context(), id)
	switch {
	case err == nil:
		out = append(out, SoftwareOathMethod{ODataType: oathType, ID: m.ID, Confirmed: m.Confirmed, CreatedDateTime: m.Created.UTC().Format(time.RFC3339)})
	case fault.KindOf(err) != fault.NotFound:
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

// myOathMethods lists the signed-in user's authenticator.
func (a *API) myOathMethods(w http.ResponseWriter, r *http.Request) error {
	id, err := a.me(r)
	if err != nil {
		return err
	}
	return a.oathMethods(w, r, id)
}

// userOathMethods lists a user's authenticator, without its secret: for
// the user themself or a Global Administrator (Entra asks
// UserAuthenticationMethod.Read.All of anyone else); others are refused.
func (a *API) userOathMethods(w http.ResponseWriter, r *http.Request) error {
	c, ok := identity.FromContext(r.Context())
	if !ok {
		return ErrForbidden
	}
	p, err := a.lookup(r, store.KindUser, r.PathValue("id"))
	if err != nil {
		return err
	}
	if !strings.EqualFold(p.ID, c.ObjectID) {
		isAdmin, err := a.dir.HasRole(r.Context(), c.ObjectID, identity.GlobalAdministrator)
		if err != nil {
			return err
		}
		rec := route.RecordOf(r.Context())
		rec.Action, rec.Scope = rec.Operation, "/"
		rec.Decision = &route.Decision{Allowed: isAdmin}
		if !isAdmin {
			return ErrForbidden
		}
		rec.Decision.RoleID = globalAdministratorRoleID
	}
	return a.oathMethods(w, r, p.ID)
}

// enrollOath (a Keyward extension: Graph has no enrollment call) gives
// the signed-in user a new TOTP authenticator and shows its secret once.
func (a *API) enrollOath(w http.ResponseWriter, r *http.Request) error {
	id, err := a.me(r)
	if err != nil {
		return err
	}
	e, err := a.dir.EnrollTOTP(r.Context(), id)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusCreated, SoftwareOathMethod{ODataType: oathType, ID: e.ID, SecretKey: e.Secret, OtpauthURI: e.URI})
	return nil
}

// confirmOath (a Keyward extension) puts the signed-in user's new
// authenticator in force with a code from it.
func (a *API) confirmOath(w http.ResponseWriter, r *http.Request) error {
	id, err := a.me(r)
	if err != nil {
		return err
	}
	var req struct {
		Code string `json:"code"`
	}
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	m, err := a.dir.Authenticator(r.Context(), id)
	if err != nil {
		return err
	}
	if m.ID != r.PathValue("methodId") {
		return identity.ErrNotFound.With("the user has no authentication method %s", r.PathValue("methodId"))
	}
	if err := a.dir.ConfirmTOTP(r.Context(), id, req.Code); err != nil {
		if fault.KindOf(err) == fault.Unauthenticated {
			return fault.Invalidf("the verification code is not valid")
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// resetOath removes a user's authenticator (an administrator's reset)
// and revokes the user's refresh tokens.
func (a *API) resetOath(w http.ResponseWriter, r *http.Request) error {
	p, err := a.lookup(r, store.KindUser, r.PathValue("id"))
	if err != nil {
		return err
	}
	m, err := a.dir.Authenticator(r.Context(), p.ID)
	if err != nil {
		return err
	}
	if m.ID != r.PathValue("methodId") {
		return identity.ErrNotFound.With("the user has no authentication method %s", r.PathValue("methodId"))
	}
	if err := a.dir.ResetTOTP(r.Context(), p.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// revokeSessions is Graph's revokeSignInSessions: every refresh token of
// the user ends.
func (a *API) revokeSessions(w http.ResponseWriter, r *http.Request) error {
	var id string
	if r.PathValue("id") == "" {
		var err error
		if id, err = a.me(r); err != nil {
			return err
		}
	} else {
		p, err := a.lookup(r, store.KindUser, r.PathValue("id"))
		if err != nil {
			return err
		}
		id = p.ID
	}
	if err := a.dir.RevokeSignInSessions(r.Context(), id); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean", "value": true})
	return nil
}
