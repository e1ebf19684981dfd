package identity

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/store"
)

// Token lifetimes and tolerances.
const (
	TokenLifetime = time.Hour
	clockSkew     = time.Minute
)

// Claims are the claims of a Keyward access token.
type Claims struct {
	jwt.RegisteredClaims
	ObjectID   string   `json:"oid"`
	TenantID   string   `json:"tid"`
	AppID      string   `json:"appid,omitempty"`
	AZP        string   `json:"azp,omitempty"`
	IDType     string   `json:"idtyp"`
	Version    string   `json:"ver"`
	UTI        string   `json:"uti"`
	AMR        []string `json:"amr,omitempty"`
	AuthTime   int64    `json:"auth_time,omitempty"`
	Name       string   `json:"name,omitempty"`
	PrefUser   string   `json:"preferred_username,omitempty"`
	Groups     []string `json:"groups,omitempty"`
	Kind       string   `json:"kw_kind"`
	Roles      []string `json:"kw_roles,omitempty"`
	ScopeClaim string   `json:"scp,omitempty"`
}

// SigningKey is a token-signing key with its JWKS key id.
type SigningKey struct {
	ID  string
	Key *rsa.PrivateKey
}

// tokenKeyAAD binds a sealed token-signing key to its id.
func tokenKeyAAD(id string) []byte { return []byte("keyward token key\x00" + id) }

// LoadOrCreateSigningKey returns the newest token-signing key in s,
// creating and storing one (sealed) if there is none.
func LoadOrCreateSigningKey(ctx context.Context, s store.Store, seal domain.Seal, rand io.Reader, now time.Time) (*SigningKey, error) {
	var keys []*store.TokenKey
	if err := s.View(ctx, func(tx store.Tx) (err error) { keys, err = tx.TokenKeys(ctx); return err }); err != nil {
		return nil, fmt.Errorf("identity: loading token keys: %w", err)
	}
	if len(keys) > 0 {
		der, err := seal.Open(ctx, keys[0].Sealed, tokenKeyAAD(keys[0].ID))
		if err != nil {
			return nil, fmt.Errorf("identity: opening token key: %w", err)
		}
		k, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("identity: parsing token key: %w", err)
		}
		return &SigningKey{ID: keys[0].ID, Key: k}, nil
	}
	k, err := rsa.GenerateKey(rand, 2048)
	if err != nil {
		return nil, fmt.Errorf("identity: generating token key: %w", err)
	}
	id := strings.ReplaceAll(uuid.NewString(), "-", "")
	sealed, err := seal.Seal(ctx, x509.MarshalPKCS1PrivateKey(k), tokenKeyAAD(id))
	if err != nil {
		return nil, err
	}
	// Writers are serialised: of nodes starting together on an empty
	// database, the first to store its key wins and the others load it,
	// so that every node signs and verifies with one key.
	raced := false
	err = s.Update(ctx, func(tx store.Tx) error {
		keys, err := tx.TokenKeys(ctx)
		if err != nil || len(keys) > 0 {
			raced = err == nil
			return err
		}
		return tx.InsertTokenKey(ctx, &store.TokenKey{ID: id, Sealed: sealed, Created: now})
	})
	if err != nil {
		return nil, fmt.Errorf("identity: storing token key: %w", err)
	}
	if raced {
		return LoadOrCreateSigningKey(ctx, s, seal, rand, now)
	}
	return &SigningKey{ID: id, Key: k}, nil
}

// TokenService issues and verifies access tokens.
type TokenService struct {
	key       *SigningKey
	issuer    string
	tenant    string
	audiences []string
	dir       *Directory
	now       func() time.Time

	// verified caches the callers of tokens already checked, by token hash,
	// so the request path pays for an RSA verification once per token.
	mu       sync.Mutex
	verified map[[32]byte]*Caller
	// hits and misses count verifications the cache answered or not.
	hits, misses atomic.Uint64
}

// maxVerifiedCache bounds the verified-token cache; when full it is reset.
const maxVerifiedCache = 10000

// NewTokenService returns a token service whose tokens name issuer and are
// accepted for the given audiences (resource URIs without "/.default").
func NewTokenService(key *SigningKey, issuer string, dir *Directory, audiences []string, now func() time.Time) *TokenService {
	return &TokenService{key: key, issuer: issuer, tenant: dir.TenantID(), audiences: audiences, dir: dir, now: now,
		verified: map[[32]byte]*Caller{}}
}

// Issuer returns the iss value of issued tokens.
func (t *TokenService) Issuer() string { return t.issuer }

// PublicKey returns the verification key and its id, for the JWKS.
func (t *TokenService) PublicKey() (string, *rsa.PublicKey) { return t.key.ID, &t.key.Key.PublicKey }

// ErrInvalidScope is returned when a token is asked for an unknown resource.
var ErrInvalidScope = errors.New("identity: unknown resource")

