package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/oidc"
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
	dir  *Directory
	keys *oidc.Keys
	now  func() time.Time
}

// NewFederation returns a verifier that fetches issuers' keys with client.
func NewFederation(dir *Directory, client *http.Client, now func() time.Time) *Federation {
	return &Federation{dir: dir, keys: oidc.NewKeys(client, now, false), now: now}
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
	keys, err := f.keys.For(ctx, fc.Issuer)
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
