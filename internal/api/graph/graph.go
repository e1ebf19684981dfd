// Package graph serves the small part of Microsoft Graph (/v1.0) that the
// directory needs: users, groups and their members, service principals and
// their secrets. Any principal of the tenant may read; only a Global
// Administrator may change the directory.
package graph

import (
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/pim"
	"github.com/keyward/keyward/internal/store"
)

// API serves /v1.0.
type API struct {
	dir *identity.Directory
	log *slog.Logger
	ops *route.Table
	pim *pim.Service // PIM for Groups; nil: not served
}

// New returns the Graph API over dir.
func New(dir *identity.Directory, log *slog.Logger) *API {
	a := &API{dir: dir, log: log}
	a.ops = a.operations()
	return a
}

// PasswordCredentialInfo describes a client secret without it.
type PasswordCredentialInfo struct {
	CustomKeyIdentifier *string `json:"customKeyIdentifier"`
	SecretText          *string `json:"secretText"`
	KeyID               string  `json:"keyId"`
	DisplayName         string  `json:"displayName"`
	Hint                string  `json:"hint"`
	StartDateTime       string  `json:"startDateTime"`
	EndDateTime         string  `json:"endDateTime"`
}

// PasswordCredential is the answer of addPassword; SecretText is shown once.
type PasswordCredential struct {
	KeyID         string `json:"keyId"`
	DisplayName   string `json:"displayName"`
	Hint          string `json:"hint"`
	SecretText    string `json:"secretText"`
	StartDateTime string `json:"startDateTime"`
	EndDateTime   string `json:"endDateTime"`
}

// CreateRequest is the body of a POST to users, groups or servicePrincipals.
type CreateRequest struct {
	DisplayName       string `json:"displayName"`
	UserPrincipalName string `json:"userPrincipalName"`
	MailNickname      string `json:"mailNickname"`
	PasswordProfile   *struct {
		Password string `json:"password"`
	} `json:"passwordProfile"`
	// ServicePrincipalType "ManagedIdentity" makes a managed identity.
	ServicePrincipalType string `json:"servicePrincipalType"`
}

// validate checks what a create body of kind needs on its own; the
// directory checks names and passwords.
func (req *CreateRequest) validate(kind string) error {
	if kind == store.KindUser && req.PasswordProfile == nil {
		return fault.Invalidf("passwordProfile.password is required")
	}
	return nil
}

// MemberRef is the body of a POST to members/$ref.
type MemberRef struct {
	ODataID string `json:"@odata.id"`
}

// ErrManagedIdentityCredentials refuses Graph credential changes on a
// managed identity: as in Entra, its credentials are the platform's (here,
// the identity agent's, through the resource manager), and a name lookup
// that lands on one must not hand out or revoke its secrets.
var ErrManagedIdentityCredentials = fault.New(fault.Invalid, "Request_BadRequest",
	"the credentials of a managed identity cannot be changed through the directory")

// ErrForbidden is Graph's refusal for callers without a directory role.
var ErrForbidden = fault.New(fault.Forbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")

var filterEq = regexp.MustCompile(`^\s*(displayName|appId|userPrincipalName|mailNickname)\s+eq\s+'((?:[^']|'')*)'\s*$`)

// filterStartsWith is the prefix filter az uses for names
// (startswith(displayName,'…')).
var filterStartsWith = regexp.MustCompile(`^\s*startswith\(\s*(displayName|userPrincipalName|mailNickname)\s*,\s*'((?:[^']|'')*)'\s*\)\s*$`)

func (a *API) list(kind string) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var field, want string
		prefix := false
		if f := r.URL.Query().Get("$filter"); f != "" {
			m := filterEq.FindStringSubmatch(f)
			if m == nil {
				if m = filterStartsWith.FindStringSubmatch(f); m != nil {
					prefix = true
				}
			}
			if m == nil {
				return fault.Errorf(fault.Invalid, "Request_UnsupportedQuery",
					"only $filter=<displayName|appId|userPrincipalName|mailNickname> eq '<value>' or startswith(<displayName|userPrincipalName|mailNickname>,'<value>') is supported")
			}
			field, want = m[1], strings.ReplaceAll(m[2], "''", "'")
		}
		ps, err := a.dir.List(r.Context(), kind)
		if err != nil {
			return err
		}
		if kind == store.KindServicePrincipal {
			mi, err := a.dir.List(r.Context(), store.KindManagedIdentity)
			if err != nil {
				return err
			}
			ps = append(ps, mi...)
		}
		out := []Object{}
		for _, p := range ps {
			if field != "" {
				have := map[string]string{"displayName": p.DisplayName, "appId": p.AppID,
					"userPrincipalName": p.UPN, "mailNickname": p.MailNickname}[field]
				// Graph compares without regard to case, for eq and startswith.
				if prefix && !strings.HasPrefix(strings.ToLower(have), strings.ToLower(want)) ||
					!prefix && !strings.EqualFold(have, want) {
					continue
				}
			}
			out = append(out, objectOf(p, a.dir.TenantID(), false))
		}
		httpx.WriteJSON(w, http.StatusOK, collection(r, entitySet(kind), out))
		return nil
	}
}

