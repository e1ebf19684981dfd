package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// The OAuth 2.0 authorization-code flow with PKCE (RFC 6749 §4.1, RFC
// 7636), as Entra runs it for public clients: a browser signs the user in
// at /authorize, which gives the client a code; the client redeems it at
// /token with the verifier whose hash it sent first.

// PublicClient is an application without a secret that signs users in
// through a browser: it is known by its client id and may receive codes
// only at its redirect URIs.
type PublicClient struct {
	ID           string
	Name         string
	RedirectURIs []string
	// DeviceCode lets the client sign users in with the device-code flow
	// (a command line's; a web page has a browser).
	DeviceCode bool
}

// Well-known public clients, registered in every tenant.
const (
	// AzureCLIClientID is the Azure CLI's public client, so that az's own
	// browser sign-in works against a server at Azure's names.
	AzureCLIClientID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
	// KeywardCLIClientID is the keyward command's.
	KeywardCLIClientID = "5c0b3b71-2a4e-4c5e-9f3a-6b7d8e9f0a1b"
)

// KeywardConsoleClientID is the web console's: its redirect URI is the
// server's own (RegisterPublicClient), so it exists only once a server
// registers it.
const KeywardConsoleClientID = "9a3c1f6e-7d2b-4e8a-b5c4-0f1e2d3c4b5a"

// PublicClients returns the registered public clients: the well-known ones
// and those the server registered.
func (d *Directory) PublicClients() []PublicClient {
	return append([]PublicClient{
		{ID: AzureCLIClientID, Name: "Microsoft Azure CLI", RedirectURIs: []string{"http://localhost"}, DeviceCode: true},
		{ID: KeywardCLIClientID, Name: "Keyward CLI", RedirectURIs: []string{"http://localhost"}, DeviceCode: true},
	}, d.clients...)
}

// RegisterPublicClient registers c (the console, with the server's own
// redirect URI). It is called while the server is built, before it serves.
func (d *Directory) RegisterPublicClient(c PublicClient) { d.clients = append(d.clients, c) }

// ErrUnknownClient is a client id that no public client has.
var ErrUnknownClient = fault.New(fault.Invalid, "unauthorized_client",
	"AADSTS700016: Application not found in the directory, or not a public client.")

// ErrRedirectURI is a redirect URI the client did not register.
var ErrRedirectURI = fault.New(fault.Invalid, "invalid_request",
	"AADSTS50011: The redirect URI specified in the request does not match the redirect URIs configured for the application.")

// PublicClientFor returns the public client id and checks that
// redirectURI is one of its own. A loopback redirect (http://localhost or
// http://127.0.0.1) matches with any port, as RFC 8252 §7.3 says, since
// native apps listen on a port they pick.
func (d *Directory) PublicClientFor(ctx context.Context, clientID, redirectURI string) (PublicClient, error) {
	c, err := d.PublicClientByID(ctx, clientID)
	if err != nil {
		return c, err
	}
	u, err := url.Parse(redirectURI)
	if err != nil || redirectURI == "" || u.Fragment != "" || u.User != nil {
		return c, ErrRedirectURI
	}
	for _, r := range c.RedirectURIs {
		reg, _ := url.Parse(r)
		if u.Scheme == "http" && reg.Scheme == "http" && isLoopback(reg.Hostname()) && isLoopback(u.Hostname()) &&
			strings.TrimSuffix(u.Path, "/") == strings.TrimSuffix(reg.Path, "/") {
			return c, nil
		}
		if redirectURI == r {
			return c, nil
		}
	}
	return c, ErrRedirectURI
}

func isLoopback(host string) bool { return host == "localhost" || host == "127.0.0.1" || host == "::1" }

// AuthCodeLifetime is how long a code may be redeemed: Entra's is ten
// minutes at most.
const AuthCodeLifetime = 5 * time.Minute

