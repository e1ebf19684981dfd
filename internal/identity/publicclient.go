package identity

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// Registered public clients: an application (a service principal) that
// its owner makes a public client, as Entra's app registration does with
// publicClient.redirectUris, signs users in with the authorization-code
// flow at those redirect URIs; with isFallbackPublicClient ("Allow public
// client flows") it may use the device-code flow too.

const kindPublicClient = "publicClient"

// PublicClientSettings are an application's public-client settings.
type PublicClientSettings struct {
	RedirectURIs []string `json:"redirectUris"`
	// AllowPublicClientFlows is Entra's isFallbackPublicClient: the
	// device-code flow.
	AllowPublicClientFlows bool `json:"allowPublicClientFlows"`
}

// maxRedirectURIs bounds an application's redirect URIs, as Entra does (256
// for all kinds; public clients need few).
const maxRedirectURIs = 32

// ErrBadRedirectURI is a redirect URI that cannot be registered.
var ErrBadRedirectURI = fault.New(fault.Invalid, "Request_BadRequest",
	"A redirect URI must be https://host/path, or http:// on localhost, 127.0.0.1 or [::1]; without a fragment or user info; at most 256 characters.")

// validRedirectURI tells whether u may be registered: https anywhere, or
// http on a loopback host (RFC 8252 §7.3).
func validRedirectURI(u string) bool {
	p, err := url.Parse(u)
	if err != nil || len(u) > 256 || p.Fragment != "" || p.User != nil || p.Host == "" || p.Opaque != "" {
		return false
	}
	return p.Scheme == "https" || p.Scheme == "http" && isLoopback(p.Hostname())
}

// SetPublicClient makes service principal principalID a public client with
// s (no redirect URIs and no flows: no longer one).
func (d *Directory) SetPublicClient(ctx context.Context, principalID string, s PublicClientSettings) error {
	if len(s.RedirectURIs) > maxRedirectURIs {
		return fault.Invalidf("at most %d redirect URIs", maxRedirectURIs)
	}
	for _, u := range s.RedirectURIs {
		if !validRedirectURI(u) {
			return ErrBadRedirectURI.With("%s: %s", ErrBadRedirectURI.Msg, u)
		}
	}
	s.RedirectURIs = slices.Compact(slices.Sorted(slices.Values(s.RedirectURIs)))
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return mapErr(d.store.Update(ctx, func(tx store.Tx) error {
		p, err := tx.GetPrincipal(ctx, principalID)
		if err != nil {
			return err
		}
		if p.Kind != store.KindServicePrincipal || p.AppID == "" {
			return fault.Invalidf("only an application's service principal can be a public client")
		}
		if len(s.RedirectURIs) == 0 && !s.AllowPublicClientFlows {
			err := tx.DeleteObject(ctx, kindPublicClient, p.ID)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		return tx.PutObject(ctx, &store.Object{Kind: kindPublicClient, ID: p.ID, Data: data})
	}))
}

// PublicClientOf returns principalID's public-client settings (none: zero).
func (d *Directory) PublicClientOf(ctx context.Context, principalID string) (PublicClientSettings, error) {
	var s PublicClientSettings
	err := d.store.View(ctx, func(tx store.Tx) error {
		o, err := tx.GetObject(ctx, kindPublicClient, principalID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(o.Data, &s)
	})
	if s.RedirectURIs == nil {
		s.RedirectURIs = []string{}
	}
	return s, mapErr(err)
}

// registeredPublicClient finds the application clientID among the
// directory's registered public clients.
func (d *Directory) registeredPublicClient(ctx context.Context, clientID string) (PublicClient, error) {
	if d.store == nil || len(clientID) > 64 || strings.ContainsAny(clientID, "/'\"") {
		return PublicClient{}, ErrUnknownClient
	}
	p, err := d.GetByAppID(ctx, clientID)
	if errors.Is(err, ErrNotFound) {
		return PublicClient{}, ErrUnknownClient
	}
	if err != nil {
		return PublicClient{}, err
	}
	if p.Kind != store.KindServicePrincipal {
		return PublicClient{}, ErrUnknownClient
	}
	s, err := d.PublicClientOf(ctx, p.ID)
	if err != nil {
		return PublicClient{}, err
	}
	if len(s.RedirectURIs) == 0 && !s.AllowPublicClientFlows {
		return PublicClient{}, ErrUnknownClient
	}
	return PublicClient{ID: p.AppID, Name: p.DisplayName, RedirectURIs: s.RedirectURIs, DeviceCode: s.AllowPublicClientFlows}, nil
}
