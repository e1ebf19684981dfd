package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// FederatedCredential lets tokens of an external OIDC issuer, for one
// subject and audience, sign in as an application or managed identity
// (workload identity federation): no secret is stored anywhere.
type FederatedCredential struct {
	PrincipalID string   `json:"principalId"`
	Name        string   `json:"name"`
	Issuer      string   `json:"issuer"`
	Subject     string   `json:"subject"`
	Audiences   []string `json:"audiences"`
}

// DefaultFederationAudience is Entra's audience for token exchange.
const DefaultFederationAudience = "api://AzureADTokenExchange"

const kindFederated = "federatedCredential"

// PutFederatedCredential adds or replaces a federated credential.
func (d *Directory) PutFederatedCredential(ctx context.Context, fc FederatedCredential) (FederatedCredential, error) {
	u, err := url.Parse(fc.Issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return FederatedCredential{}, fault.Invalidf("the issuer must be an https URL")
	}
	if fc.Name == "" || len(fc.Name) > 120 || fc.Subject == "" || len(fc.Subject) > 600 {
		return FederatedCredential{}, fault.Invalidf("a federated credential needs a name (at most 120 characters) and a subject")
	}
	if len(fc.Audiences) == 0 {
		fc.Audiences = []string{DefaultFederationAudience}
	}
	if len(fc.Audiences) > 1 {
		return FederatedCredential{}, fault.Invalidf("a federated credential has exactly one audience")
	}
	if _, err := d.Get(ctx, fc.PrincipalID); err != nil {
		return FederatedCredential{}, err
	}
	data, _ := json.Marshal(fc)
	err = d.store.Update(ctx, func(tx store.Tx) error {
		return tx.PutObject(ctx, &store.Object{Kind: kindFederated, ID: fc.PrincipalID + "/" + fc.Name, Data: data})
	})
	return fc, err
}

// FederatedCredentials lists a principal's federated credentials.
func (d *Directory) FederatedCredentials(ctx context.Context, principalID string) ([]FederatedCredential, error) {
	var objs []*store.Object
	err := d.store.View(ctx, func(tx store.Tx) (err error) {
		objs, err = tx.ListObjects(ctx, kindFederated, principalID+"/")
		return err
	})
	out := []FederatedCredential{}
	for _, o := range objs {
		var fc FederatedCredential
		if json.Unmarshal(o.Data, &fc) == nil {
			out = append(out, fc)
		}
	}
	return out, err
}

// DeleteFederatedCredential removes one.
func (d *Directory) DeleteFederatedCredential(ctx context.Context, principalID, name string) error {
	err := d.store.Update(ctx, func(tx store.Tx) error { return tx.DeleteObject(ctx, kindFederated, principalID+"/"+name) })
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	return err
}

// Federation verifies client assertions from trusted external issuers.
type Federation struct {
	dir    *Directory
	client *http.Client
	now    func() time.Time

	mu   sync.Mutex
	jwks map[string]cachedKeys
}

type cachedKeys struct {
	keys    jose.JSONWebKeySet
	err     error // a failed fetch, remembered for failureTTL
	fetched time.Time
}

// How long an issuer's keys, or the failure to fetch them, are remembered.
// Failures are remembered too, so that assertions naming an unreachable
// issuer do not make the server fetch on every request.
const (
	keysTTL      = 5 * time.Minute
	failureTTL   = 30 * time.Second
	fetchTimeout = 10 * time.Second
)

// NewFederation returns a verifier that fetches issuers' keys with client.
func NewFederation(dir *Directory, client *http.Client, now func() time.Time) *Federation {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	// A copy, so that redirects too stay on https.
	c := *client
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" || len(via) >= 5 {
			return fmt.Errorf("refusing a redirect to %s", req.URL.Redacted())
		}
		return nil
	}
	client = &c
	return &Federation{dir: dir, client: client, now: now, jwks: map[string]cachedKeys{}}
}

// ErrAssertion is the refusal of a client assertion; the reason is logged.
// Its cause (fault.Wrap) may name issuers, hosts and network failures, so
// it never reaches the response.
var ErrAssertion = fault.New(fault.Unauthenticated, "invalid_client",
	"AADSTS700211/700212/700213: no matching federated identity record for the presented assertion")

// errCertificateRefused is ErrAssertion for an assertion signed with a
// certificate's key.
var errCertificateRefused = ErrAssertion.With("AADSTS700027: the client assertion was refused; the reason is in the server log")