// AuthCode is what a code stands for.
type AuthCode struct {
	ClientID    string    `json:"clientId"`
	RedirectURI string    `json:"redirectUri"`
	Challenge   string    `json:"challenge"` // base64url(SHA-256(verifier))
	Scope       string    `json:"scope"`
	PrincipalID string    `json:"principalId"`
	AMR         []string  `json:"amr"`
	AuthTime    time.Time `json:"authTime"`
	Expires     time.Time `json:"expires"`
}

const (
	kindAuthCode   = "authCode"
	authCodePrefix = "kwac."
)

// ErrInvalidGrant is a code that is unknown, used, expired, or redeemed
// with another client, redirect URI or verifier.
var ErrInvalidGrant = fault.New(fault.Unauthenticated, "invalid_grant",
	"AADSTS70008: The provided authorization code or refresh token has expired, was used, or does not match the request.")

// IssueAuthCode stores c (for AuthCodeLifetime) and returns its code. The
// store keeps the code's HMAC under the pepper, never the code.
func (d *Directory) IssueAuthCode(ctx context.Context, c AuthCode) (string, error) {
	if d.pepper == nil {
		return "", errors.New("identity: the directory has no secret pepper")
	}
	b := make([]byte, 32)
	if _, err := io.ReadFull(d.rand, b); err != nil {
		return "", fmt.Errorf("identity: reading randomness: %w", err)
	}
	// The code names its user, so that the store keeps a user's codes
	// under one prefix: issuing one reads that user's few, never all.
	code := authCodePrefix + c.PrincipalID + "." + b64url.EncodeToString(b)
	now := d.now()
	c.Expires = now.Add(AuthCodeLifetime)
	data, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	prefix := codePrefix(c.PrincipalID)
	err = d.store.Update(ctx, func(tx store.Tx) error {
		mine, err := tx.ListObjects(ctx, kindAuthCode, prefix)
		if err != nil {
			return err
		}
		live := 0
		for _, o := range mine {
			var oc AuthCode
			if json.Unmarshal(o.Data, &oc) == nil && now.Before(oc.Expires) {
				live++
				continue
			}
			if err := tx.DeleteObject(ctx, kindAuthCode, o.ID); err != nil {
				return err
			}
		}
		if live >= maxLiveAuthCodes {
			return ErrTooManyAuthCodes
		}
		return tx.PutObject(ctx, &store.Object{Kind: kindAuthCode, ID: prefix + d.codeID(code), Data: data})
	})
	if err != nil {
		return "", mapErr(err)
	}
	return code, nil
}

// maxLiveAuthCodes bounds a user's codes not yet redeemed: a sign-in page
// posted again and again must not fill the store.
const maxLiveAuthCodes = 10

// ErrTooManyAuthCodes refuses a code to a user who holds many unredeemed.
var ErrTooManyAuthCodes = fault.New(fault.Unavailable, "temporarily_unavailable",
	"Too many sign-ins of this user are waiting to be completed: try again in a few minutes.")

func codePrefix(principalID string) string { return strings.ToLower(principalID) + "/" }

// codeOwner returns the user a code names.
func codeOwner(code string) (string, bool) {
	rest, ok := strings.CutPrefix(code, authCodePrefix)
	if !ok {
		return "", false
	}
	owner, _, ok := strings.Cut(rest, ".")
	return owner, ok && owner != "" && !strings.Contains(owner, "/")
}

