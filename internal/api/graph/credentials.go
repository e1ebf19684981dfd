package graph

import (
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
)

// KeyCredential is a certificate credential in Graph's shape. Key is
// accepted on PATCH and never returned, as Graph does.
type KeyCredential struct {
	KeyID               string `json:"keyId,omitempty"`
	Type                string `json:"type"`
	Usage               string `json:"usage"`
	DisplayName         string `json:"displayName,omitempty"`
	CustomKeyIdentifier string `json:"customKeyIdentifier,omitempty"`
	StartDateTime       string `json:"startDateTime,omitempty"`
	EndDateTime         string `json:"endDateTime,omitempty"`
	Key                 string `json:"key,omitempty"`
}

// FederatedIdentityCredential is Graph's federatedIdentityCredential.
type FederatedIdentityCredential struct {
	ID          string   `json:"id,omitempty"`
	Name        string   `json:"name"`
	Issuer      string   `json:"issuer"`
	Subject     string   `json:"subject"`
	Audiences   []string `json:"audiences"`
	Description string   `json:"description,omitempty"`
}

// patchServicePrincipal supports the one property Keyward lets change:
// keyCredentials, replaced as a whole. Entries with a keyId and no key keep
// that existing credential.
func (a *API) patchServicePrincipal(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		KeyCredentials *[]KeyCredential `json:"keyCredentials"`
	}
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	if req.KeyCredentials == nil {
		return fault.Invalidf("only keyCredentials can be updated")
	}
	keep, add, err := parseKeyCredentials(*req.KeyCredentials)
	if err != nil {
		return err
	}
	p, err := a.lookup(r, store.KindServicePrincipal, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := a.dir.SetCertificates(r.Context(), p.ID, keep, add); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// parseKeyCredentials splits a PATCH's keyCredentials into the key ids of
// existing credentials to keep and the new certificates to add.
func parseKeyCredentials(kcs []KeyCredential) (keep []string, add []identity.CertificateCredential, err error) {
	for _, kc := range kcs {
		if kc.Key == "" {
			if kc.KeyID == "" {
				return nil, nil, fault.Invalidf("a key credential needs a key or the keyId of an existing one")
			}
			keep = append(keep, kc.KeyID)
			continue
		}
		if kc.Type != "AsymmetricX509Cert" || kc.Usage != "Verify" {
			return nil, nil, fault.Invalidf("only keyCredentials of type AsymmetricX509Cert with usage Verify are supported")
		}
		der, err := base64.StdEncoding.DecodeString(kc.Key)
		if err != nil {
			return nil, nil, fault.Invalidf("a key credential's key must be a base64 DER certificate")
		}
		c, err := identity.ParseCertificateCredential(der, kc.DisplayName)
		if err != nil {
			return nil, nil, err
		}
		add = append(add, c)
	}
	return keep, add, nil
}

func (a *API) keyCredentials(w http.ResponseWriter, r *http.Request) error {
	p, err := a.lookup(r, store.KindServicePrincipal, r.PathValue("id"))
	if err != nil {
		return err
	}
	certs, err := a.dir.Certificates(r.Context(), p.ID)
	if err != nil {
		return err
	}
	out := []KeyCredential{}
	for _, c := range certs {
		out = append(out, keyCredentialOf(c))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

// keyCredentialOf is a certificate credential as Graph lists it.
func keyCredentialOf(c identity.CertificateCredential) KeyCredential {
	return KeyCredential{KeyID: c.KeyID, Type: "AsymmetricX509Cert", Usage: "Verify", DisplayName: c.DisplayName,
		CustomKeyIdentifier: c.Thumbprint, StartDateTime: c.NotBefore.Format(time.RFC3339), EndDateTime: c.NotAfter.Format(time.RFC3339)}
}

func (a *API) application(r *http.Request) (*identity.Principal, error) {
	p, err := a.lookup(r, store.KindServicePrincipal, r.PathValue("id"))
	if errors.Is(err, identity.ErrNotFound) {
		return nil, identity.ErrNotFound.With("Resource '%s' does not exist or one of its queried reference-property objects are not present.", r.PathValue("id"))
	}
	return p, err
}

func federatedOf(fc identity.FederatedCredential) FederatedIdentityCredential {
	return FederatedIdentityCredential{ID: fc.Name, Name: fc.Name, Issuer: fc.Issuer, Subject: fc.Subject, Audiences: fc.Audiences}
}

func (a *API) listFederated(w http.ResponseWriter, r *http.Request) error {
	p, err := a.application(r)
	if err != nil {
		return err
	}
	fcs, err := a.dir.FederatedCredentials(r.Context(), p.ID)
	if err != nil {
		return err
	}
	out := []FederatedIdentityCredential{}
	for _, fc := range fcs {
		out = append(out, federatedOf(fc))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (a *API) createFederated(w http.ResponseWriter, r *http.Request) error {
	var req FederatedIdentityCredential
	if err := httpx.ReadJSON(w, r, &req); err != nil {
		return err
	}
	p, err := a.application(r)
	if err != nil {
		return err
	}
	fc, err := a.dir.PutFederatedCredential(r.Context(), identity.FederatedCredential{
		PrincipalID: p.ID, Name: req.Name, Issuer: req.Issuer, Subject: req.Subject, Audiences: req.Audiences})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, federatedOf(fc))
	return nil
}

func (a *API) deleteFederated(w http.ResponseWriter, r *http.Request) error {
	p, err := a.application(r)
	if err != nil {
		return err
	}
	if err := a.dir.DeleteFederatedCredential(r.Context(), p.ID, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
