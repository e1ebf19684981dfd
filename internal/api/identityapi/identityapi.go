// Package identityapi serves the OAuth2 and OpenID Connect endpoints of the
// Microsoft identity platform v2.0, in the shapes Azure SDK credentials
// (azidentity, MSAL) accept: discovery, the JWKS and the token endpoint.
package identityapi

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
)

// API serves the identity endpoints of one tenant.
type API struct {
	dir    *identity.Directory
	fed    *identity.Federation
	tokens *identity.TokenService
	// base is the authority host with a trailing slash.
	base string
	log  *slog.Logger
}

// New returns the identity API; base is the authority host URL ending in "/".
func New(dir *identity.Directory, fed *identity.Federation, tokens *identity.TokenService, base string, log *slog.Logger) *API {
	return &API{dir: dir, fed: fed, tokens: tokens, base: base, log: log}
}

// Register adds the endpoints to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", a.discovery)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", a.jwks)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", a.token)
}

func (a *API) tenantOK(w http.ResponseWriter, r *http.Request) bool {
	t := r.PathValue("tenant")
	if t == a.dir.TenantID() || t == "organizations" {
		return true
	}
	oauthError(w, http.StatusBadRequest, "invalid_tenant", "AADSTS90002: Tenant '"+t+"' not found.", 90002)
	return false
}

type discoveryDoc struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	ResponseTypes         []string `json:"response_types_supported"`
	SubjectTypes          []string `json:"subject_types_supported"`
	SigningAlgs           []string `json:"id_token_signing_alg_values_supported"`
	AuthMethods           []string `json:"token_endpoint_auth_methods_supported"`
	GrantTypes            []string `json:"grant_types_supported"`
	TenantRegionScope     *string  `json:"tenant_region_scope"`
}

func (a *API) discovery(w http.ResponseWriter, r *http.Request) {
	if !a.tenantOK(w, r) {
		return
	}
	t := a.base + a.dir.TenantID()
	httpx.WriteJSON(w, http.StatusOK, discoveryDoc{
		Issuer:                a.tokens.Issuer(),
		AuthorizationEndpoint: t + "/oauth2/v2.0/authorize",
		TokenEndpoint:         t + "/oauth2/v2.0/token",
		JWKSURI:               t + "/discovery/v2.0/keys",
		ResponseTypes:         []string{"code", "id_token", "token"},
		SubjectTypes:          []string{"pairwise"},
		SigningAlgs:           []string{"RS256"},
		AuthMethods:           []string{"client_secret_post", "client_secret_basic", "private_key_jwt"},
		GrantTypes:            []string{"client_credentials", "password"},
	})
}

type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
}

func (a *API) jwks(w http.ResponseWriter, r *http.Request) {
	if !a.tenantOK(w, r) {
		return
	}
	kid, pub := a.tokens.PublicKey()
	enc := base64.RawURLEncoding.EncodeToString
	httpx.WriteJSON(w, http.StatusOK, map[string][]jwk{"keys": {{
		Kty: "RSA", Use: "sig", Kid: kid, Alg: "RS256", N: enc(pub.N.Bytes()), E: enc(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

type tokenResponse struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	ExtExpiresIn int    `json:"ext_expires_in"`
	AccessToken  string `json:"access_token"`
}

// maxForm bounds the token request body.
const maxForm = 64 << 10

func (a *API) token(w http.ResponseWriter, r *http.Request) {
	if !a.tenantOK(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "AADSTS900144: The request body must be a form.", 900144)
		return
	}
	aud, err := a.tokens.Audience(r.PostForm.Get("scope"))
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_scope", "AADSTS500011: The resource principal was not found: "+err.Error(), 500011)
		return
	}
	p, amr, err := a.authenticate(r.Context(), r)
	if err != nil {
		if fault.KindOf(err) == fault.Internal {
			a.log.ErrorContext(r.Context(), "token request failed", "err", err)
			oauthError(w, http.StatusInternalServerError, "server_error", "the token could not be issued", 0)
			return
		}
		fe, _ := fault.As(err)
		code := fe.Code
		if code == "" {
			code = "invalid_request"
		}
		st := http.StatusBadRequest
		if errors.Is(err, identity.ErrInvalidCredentials) {
			st = http.StatusUnauthorized
		}
		oauthError(w, st, code, fe.Msg, 7000215)
		return
	}
	tok, life, err := a.tokens.Issue(r.Context(), p, aud, amr)
	if err != nil {
		a.log.ErrorContext(r.Context(), "token issue failed", "err", err)
		oauthError(w, http.StatusInternalServerError, "server_error", "the token could not be issued", 0)
		return
	}
	a.log.InfoContext(r.Context(), "token issued", "oid", p.ID, "aud", aud)
	w.Header().Set("Cache-Control", "no-store")
	secs := int(life / time.Second)
	httpx.WriteJSON(w, http.StatusOK, tokenResponse{TokenType: "Bearer", ExpiresIn: secs, ExtExpiresIn: secs, AccessToken: tok})
}

// authenticate handles the grants Keyward supports: client_credentials
// with a client secret (form or HTTP Basic), and password for users.
func (a *API) authenticate(ctx context.Context, r *http.Request) (*identity.Principal, []string, error) {
	f := r.PostForm
	switch f.Get("grant_type") {
	case "client_credentials":
		id, secret := f.Get("client_id"), f.Get("client_secret")
		if u, p, ok := r.BasicAuth(); ok {
			id, secret = u, p
		}
		if assertion := f.Get("client_assertion"); assertion != "" {
			if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
				return nil, nil, fault.Errorf(fault.Invalid, "invalid_request", "AADSTS700030: client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			}
			endpoints := []string{a.base + a.dir.TenantID() + "/oauth2/v2.0/token", a.base + r.PathValue("tenant") + "/oauth2/v2.0/token"}
			p, err := a.fed.Authenticate(ctx, id, assertion, endpoints)
			if err != nil {
				a.log.InfoContext(ctx, "client assertion refused", "client_id", id, "reason", err)
			}
			return p, []string{"fed"}, err
		}
		if id == "" || secret == "" {
			return nil, nil, fault.Errorf(fault.Invalid, "invalid_request", "AADSTS900144: client_id and client_secret are required")
		}
		p, err := a.dir.AuthenticateClient(ctx, id, secret)
		return p, []string{"pwd"}, err
	case "password":
		p, err := a.dir.AuthenticateUser(ctx, f.Get("username"), f.Get("password"))
		return p, []string{"pwd"}, err
	case "":
		return nil, nil, fault.Errorf(fault.Invalid, "invalid_request", "AADSTS900144: The request body must contain the parameter 'grant_type'.")
	}
	return nil, nil, fault.Errorf(fault.Invalid, "unsupported_grant_type", "AADSTS70003: the grant type is not supported")
}

type oauthErr struct {
	Error         string `json:"error"`
	Description   string `json:"error_description"`
	ErrorCodes    []int  `json:"error_codes,omitempty"`
	Timestamp     string `json:"timestamp"`
	TraceID       string `json:"trace_id"`
	CorrelationID string `json:"correlation_id"`
}

func oauthError(w http.ResponseWriter, st int, code, desc string, aadsts int) {
	e := oauthErr{Error: code, Description: desc, Timestamp: time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		TraceID: uuid.NewString(), CorrelationID: uuid.NewString()}
	if aadsts != 0 {
		e.ErrorCodes = []int{aadsts}
	}
	httpx.WriteJSON(w, st, e)
}