// RedeemAuthCode exchanges a code for what it stands for, once: the code
// is gone after the first attempt, right or wrong (RFC 6749 §10.5), so a
// stolen code cannot be tried with guessed verifiers. The client id and
// redirect URI must be those the code was given for, and the verifier's
// S256 hash the challenge.
func (d *Directory) RedeemAuthCode(ctx context.Context, code, clientID, redirectURI, verifier string) (*Principal, AuthCode, error) {
	var c AuthCode
	owner, ok := codeOwner(code)
	if d.pepper == nil || !ok {
		return nil, c, ErrInvalidGrant
	}
	id := codePrefix(owner) + d.codeID(code)
	err := d.store.Update(ctx, func(tx store.Tx) error {
		o, err := tx.GetObject(ctx, kindAuthCode, id)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(o.Data, &c); err != nil {
			return err
		}
		return tx.DeleteObject(ctx, kindAuthCode, id)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, c, ErrInvalidGrant
	}
	if err != nil {
		return nil, c, mapErr(err)
	}
	sum := sha256.Sum256([]byte(verifier))
	challenge := b64url.EncodeToString(sum[:])
	switch {
	case d.now().After(c.Expires):
		return nil, c, ErrInvalidGrant.With("AADSTS70008: The provided authorization code has expired.")
	case !strings.EqualFold(c.ClientID, clientID) || c.RedirectURI != redirectURI:
		return nil, c, ErrInvalidGrant.With("AADSTS70008: The authorization code was given to another client or redirect URI.")
	case len(verifier) < 43 || len(verifier) > 128 || subtle.ConstantTimeCompare([]byte(challenge), []byte(c.Challenge)) != 1:
		return nil, c, ErrInvalidGrant.With("AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization request.")
	}
	p, err := d.Get(ctx, c.PrincipalID)
	if errors.Is(err, ErrNotFound) {
		return nil, c, ErrInvalidGrant // the user was deleted meanwhile
	}
	if err != nil {
		return nil, c, err
	}
	return p, c, nil
}

// codeID is the stored name of a code: its HMAC under the pepper, in hex.
func (d *Directory) codeID(code string) string {
	m := hmac.New(sha256.New, d.pepper)
	m.Write([]byte("keyward authorization code\x00" + code))
	return hex.EncodeToString(m.Sum(nil))
}

// flowLifetime bounds a sign-in page's flow: the user has that long to
// type a password and a code.
const flowLifetime = 10 * time.Minute

// SealFlow returns v as a string only this tenant's servers can have made
// (an HMAC under the pepper, with an expiry): the state a sign-in page
// carries from one form to the next, so that any node of a cluster
// continues it and no form field can be altered.
func (d *Directory) SealFlow(v any) (string, error) {
	if d.pepper == nil {
		return "", errors.New("identity: the directory has no secret pepper")
	}
	body, err := json.Marshal(struct {
		V   any   `json:"v"`
		Exp int64 `json:"exp"`
	}{v, d.now().Add(flowLifetime).Unix()})
	if err != nil {
		return "", err
	}
	enc := b64url.EncodeToString(body)
	return enc + "." + b64url.EncodeToString(d.flowMAC(enc)), nil
}

// ErrFlow is a sign-in flow that was altered or is too old.
var ErrFlow = fault.New(fault.Invalid, "invalid_request", "The sign-in page expired or was altered: start the sign-in again.")

// OpenFlow checks a string made by SealFlow and decodes it into v.
func (d *Directory) OpenFlow(s string, v any) error {
	enc, mac, ok := strings.Cut(s, ".")
	got, err := b64url.DecodeString(mac)
	if d.pepper == nil || !ok || err != nil || !hmac.Equal(got, d.flowMAC(enc)) {
		return ErrFlow
	}
	body, err := b64url.DecodeString(enc)
	if err != nil {
		return ErrFlow
	}
	var w struct {
		V   json.RawMessage `json:"v"`
		Exp int64           `json:"exp"`
	}
	if json.Unmarshal(body, &w) != nil || d.now().Unix() > w.Exp || json.Unmarshal(w.V, v) != nil {
		return ErrFlow
	}
	return nil
}

func (d *Directory) flowMAC(enc string) []byte {
	m := hmac.New(sha256.New, d.pepper)
	m.Write([]byte("keyward sign-in flow\x00" + enc))
	return m.Sum(nil)
}
