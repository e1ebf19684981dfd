// Package identityapi serves the OAuth2 and OpenID Connect endpoints of the
// Microsoft identity platform v2.0, in the shapes Azure SDK credentials
// (azidentity, MSAL) accept: discovery, the JWKS and the token endpoint.
package identityapi

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"hash/fnv"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/route"
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
	// throttle locks out client ids, user names and source addresses after
	// repeated failed sign-ins.
	throttle *identity.Throttle
	// otpThrottle locks a user's second factor after repeated wrong codes,
	// whatever the source: a code has only a million values.
	otpThrottle *identity.Throttle
	// otpLocks make a user's second-factor check one at a time, from the
	// lockout's check through the failure's count: otherwise a burst of
	// parallel guesses all pass the check before the first is counted.
	otpLocks [64]sync.Mutex
}

// otpLock returns the lock of principal's second-factor checks.
func (a *API) otpLock(principal string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(principal))
	return &a.otpLocks[h.Sum32()%uint32(len(a.otpLocks))]
}

// checkOTP checks a user's TOTP code under the second-factor lockout, one
// check of that user at a time.
func (a *API) checkOTP(ctx context.Context, principal, code string) error {
	mu := a.otpLock(principal)
	mu.Lock()
	defer mu.Unlock()
	if _, err := a.otpThrottle.Check(principal, ""); err != nil {
		return identity.ErrLockedOut
	}
	if err := a.dir.VerifyTOTP(ctx, principal, code); err != nil {
		if fault.KindOf(err) == fault.Unauthenticated && a.otpThrottle.Fail(principal, "") {
			a.log.WarnContext(ctx, "second factor locked out after repeated wrong codes", "oid", principal)
		}
		return err
	}
	return nil
}

// OTP lockout: 5 wrong codes for one user within 10 minutes lock the
// user's codes out for 15 minutes.
const (
	otpFailureLimit = 5
	otpLockout      = 15 * time.Minute
)

// New returns the identity API; base is the authority host URL ending in
// "/". A nil throttle takes the default limits.
func New(dir *identity.Directory, fed *identity.Federation, tokens *identity.TokenService, throttle *identity.Throttle, base string, log *slog.Logger) *API {
	if throttle == nil {
		throttle = identity.NewThrottle(identity.ThrottleConfig{})
	}
	return &API{dir: dir, fed: fed, tokens: tokens, throttle: throttle, base: base, log: log,
		otpThrottle: identity.NewThrottle(identity.ThrottleConfig{PrincipalLimit: otpFailureLimit, SpreadLimit: otpFailureLimit,
			Window: 10 * time.Minute, Lockout: otpLockout})}
}

// Operations are the identity platform's endpoints: open to anyone, named
// as Entra's sign-in logs name them.
func (a *API) Operations() []route.Op {
	op := func(name, method, pattern string, h http.HandlerFunc) route.Op {
		return route.Op{Name: name, Method: method, Pattern: pattern,
			Handle: func(w http.ResponseWriter, r *http.Request) error { h(w, r); return nil }}
	}
	return []route.Op{
		op("OpenIdConnectDiscovery", http.MethodGet, "/{tenant}/v2.0/.well-known/openid-configuration", a.discovery),
		op("InstanceDiscovery", http.MethodGet, "/common/discovery/instance", a.instanceDiscovery),
		op("Jwks", http.MethodGet, "/{tenant}/discovery/v2.0/keys", a.jwks),
		op("Token", http.MethodPost, "/{tenant}/oauth2/v2.0/token", a.token),
		op("Authorize", http.MethodGet, "/{tenant}/oauth2/v2.0/authorize", a.authorize),
		op("SignIn", http.MethodPost, "/{tenant}/oauth2/v2.0/authorize", a.signIn),
		op("SignInStyle", http.MethodGet, "/signin.css", a.signinCSS),
		op("SignInScript", http.MethodGet, "/signin.js", a.signinJS),
		op("DeviceCode", http.MethodPost, "/{tenant}/oauth2/v2.0/devicecode", a.deviceCode),
		op("DeviceLogin", http.MethodGet, "/devicelogin", a.deviceLogin),
		op("DeviceLoginCode", http.MethodPost, "/devicelogin", a.deviceLoginCode),
		// Keyward extension (RFC 7009): revoke a refresh token.
		op("Revoke", http.MethodPost, "/{tenant}/oauth2/v2.0/revoke", a.revoke),
	}
}