// lookup finds an object of kind by id (or by appId for applications, or
// by user principal name for users), as Graph does.
func (a *API) lookup(r *http.Request, kind, id string) (*identity.Principal, error) {
	p, err := a.dir.Get(r.Context(), id)
	if errors.Is(err, identity.ErrNotFound) && kind == store.KindServicePrincipal {
		p, err = a.dir.GetByAppID(r.Context(), id)
	}
	if errors.Is(err, identity.ErrNotFound) && kind == store.KindUser {
		p, err = a.dir.GetByUPN(r.Context(), id)
	}
	if err != nil {
		return nil, err
	}
	if p.Kind != kind && !(kind == store.KindServicePrincipal && p.Kind == store.KindManagedIdentity) {
		return nil, identity.ErrNotFound.With("Resource '%s' does not exist or one of its queried reference-property objects are not present.", id)
	}
	return p, nil
}

func (a *API) get(kind string) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, err := a.lookup(r, kind, r.PathValue("id"))
		if err != nil {
			return err
		}
		o := a.entity(r, p)
		if p.Kind == store.KindServicePrincipal {
			if err := a.withCredentials(r.Context(), o, p); err != nil {
				return err
			}
		}
		httpx.WriteJSON(w, http.StatusOK, o)
		return nil
	}
}

func (a *API) remove(kind string) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, err := a.lookup(r, kind, r.PathValue("id"))
		if err != nil {
			return err
		}
		if err := a.dir.Delete(r.Context(), p.ID); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func (a *API) create(kind string) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req CreateRequest
		if err := httpx.ReadJSON(w, r, &req); err != nil {
			return err
		}
		if err := req.validate(kind); err != nil {
			return err
		}
		var p *identity.Principal
		var err error
		switch kind {
		case store.KindUser:
			p, err = a.dir.CreateUser(r.Context(), req.DisplayName, req.UserPrincipalName, req.PasswordProfile.Password)
		case store.KindGroup:
			p, err = a.dir.CreateGroup(r.Context(), req.DisplayName, req.MailNickname)
		default:
			k := store.KindServicePrincipal
			if req.ServicePrincipalType == "ManagedIdentity" {
				k = store.KindManagedIdentity
			}
			p, err = a.dir.CreateServicePrincipal(r.Context(), k, req.DisplayName)
		}
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusCreated, a.entity(r, p))
		return nil
	}
}

func (a *API) addPassword(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		PasswordCredential struct {
			DisplayName string `json:"displayName"`
		} `json:"passwordCredential"`
	}
	if r.ContentLength != 0 {
		if err := httpx.ReadJSON(w, r, &req); err != nil {
			return err
		}
	}
	p, err := a.lookup(r, store.KindServicePrincipal, r.PathValue("id"))
	if err != nil {
		return err
	}
	if p.Kind == store.KindManagedIdentity {
		return ErrManagedIdentityCredentials
	}
	secret, cred, err := a.dir.AddSecret(r.Context(), p.ID, req.PasswordCredential.DisplayName)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, PasswordCredential{KeyID: cred.ID, DisplayName: cred.DisplayName, Hint: cred.Hint,
		SecretText: secret, StartDateTime: cred.Created.Format(time.RFC3339), EndDateTime: cred.Expires.Format(time.RFC3339)})
	return nil
}

// removePassword is Graph's POST servicePrincipals/{id}/removePassword.
func (a *API) removePassword(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		KeyID string `json:"keyId"`
	}
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	if req.KeyID == "" {
		return fault.Invalidf("keyId is required")
	}
	p, err := a.lookup(r, store.KindServicePrincipal, r.PathValue("id"))
	if err != nil {
		return err
	}
	if p.Kind == store.KindManagedIdentity {
		return ErrManagedIdentityCredentials
	}
	if err := a.dir.RemoveSecret(r.Context(), p.ID, req.KeyID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) members(w http.ResponseWriter, r *http.Request) error {
	g, err := a.lookup(r, store.KindGroup, r.PathValue("id"))
	if err != nil {
		return err
	}
	ms, err := a.dir.Members(r.Context(), g.ID)
	if err != nil {
		return err
	}
	out := []Object{}
	for _, m := range ms {
		out = append(out, objectOf(m, a.dir.TenantID(), true))
	}
	httpx.WriteJSON(w, http.StatusOK, collection(r, "directoryObjects", out))
	return nil
}

// memberID takes the object id from an @odata.id reference such as
// "https://graph.microsoft.com/v1.0/directoryObjects/{id}".
func memberID(ref string) string {
	return ref[strings.LastIndex(ref, "/")+1:]
}

func (a *API) addMember(w http.ResponseWriter, r *http.Request) error {
	var req MemberRef
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	if req.ODataID == "" {
		return fault.Invalidf("@odata.id is required")
	}
	g, err := a.lookup(r, store.KindGroup, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := a.dir.AddMember(r.Context(), g.ID, memberID(req.ODataID)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) removeMember(w http.ResponseWriter, r *http.Request) error {
	g, err := a.lookup(r, store.KindGroup, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := a.dir.RemoveMember(r.Context(), g.ID, r.PathValue("member")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) checkMemberGroups(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		GroupIDs []string `json:"groupIds"`
	}
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	if _, err := a.dir.Get(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	groups, err := a.dir.GroupsOf(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	out := struct {
		Value []string `json:"value"`
	}{Value: []string{}}
	for _, g := range req.GroupIDs {
		for _, have := range groups {
			if g == have {
				out.Value = append(out.Value, g)
			}
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getByIDs(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		IDs []string `json:"ids"`
	}
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	out := []Object{}
	for _, id := range req.IDs {
		if p, err := a.dir.Get(r.Context(), id); err == nil {
			out = append(out, objectOf(p, a.dir.TenantID(), true))
		}
	}
	httpx.WriteJSON(w, http.StatusOK, collection(r, "directoryObjects", out))
	return nil
}
