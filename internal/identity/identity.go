// Package identity is Keyward's directory and token service.
//
// The directory holds users, groups, service principals and managed
// identities of one tenant, with group membership (groups may contain
// groups). Service principals sign in with client secrets, users with
// passwords; both are kept only as salted Argon2id hashes.
//
// The token service issues RS256 JWT access tokens in the shape of the
// Microsoft identity platform v2.0 (oid, tid, appid, aud, amr, ...), and the
// Verifier accepts only those: right signature, issuer and audience, not
// expired. Nothing here knows HTTP; the OAuth2 endpoints live in
// internal/api/identityapi.
package identity

import (
	"context"
	"time"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// Principal is a directory object.
type Principal = store.Principal

// Errors returned by the directory and the token service.
var (
	ErrNotFound           = fault.New(fault.NotFound, "Request_ResourceNotFound", "the directory object does not exist")
	ErrExists             = fault.New(fault.Conflict, "Request_BadRequest", "a directory object with that name already exists")
	ErrInvalidCredentials = fault.New(fault.Unauthenticated, "invalid_client", "the client id or secret is not valid")
	// ErrInvalidPassword is a failed password grant, as Entra answers it
	// (400 invalid_grant, AADSTS50126): the user's, not the client's.
	ErrInvalidPassword = fault.New(fault.Unauthenticated, "invalid_grant", "AADSTS50126: Error validating credentials due to invalid username or password.")
	ErrInvalidToken    = fault.New(fault.Unauthenticated, "Unauthorized", "the access token is not valid")
)

// Caller is an authenticated principal, as read from a verified token.
type Caller struct {
	ObjectID string
	TenantID string
	AppID    string // empty for users
	Kind     string // store.KindUser, KindServicePrincipal, ...
	Name     string
	UPN      string // users only
	// AMR lists how the caller authenticated ("pwd", "mfa").
	AMR      []string
	AuthTime time.Time
	// TokenID is the token's uti claim: logged in place of the token.
	TokenID   string
	ExpiresAt time.Time

	audiences []string
}

type callerKey struct{}

// NewContext returns ctx carrying c.
func NewContext(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// FromContext returns the caller in ctx, if any.
func FromContext(ctx context.Context) (*Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(*Caller)
	return c, ok
}