func (a *API) tenantOK(w http.ResponseWriter, r *http.Request) bool {
	t := r.PathValue("tenant")
	if t == a.dir.TenantID() || t == "organizations" || t == "common" {
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
		GrantTypes:            []string{"authorization_code", "client_credentials", "password", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"},
	})
}

// instanceDiscovery answers MSAL's authority validation for this server
// alone: the authority is itself, with no aliases, and its tenant's OpenID
// metadata is where the discovery documents are.
func (a *API) instanceDiscovery(w http.ResponseWriter, r *http.Request) {
	tenant := a.dir.TenantID()
	if u, err := url.Parse(r.URL.Query().Get("authorization_endpoint")); err == nil {
		if t, _, _ := strings.Cut(strings.TrimPrefix(u.EscapedPath(), "/"), "/"); t == "organizations" || t == "common" {
			tenant = t
		}
	}
	host := strings.TrimSuffix(strings.TrimPrefix(a.base, "https://"), "/")
	httpx.WriteJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": a.base + tenant + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata":                  []map[string]any{{"preferred_network": host, "preferred_cache": host, "aliases": []string{host}}},
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
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// maxForm bounds the token request body.
const maxForm = 64 << 10

func (a *API) token(w http.ResponseWriter, r *http.Request) {
	if !a.tenantOK(w, r) {
		return
	}
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "AADSTS900144: The request body must be a form.", 900144)
		return
	}
	subject := subjectOf(r)
	// The audit record names whom the request was for (never a secret),
	// so that guessing against one account shows in the log.
	route.RecordOf(ctx).SignInSubject = cmp.Or(subject, r.PostForm.Get("client_id"))
	aud, err := a.tokens.Audience(r.PostForm.Get("scope"))
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_scope", "AADSTS500011: The resource principal was not found: "+err.Error(), 500011)
		return
	}
	source := sourceOf(r)
	if until, err := a.throttle.Check(subject, source); err != nil {
		a.log.WarnContext(ctx, "sign-in refused: locked out", "subject", subject, "source", source, "until", until)
		fe, _ := fault.As(err)
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(time.Until(until)/time.Second))))
		oauthError(w, http.StatusBadRequest, fe.Code, fe.Msg, 50053)
		return
	}
	p, amr, authTime, granted, err := a.authenticate(ctx, r)
	if err != nil {
		a.refuse(w, r, subject, source, err)
		return
	}
	scope := r.PostForm.Get("scope")
	if granted != "" {
		// A code stands for the scope the user signed in for: its token is
		// for that resource, with a refresh token only if it was asked.
		scope = granted
		if aud, err = a.tokens.Audience(scope); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_scope", "AADSTS500011: The resource principal was not found: "+err.Error(), 500011)
			return
		}
	}
	tok, life, err := a.tokens.IssueSession(ctx, p, aud, amr, authTime)
	if err != nil {
		a.log.ErrorContext(ctx, "token issue failed", "err", err)
		oauthError(w, http.StatusInternalServerError, "server_error", "the token could not be issued", 0)
		return
	}
	secs := int(life / time.Second)
	resp := tokenResponse{TokenType: "Bearer", ExpiresIn: secs, ExtExpiresIn: secs, AccessToken: tok, Scope: scope}
	// A user's sign-in that asks for offline_access gets a refresh token,
	// as Entra's; a refresh does not get another (the first one stays good
	// until its end).
	if grant := r.PostForm.Get("grant_type"); (grant == "password" || grant == "authorization_code" || strings.HasSuffix(grant, "device_code")) &&
		slices.Contains(strings.Fields(scope), "offline_access") {
		if resp.RefreshToken, err = a.dir.IssueRefreshToken(ctx, p, amr, authTime); err != nil {
			a.log.ErrorContext(ctx, "refresh token issue failed", "err", err)
			oauthError(w, http.StatusInternalServerError, "server_error", "the token could not be issued", 0)
			return
		}
	}
	a.throttle.Succeed(subject, source)
	a.log.InfoContext(ctx, "token issued", "oid", p.ID, "aud", aud, "amr", amr)
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, resp)
}