// Audience maps an OAuth2 scope parameter ("https://managedhsm.azure.net/.default
// openid profile") to the resource the token is for.
func (t *TokenService) Audience(scope string) (string, error) {
	for _, s := range strings.Fields(scope) {
		switch s {
		case "openid", "profile", "offline_access", "email":
			continue
		}
		res := strings.TrimRight(strings.TrimSuffix(s, "/.default"), "/")
		if slices.Contains(t.audiences, res) {
			return res, nil
		}
		return "", fmt.Errorf("%w: %s", ErrInvalidScope, res)
	}
	return "", fmt.Errorf("%w: no resource scope was requested", ErrInvalidScope)
}

// Issue returns a signed access token for p and audience aud, and its
// lifetime.
func (t *TokenService) Issue(ctx context.Context, p *Principal, aud string, amr []string) (string, time.Duration, error) {
	return t.IssueSession(ctx, p, aud, amr, time.Time{})
}

// IssueSession is Issue for a sign-in made at authTime (zero: now), as a
// refresh token's access tokens carry their sign-in's auth_time.
func (t *TokenService) IssueSession(ctx context.Context, p *Principal, aud string, amr []string, authTime time.Time) (string, time.Duration, error) {
	now := t.now().Truncate(time.Second)
	if authTime.IsZero() {
		authTime = now
	}
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   p.ID,
			Audience:  jwt.ClaimStrings{aud},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(TokenLifetime)),
		},
		ObjectID: p.ID, TenantID: t.tenant, Version: "2.0", UTI: uuid.NewString(),
		AMR: amr, AuthTime: authTime.Unix(), Name: p.DisplayName, Kind: p.Kind, Roles: p.DirectoryRoles,
	}
	if p.AppID != "" {
		c.AppID, c.AZP, c.IDType = p.AppID, p.AppID, "app"
	} else {
		c.IDType, c.PrefUser = "user", p.UPN
	}
	groups, err := t.dir.GroupsOf(ctx, p.ID)
	if err != nil {
		return "", 0, err
	}
	c.Groups = groups
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = t.key.ID
	s, err := tok.SignedString(t.key.Key)
	if err != nil {
		return "", 0, fmt.Errorf("identity: signing token: %w", err)
	}
	return s, TokenLifetime, nil
}

// CacheStats reports how many verifications the cache of checked tokens
// answered (hits) and how many needed a signature check (misses).
func (t *TokenService) CacheStats() (hits, misses uint64) { return t.hits.Load(), t.misses.Load() }

// Verify checks a bearer token for one of audiences and returns its
// caller. Every failure is ErrInvalidToken, with the reason for the log.
func (t *TokenService) Verify(token string, audiences ...string) (*Caller, error) {
	sum := sha256.Sum256([]byte(token))
	t.mu.Lock()
	c, ok := t.verified[sum]
	t.mu.Unlock()
	if ok {
		t.hits.Add(1)
	} else {
		t.misses.Add(1)
	}
	if !ok {
		var claims Claims
		_, err := jwt.ParseWithClaims(token, &claims, func(tok *jwt.Token) (any, error) {
			if kid, _ := tok.Header["kid"].(string); kid != t.key.ID {
				return nil, fmt.Errorf("unknown key id %q", kid)
			}
			return &t.key.Key.PublicKey, nil
		},
			jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
			jwt.WithIssuer(t.issuer),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(clockSkew),
			jwt.WithTimeFunc(t.now),
		)
		if err != nil {
			return nil, &tokenError{err}
		}
		if claims.TenantID != t.tenant || claims.ObjectID == "" {
			return nil, &tokenError{errors.New("wrong tenant or no object id")}
		}
		c = &Caller{ObjectID: claims.ObjectID, TenantID: claims.TenantID, AppID: claims.AppID, Kind: claims.Kind,
			Name: claims.Name, UPN: claims.PrefUser, AMR: claims.AMR, AuthTime: time.Unix(claims.AuthTime, 0), TokenID: claims.UTI,
			ExpiresAt: claims.ExpiresAt.Time}
		c.audiences = claims.Audience
		t.mu.Lock()
		if len(t.verified) >= maxVerifiedCache {
			clear(t.verified)
		}
		t.verified[sum] = c
		t.mu.Unlock()
	}
	if t.now().After(c.ExpiresAt.Add(clockSkew)) {
		return nil, &tokenError{errors.New("token is expired")}
	}
	for _, a := range audiences {
		if slices.Contains(c.audiences, a) {
			return c, nil
		}
	}
	return nil, &tokenError{fmt.Errorf("audience %v is not one of %v", c.audiences, audiences)}
}

// tokenError is ErrInvalidToken with the reason kept for the server log.
type tokenError struct{ reason error }

func (e *tokenError) Error() string   { return "identity: invalid token: " + e.reason.Error() }
func (e *tokenError) Unwrap() []error { return []error{ErrInvalidToken, e.reason} }