// Authenticate signs in the application or managed identity clientID with
// a client assertion (a JWT): either one signed with the key of a
// certificate registered for clientID, for one of tokenEndpoints, or one
// issued by a trusted issuer for a matching subject and audience.
func (f *Federation) Authenticate(ctx context.Context, clientID, assertion string, tokenEndpoints []string) (*Principal, error) {
	p, err := f.dir.GetByAppID(ctx, clientID)
	if err != nil {
		return nil, ErrAssertion
	}
	var unverified jwt.RegisteredClaims
	tok, _, err := jwt.NewParser().ParseUnverified(assertion, &unverified)
	if err != nil {
		return nil, ErrAssertion.With("the client assertion is not a JWT")
	}
	if s256, s1, ok := thumbprintHeader(tok); ok {
		if err := f.authenticateCertificate(ctx, p, assertion, s256, s1, tokenEndpoints); err != nil {
			return nil, fault.Wrap(errCertificateRefused, err)
		}
		return p, nil
	}
	fcs, err := f.dir.FederatedCredentials(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	// Several credentials may trust one issuer for different subjects or
	// audiences: the assertion passes if it satisfies any of them.
	var errs []error
	for _, fc := range fcs {
		if fc.Issuer != unverified.Issuer {
			continue
		}
		err := f.verify(ctx, fc, assertion)
		if err == nil {
			return p, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", fc.Name, err))
	}
	if len(errs) > 0 {
		// The reasons (an issuer that cannot be reached, a wrong subject)
		// are for the server log: Wrap keeps them out of the response.
		return nil, fault.Wrap(ErrAssertion, errors.Join(errs...))
	}
	return nil, ErrAssertion
}

func (f *Federation) verify(ctx context.Context, fc FederatedCredential, assertion string) error {
	keys, err := f.keys(ctx, fc.Issuer)
	if err != nil {
		return err
	}
	var claims jwt.RegisteredClaims
	_, err = jwt.ParseWithClaims(assertion, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		for _, k := range keys.Keys {
			if kid == "" || k.KeyID == kid {
				return k.Key, nil
			}
		}
		return nil, fmt.Errorf("no key %q at the issuer", kid)
	}, jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "ES256", "ES384", "PS256"}), jwt.WithIssuer(fc.Issuer),
		jwt.WithExpirationRequired(), jwt.WithLeeway(clockSkew), jwt.WithTimeFunc(f.now), jwt.WithSubject(fc.Subject))
	if err != nil {
		return err
	}
	for _, a := range claims.Audience {
		if slices.Contains(fc.Audiences, a) {
			return nil
		}
	}
	return fmt.Errorf("audience %v is not %v", claims.Audience, fc.Audiences)
}

// keys returns an issuer's signing keys, from its discovery document,
// cached for keysTTL; a failure is cached for failureTTL. Only https
// issuers and key URLs are fetched.
func (f *Federation) keys(ctx context.Context, issuer string) (jose.JSONWebKeySet, error) {
	f.mu.Lock()
	c, ok := f.jwks[issuer]
	f.mu.Unlock()
	if ok {
		age := f.now().Sub(c.fetched)
		if c.err == nil && age < keysTTL {
			return c.keys, nil
		}
		if c.err != nil && age < failureTTL {
			return jose.JSONWebKeySet{}, c.err
		}
	}
	// The result is cached for everyone, so a caller that gives up must not
	// cut the fetch short and leave a failure behind.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	set, err := f.fetchKeys(fctx, issuer)
	f.mu.Lock()
	f.jwks[issuer] = cachedKeys{keys: set, err: err, fetched: f.now()}
	f.mu.Unlock()
	return set, err
}

func (f *Federation) fetchKeys(ctx context.Context, issuer string) (jose.JSONWebKeySet, error) {
	if u, err := url.Parse(issuer); err != nil || u.Scheme != "https" || u.Host == "" {
		return jose.JSONWebKeySet{}, fmt.Errorf("the issuer %q is not an https URL", issuer)
	}
	var disco struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := f.getJSON(ctx, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", &disco); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	if u, err := url.Parse(disco.JWKSURI); disco.Issuer != issuer || err != nil || u.Scheme != "https" || u.Host == "" {
		return jose.JSONWebKeySet{}, fmt.Errorf("the issuer's discovery document does not match it")
	}
	var set jose.JSONWebKeySet
	if err := f.getJSON(ctx, disco.JWKSURI, &set); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	return set, nil
}

func (f *Federation) getJSON(ctx context.Context, u string, v any) error {
	if !strings.HasPrefix(u, "https://") {
		return fmt.Errorf("refusing to fetch %s: not https", u)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: %s", u, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