// revoke is RFC 7009's revocation endpoint for refresh tokens (a Keyward
// extension: Entra revokes with Graph's revokeSignInSessions). Whoever
// holds a refresh token may revoke it; the answer is 200 whether or not
// the token was known.
func (a *API) revoke(w http.ResponseWriter, r *http.Request) {
	if !a.tenantOK(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "AADSTS900144: The request body must contain the parameter 'token'.", 900144)
		return
	}
	if hint := r.PostForm.Get("token_type_hint"); hint != "" && hint != "refresh_token" {
		oauthError(w, http.StatusBadRequest, "unsupported_token_type", "only refresh tokens are revoked: access tokens end by themselves", 0)
		return
	}
	if err := a.dir.RevokeRefreshToken(r.Context(), r.PostForm.Get("token")); err != nil {
		a.log.ErrorContext(r.Context(), "refresh token revocation failed", "err", err)
		oauthError(w, http.StatusInternalServerError, "server_error", "the token could not be revoked", 0)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// refuse answers a failed token request and counts wrong credentials
// towards a lockout.
func (a *API) refuse(w http.ResponseWriter, r *http.Request, subject, source string, err error) {
	ctx := r.Context()
	switch {
	case errors.Is(err, identity.ErrBusy):
		a.log.WarnContext(ctx, "sign-in refused: busy", "subject", subject, "source", source)
		w.Header().Set("Retry-After", "1")
		fe, _ := fault.As(err)
		oauthError(w, http.StatusTooManyRequests, fe.Code, fe.Msg, 90055)
		return
	case fault.KindOf(err) == fault.Unavailable:
		// The directory cannot be read now (its database is down): a
		// transient failure to retry, never a verdict on the credential.
		a.log.WarnContext(ctx, "token request failed: unavailable", "err", err)
		w.Header().Set("Retry-After", "5")
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the service cannot issue tokens now; retry later", 90033)
		return
	case fault.KindOf(err) == fault.Internal:
		a.log.ErrorContext(ctx, "token request failed", "err", err)
		oauthError(w, http.StatusInternalServerError, "server_error", "the token could not be issued", 0)
		return
	case fault.KindOf(err) == fault.Unauthenticated:
		if a.throttle.Fail(subject, source) {
			a.log.WarnContext(ctx, "sign-in locked out after repeated failures", "subject", subject, "source", source)
		}
		// Each failure in a row costs the next answer more, up to 2 s.
		slowDown(ctx, a.throttle.Failures(subject, source))
	}
	fe, _ := fault.As(err)
	code := fe.Code
	if code == "" {
		code = "invalid_request"
	}
	st := http.StatusBadRequest
	// A wrong secret and a refused client assertion are both invalid_client,
	// which RFC 6749 §5.2 answers with 401.
	if errors.Is(err, identity.ErrInvalidCredentials) || errors.Is(err, identity.ErrAssertion) {
		st = http.StatusUnauthorized
	}
	errorCode := 7000215
	if errors.Is(err, identity.ErrInvalidPassword) {
		errorCode = 50126
	}
	oauthError(w, st, code, fe.Msg, errorCode)
}

// subjectOf returns whom a token request tries to sign in as: the client
// id (from the form or HTTP Basic) or, for the password grant, the user.
func subjectOf(r *http.Request) string {
	switch g := r.PostForm.Get("grant_type"); {
	case g == "password":
		return r.PostForm.Get("username")
	case g == "authorization_code", g == "refresh_token", strings.HasSuffix(g, "device_code"):
		// The client ids of these grants are public clients' that every
		// user shares: failures there would lock everyone out. What they
		// carry cannot be guessed, so only the address is counted.
		return ""
	}
	if u, _, ok := r.BasicAuth(); ok {
		return u
	}
	return r.PostForm.Get("client_id")
}

// sourceOf returns the address a request came from, for the lockout: the
// peer's IP (an IPv6 address stands for its /64, which one host often
// holds whole). X-Forwarded-For is not trusted: anyone can write it.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// slowDown delays the answer to the n-th failure in a row: 100 ms per
// failure after the third, at most 2 s.
func slowDown(ctx context.Context, n int) {
	if n <= 3 {
		return
	}
	t := time.NewTimer(min(time.Duration(n-3)*100*time.Millisecond, 2*time.Second))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// authenticate handles the grants Keyward supports: client_credentials
// with a client secret (form or HTTP Basic), password for users (with a
// TOTP code in the form field otp, a Keyward extension), and
// refresh_token, authorization_code and device_code. It returns the
// principal, the methods it signed in with and when (zero: now), and the
// scope a code was granted for ("" for the other grants).
func (a *API) authenticate(ctx context.Context, r *http.Request) (*identity.Principal, []string, time.Time, string, error) {
	if r.PostForm.Get("grant_type") == "refresh_token" {
		tok := r.PostForm.Get("refresh_token")
		if tok == "" {
			return nil, nil, time.Time{}, "", fault.Errorf(fault.Invalid, "invalid_request", "AADSTS900144: The request body must contain the parameter 'refresh_token'.")
		}
		p, rt, err := a.dir.RedeemRefreshToken(ctx, tok)
		if err != nil {
			return nil, nil, time.Time{}, "", err
		}
		return p, rt.AMR, rt.AuthTime, "", nil
	}
	if g := r.PostForm.Get("grant_type"); g == "urn:ietf:params:oauth:grant-type:device_code" || g == "device_code" {
		f := r.PostForm
		if f.Get("device_code") == "" || f.Get("client_id") == "" {
			return nil, nil, time.Time{}, "", fault.Errorf(fault.Invalid, "invalid_request", "AADSTS900144: The request body must contain the parameters 'device_code' and 'client_id'.")
		}
		p, dc, err := a.dir.RedeemDeviceCode(ctx, f.Get("device_code"), f.Get("client_id"))
		if err != nil {
			return nil, nil, time.Time{}, "", err
		}
		return p, dc.AMR, dc.AuthTime, dc.Scope, nil
	}
	if r.PostForm.Get("grant_type") == "authorization_code" {
		f := r.PostForm
		if f.Get("code") == "" || f.Get("client_id") == "" {
			return nil, nil, time.Time{}, "", fault.Errorf(fault.Invalid, "invalid_request", "AADSTS900144: The request body must contain the parameters 'code' and 'client_id'.")
		}
		p, c, err := a.dir.RedeemAuthCode(ctx, f.Get("code"), f.Get("client_id"), f.Get("redirect_uri"), f.Get("code_verifier"))
		if err != nil {
			return nil, nil, time.Time{}, "", err
		}
		return p, c.AMR, c.AuthTime, c.Scope, nil
	}
	p, amr, err := a.authenticateNow(ctx, r)
	return p, amr, time.Time{}, "", err
}

func (a *API) authenticateNow(ctx context.Context, r *http.Request) (*identity.Principal, []string, error) {
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
		if err != nil || f.Get("otp") == "" {
			return p, []string{"pwd"}, err
		}
		// The code is checked only after the password, so it tells nothing
		// to whoever does not have the password.
		if err := a.checkOTP(ctx, p.ID, f.Get("otp")); err != nil {
			return nil, nil, err
		}
		return p, []string{"pwd", "otp", "mfa"}, nil
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
